"""Resume mid-iteration with every trainer that learns from the judged candidates (sft, reinforce, ppo), as
tests/test_e2e.py does for DPO: a job stopped at a phase boundary reruns on its directory, reads what was
finished back, and ends with the uninterrupted run's models."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPRODUCIBLE_CPU, run_job
from srlm_exp.training.ppo import VALUE_HEAD_FILE


def _stop_while_training_m3(job: Path, train: str) -> list[str]:
    """What a job that died while training M3 has on disk: AIFT(M2) complete, no M3, M2 not yet evaluated.
    Returns the files the rerun must leave as they are."""
    for rel in ("iteration_3/model", "iteration_3/training.json", f"iteration_3/{VALUE_HEAD_FILE}",
                "iteration_2/eval_responses.jsonl", "iteration_3/eval_responses.jsonl"):
        path = job / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    summary = json.loads((job / "summary.json").read_text())
    summary.update(status="running", iterations=[e for e in summary["iterations"] if e["iteration"] < 2])
    (job / "summary.json").write_text(json.dumps(summary, indent=2))
    kept = ["iteration_2/model/model.safetensors", "iteration_3/candidates.jsonl", "iteration_3/pairs.jsonl"]
    return kept + ([f"iteration_2/{VALUE_HEAD_FILE}"] if train == "ppo" else [])


@pytest.mark.parametrize("train", ["sft", "reinforce", "ppo"])
def test_a_job_stopped_while_training_m3_resumes_to_the_uninterrupted_m3(train, tmp_path):
    run = ["debug=smoke", "logger=none", f"train={train}"]
    whole = tmp_path / "whole"
    run_job([*run, f"hydra.run.dir={whole}"], tmp_path / "whole.log", env=REPRODUCIBLE_CPU)
    job = tmp_path / "job"
    shutil.copytree(whole, job)
    kept = _stop_while_training_m3(job, train)
    before = {rel: (job / rel).stat().st_mtime_ns for rel in kept}

    proc = run_job([*run, f"hydra.run.dir={job}"], tmp_path / "resume.log", env=REPRODUCIBLE_CPU)

    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["model"] for e in summary["iterations"]] == ["M0", "M1", "M2", "M3"]
    assert {rel: (job / rel).stat().st_mtime_ns for rel in kept} == before, "finished phases were redone"
    assert "M1: SFT on" not in proc.log and "iteration 2 data" not in proc.log
    assert (job / "iteration_3/model/model.safetensors").read_bytes() == \
        (whole / "iteration_3/model/model.safetensors").read_bytes(), "M3 differs from the uninterrupted run's"
    assert json.loads((job / "iteration_3/training.json").read_text()) == \
        json.loads((whole / "iteration_3/training.json").read_text())
    if train == "ppo":  # the value head trained on from M2's, as in the uninterrupted run
        assert (job / f"iteration_3/{VALUE_HEAD_FILE}").exists()
