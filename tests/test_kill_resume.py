"""A job killed (SIGKILL: nothing of it runs after) right after a phase's output is on disk, then rerun on its
directory, ends with every artifact of the uninterrupted run, training.json and summary.json included (issue
41). The rerun reads finished phases back and redoes the unfinished one; a phase of several files writes last
the one whose presence tells a rerun it is done, so no file is ever kept without the ones made with it.

The kill comes from the atomic writers (artifacts.py, SRLM_EXP_KILL_AFTER), at each kind of phase boundary of the
smoke loop. The uninterrupted run is conftest's `smoke_run` (the golden fixture's run), shared with the other
tests; the jobs here use its cache, so M0 is not built again. One boundary, M1 on disk before AIFT(M1) (where
the issue lost M1's record), runs by default; the others are slow."""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from conftest import REPRODUCIBLE_CPU, run_job
from srlm_exp.artifacts import KILL_AFTER

# Each is the file (or directory) after which the job is killed: "@n" is its n-th write in the killed process.
BOUNDARIES = [
    pytest.param("data/corpus.jsonl", marks=pytest.mark.slow, id="seed-data"),  # the first of the seed data's files
    pytest.param("iteration_0/eval_responses.jsonl", marks=pytest.mark.slow, id="m0-greedy-eval"),
    pytest.param("summary.json@2", marks=pytest.mark.slow, id="m0-entry"),  # the 1st write is the job's start
    pytest.param("iteration_1/training.json", marks=pytest.mark.slow, id="m1-record"),  # M1's record, before M1
    pytest.param("iteration_1/model", id="m1-before-aift"),  # M1 and its record, before AIFT(M1)
    pytest.param("iteration_2/prompts.jsonl", marks=pytest.mark.slow, id="aift-prompts"),
    pytest.param("iteration_2/candidates.jsonl", marks=pytest.mark.slow, id="aift-candidates"),
    pytest.param("iteration_2/pairs.jsonl", marks=pytest.mark.slow, id="aift-pairs-before-stats"),
    pytest.param("iteration_2/stats.json", marks=pytest.mark.slow, id="aift-done-m1-not-evaluated"),
    pytest.param("iteration_1/eval_sampled_responses.jsonl", marks=pytest.mark.slow,
                 id="m1-sampled-eval"),
    pytest.param("iteration_2/model", marks=pytest.mark.slow, id="m2-dpo"),
    pytest.param("summary.json@5", marks=pytest.mark.slow, id="m3-entry-before-status"),
]
# Not artifacts: the job's log and Hydra's copy of the command line.
NOT_COMPARED = {"run.log", ".hydra"}
# Measured, not made: seconds and memory differ between any two runs.
MEASURED = {"timings", "peak_gpu_memory_gb", "peak_rss_gb", "job_peak_rss_gb"}


def _artifacts(job: Path) -> list[str]:
    return sorted(str(p.relative_to(job)) for p in job.rglob("*")
                  if p.is_file() and p.relative_to(job).parts[0] not in NOT_COMPARED)


def _without_measured(obj):
    if isinstance(obj, dict):
        return {k: _without_measured(v) for k, v in obj.items() if k not in MEASURED}
    if isinstance(obj, list):
        return [_without_measured(v) for v in obj]
    return obj


def differences(job: Path, reference: Path) -> list[str]:
    """The artifacts of `job` that differ from (or are missing in, or are extra to) `reference`'s."""
    mine, theirs = _artifacts(job), _artifacts(reference)
    out = [f"missing: {rel}" for rel in sorted(set(theirs) - set(mine))]
    out += [f"extra: {rel}" for rel in sorted(set(mine) - set(theirs))]
    for rel in sorted(set(mine) & set(theirs)):
        a, b = job / rel, reference / rel
        if rel == "summary.json":
            same = _without_measured(json.loads(a.read_text())) == _without_measured(json.loads(b.read_text()))
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            out.append(f"differs: {rel}")
    return out


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_job_killed_at_a_phase_boundary_reruns_to_the_uninterrupted_runs_artifacts(smoke_run, tmp_path, boundary):
    run = ["debug=smoke", "logger=none", f"hydra.run.dir={tmp_path / 'job'}"]
    env = {**REPRODUCIBLE_CPU, "SRLM_EXP_CACHE": str(smoke_run.parent / "cache")}  # smoke_run's M0
    killed = run_job(run, tmp_path / "killed.log", check=False, env={**env, KILL_AFTER: boundary})
    assert killed.returncode == -signal.SIGKILL, f"not killed after {boundary}: exit {killed.returncode}\n" \
                                                 f"{killed.log[-3000:]}"
    run_job(run, tmp_path / "rerun.log", env=env)
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert all(e.get("training") for e in summary["iterations"][1:]), "a model's training record is missing"
    assert differences(tmp_path / "job", smoke_run) == []


def test_a_model_an_older_version_left_without_its_record_gets_it_rebuilt_from_the_stages_inputs(smoke_run, tmp_path):
    """What a job killed during AIFT(M1) and AIFT(M2) by a version that wrote the record after AIFT left behind, once
    rerun by it: M1 and M2 without training.json, and entries without `training`. The stages run again without
    training and count what they trained on; the entries get it."""
    job = tmp_path / "job"
    shutil.copytree(smoke_run, job)
    for t in (1, 2):
        (job / f"iteration_{t}" / "training.json").unlink()
    summary = json.loads((job / "summary.json").read_text())
    for entry in summary["iterations"]:
        entry.pop("training", None)
    (job / "summary.json").write_text(json.dumps(summary, indent=2))

    proc = run_job(["debug=smoke", "logger=none", f"hydra.run.dir={job}"], tmp_path / "rerun.log",
                   env={**REPRODUCIBLE_CPU, "SRLM_EXP_CACHE": str(smoke_run.parent / "cache")})

    assert proc.log.count("has no training record") == 2
    assert "M1: SFT on" in proc.log  # the seed SFT stage ran again on its data (without a fit)
    assert differences(job, smoke_run) == []
