"""What a job logs (issue 38), read back the way a researcher meets it: W&B's run files of a smoke multirun
(offline) and the log file of a job whose output goes to a file (nohup, SLURM).

W&B: the group is the experiment variant (the seeds of one variant, from any launch, are one line; two variants
never share one), the job type the training stage, the config every Hydra choice and each stage's
hyperparameters under its own prefix; per iteration three tables across iterations, DPO's TRL metrics with the
learning rate, and summary.json and the resolved config as the run's files. The log file: every phase's start and
end with its size and duration, training steps with an ETA, no carriage-return fragments, and a rerun that says
what it found done."""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from conftest import run_job
from srlm_exp.main import MAX_VARIANT, variant_name

NO_PRESET = {"experiment": "none", "debug": "none", "train": "dpo", "logger": "wandb"}


def test_variant_name_leaves_out_the_seed_and_what_changes_no_artifact():
    assert variant_name(NO_PRESET, []) == "default"
    assert variant_name({**NO_PRESET, "experiment": "ifeval_cpu"}, []) == "experiment=ifeval_cpu"
    base = ["judge=pairwise", "train=sft", "debug=smoke"]
    name = variant_name(NO_PRESET, base)
    assert name == "debug=smoke,judge=pairwise,train=sft"
    # Seeds, logging, progress bars, paths, Hydra's own settings and how the job resumes: the same variant,
    # whatever the order the command line gave (two launches of one sweep share their groups).
    watched = ["seed=3", "logger=none", "logger.mode=online", "trainer.enable_progress_bar=false",
               "trainer.log_every_n_steps=1", "paths.cache_dir=/x", "resume_anyway=true", "hydra.run.dir=/y"]
    assert variant_name(NO_PRESET, watched + base[::-1]) == name
    assert variant_name(NO_PRESET, ["+judge=pairwise", "++train=sft", "debug=smoke"]) == name
    # Every setting that changes an artifact tells variants apart, a seed of the data among them.
    others = [base[:2], base + ["train.beta=0.5"], base + ["data.split_seed=1"], base + ["data.split_seed=2"],
              ["judge=additive5", "train=sft", "debug=smoke"], base + ["~train.nll_weight"]]
    names = [variant_name(NO_PRESET, o) for o in others]
    assert name not in names and len(set(names)) == len(names), names
    # W&B's group is at most 128 characters: a longer name is cut, and keeps telling variants apart.
    long = [variant_name(NO_PRESET, [f"model.name_or_path={'/deep' * 40}/{k}"]) for k in ("a", "b")]
    assert all(len(n) <= MAX_VARIANT for n in long) and long[0] != long[1]


# ------------------------------------------------------------------------------------- a smoke multirun
# Five seed-SFT steps teach the tiny model neither the judge's format nor to end its answers: an additive judge's
# scores would not parse and every candidate would be cut off. The implicit reward scores every candidate and
# `cut_off=keep` keeps them, so M2 trains on pairs. One log step per step: DPO's two steps are logged.
SWEEP = ["debug=smoke", "logger=wandb", "judge=implicit_reward", "callbacks.self_reward.cut_off=keep",
         "loop.iterations=1", "seed_sft.max_steps=5", "trainer.log_every_n_steps=1"]
STAGES = ("dpo", "sft")
TABLES = ("samples/eval_responses", "samples/candidates", "samples/training_pairs")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tracking")
    proc = run_job([*SWEEP, f"train={','.join(STAGES)}", f"hydra.sweep.dir={root / 'sweep'}"], root / "stdout.log",
                   multirun=True, timeout=1800)
    jobs = sorted(p for p in (root / "sweep").iterdir() if (p / "summary.json").exists())
    assert len(jobs) == len(STAGES), list((root / "sweep").iterdir())
    return {"root": root, "log": proc.log, "jobs": dict(zip(STAGES, jobs))}


def _records(path: Path):
    """The protobuf records of a run-*.wandb file: W&B's LevelDB-style log (a 7-byte file header, 32 KiB
    blocks, each record in chunks with a 7-byte header: CRC, length, type full/first/middle/last)."""
    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", path
    pos, parts = header, b""
    while pos + header <= len(data):
        if block - pos % block < header:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + header])
        if kind == 0 and length == 0:
            pos += block - pos % block
            continue
        chunk = data[pos + header:pos + header + length]
        pos += header + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def _offline_run(job: Path) -> dict:
    """What the job's one offline W&B run holds: its identity, config, history keys, metric axes and files."""
    runs = sorted((job / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    out = {"dir": runs[0], "config": {}, "history": set(), "axes": {}, "files": set()}
    for r in _records(next(runs[0].glob("run-*.wandb"))):
        kind = r.WhichOneof("record_type")
        if kind in ("run", "config"):
            updates = r.run.config.update if kind == "run" else r.config.update
            out["config"].update({u.key: json.loads(u.value_json) for u in updates})
            if kind == "run":
                out["run"] = r.run
        elif kind == "history":
            out["history"] |= {i.key or "/".join(i.nested_key) for i in r.history.item}
        elif kind == "metric" and r.metric.step_metric:
            out["axes"][r.metric.glob_name or r.metric.name] = r.metric.step_metric
        elif kind == "files":
            out["files"] |= {f.path for f in r.files.files}
    return out


def _table_rows(run: dict, key: str) -> tuple[list[str], list[list]]:
    """An incremental table's columns and rows: every increment's file under the run's files/media."""
    columns, rows = None, []
    for path in sorted(run["files"]):
        if re.fullmatch(rf"media/table/{key}_\d+_\w+\.table\.json", path):
            table = json.loads((run["dir"] / "files" / path).read_text())
            columns = columns or table["columns"]
            assert table["columns"] == columns
            rows += table["data"]
    return columns, rows


def test_wandb_groups_by_variant_with_the_stage_as_job_type_and_every_choice(sweep):
    runs = {stage: _offline_run(job) for stage, job in sweep["jobs"].items()}
    for stage, run in runs.items():
        variant = variant_name({}, [*SWEEP, f"train={stage}"])
        assert not re.search(r"(^|,)(seed|logger|trainer\.log_every_n_steps)=", variant), variant
        assert run["run"].run_group == variant == run["config"]["variant"]
        assert run["run"].display_name == f"{variant},seed=0"  # not the time of day
        assert run["run"].job_type == stage
        assert {f"train={stage}", "judge=implicit_reward", "debug=smoke", "seed=0"} <= set(run["run"].tags)
        choices = run["config"]["choices"]
        assert choices["train"] == stage and choices["debug"] == "smoke" and choices["judge"] == "implicit_reward"
        assert {"experiment": "none", "pairs": "best_vs_worst", "prompts": "world_pool", "curriculum": "none",
                "meta_judge": "none", "model": "tiny", "data": "world"}.items() <= choices.items()
        assert run["config"]["train"]["name"] == stage  # the resolved config beside them
    assert runs["dpo"]["run"].run_group != runs["sft"]["run"].run_group


def test_each_stage_keeps_its_hyperparameters_under_its_prefix(sweep):
    dpo, sft = (_offline_run(sweep["jobs"][s])["config"] for s in STAGES)
    assert not {"lr", "beta", "log_prefix"} & set(dpo)  # Lightning's flat keys, where the last stage won
    # Seed SFT (M1, metrics sft/*) and the stage of M2: each its own learning rate, as configured.
    assert dpo["hparams/sft/lr"] == dpo["seed_sft"]["lr"] == sft["hparams/sft/lr"]
    assert dpo["hparams/dpo/lr"] == dpo["train"]["lr"] != dpo["hparams/sft/lr"]
    assert dpo["hparams/dpo/beta"] == dpo["train"]["beta"]
    assert sft["hparams/sft_top/lr"] == sft["train"]["lr"]


def test_wandb_has_trl_metrics_iteration_axes_tables_and_files(sweep):
    run = _offline_run(sweep["jobs"]["dpo"])
    # TRL's DPO metrics, the learning rate of every stage.
    assert {"dpo/loss", "dpo/chosen_reward", "dpo/rejected_reward", "dpo/margin", "dpo/accuracy", "dpo/logps_chosen",
            "dpo/logps_rejected", "dpo/lr", "sft/lr"} <= run["history"]
    # Per-iteration metrics against `iteration`, not Lightning's trainer/global_step.
    for prefix in ("eval", "judge", "aift", "gen_verif", "timings", "training", "samples"):
        assert run["axes"].get(f"{prefix}/*") == "iteration", (prefix, run["axes"])
    # One key per table, its rows across iterations with an `iteration` column.
    summary = json.loads((sweep["jobs"]["dpo"] / "summary.json").read_text())
    n_eval = summary["iterations"][0]["eval"]["n"]
    columns, rows = _table_rows(run, "samples/eval_responses")
    assert columns[:3] == ["iteration", "instruction", "response"]
    assert sorted({r[0] for r in rows}) == [0, 1, 2] and len(rows) == 3 * n_eval
    columns, rows = _table_rows(run, "samples/candidates")
    candidates = [json.loads(line) for line in (sweep["jobs"]["dpo"] / "iteration_2" / "candidates.jsonl").open()]
    assert {"iteration", "instruction", "text", "judgments", "judgment_scores", "score", "gt_score"} <= set(columns)
    assert {r[0] for r in rows} == {2} and len(rows) == sum(len(c["candidates"]) for c in candidates)
    columns, rows = _table_rows(run, "samples/training_pairs")
    pairs = (sweep["jobs"]["dpo"] / "iteration_2" / "pairs.jsonl").read_text().splitlines()
    assert {"iteration", "chosen", "rejected", "chosen_score", "rejected_score"} <= set(columns)
    assert {r[0] for r in rows} == {2} and len(rows) == len(pairs) > 0
    assert not any(k.startswith("samples/M") for k in run["history"])  # no longer a key per iteration
    # The job's record and settings as the run's files (links to the job's own, current when it ended).
    assert {"summary.json", "resolved_config.yaml"} <= run["files"]
    assert json.loads((run["dir"] / "files" / "summary.json").read_text())["status"] == "finished"


DURATION = r"(\d+\.\d s|\d+ min \d\d s|\d+ h \d\d min)"  # progress.duration


def test_a_log_file_shows_every_phase_training_progress_and_no_bars(sweep):
    log = sweep["log"]
    assert "\r" not in log, "a progress bar wrote carriage returns into the file"
    assert "Loading weights" not in log and "Writing model shards" not in log  # transformers' bars
    for k, (stage, module) in enumerate((("dpo", "dpo"), ("sft", "sft_top"))):
        job_log = log.split(f"#{k} : ")[1].split("][HYDRA]")[0]  # from Hydra's line that starts job k to the next
        for pattern in (r"M0: started", rf"M0: done in {DURATION}$",
                        r"M0 eval: done in .+: \d+ held-out instructions answered and judged",
                        r"M1 train: started \(M0 -> M1\)",
                        r"M1 sft: training on \d+ examples, 5 steps",
                        rf"M1 sft: step 1/5, loss [\d.]+, {DURATION}/step, ETA {DURATION}$",
                        rf"M1 sft: 5 steps in {DURATION}",
                        rf"M1 prompts: done in {DURATION}: \d+ prompts",
                        r"M1 candidates_and_judging: done in .+: \d+ prompts, \d+ candidates judged",
                        r"M1 train: done in .+: trained on \d+ ift, \d+ eft",
                        r"M2 train: started \(M1 -> M2\)",
                        rf"M2 {module}: training on \d+ {'pairs' if stage == 'dpo' else 'examples'}, \d+ steps",
                        rf"M2 {module}: \d+ steps in",
                        r"M2 eval: done in", rf"job finished in {DURATION}$"):
            assert re.search(pattern, job_log, re.MULTILINE), (stage, pattern, job_log[-3000:])


def test_a_rerun_of_a_finished_job_says_what_it_found_done(sweep):
    job = sweep["jobs"]["dpo"]
    settings = [o for o in SWEEP if not o.startswith("logger=")] + ["train=dpo", "logger=none"]  # logger: neutral
    proc = run_job([*settings, f"hydra.run.dir='{job}'"], sweep["root"] / "rerun.log")  # quoted: the name has = and ,
    assert re.search(r"resuming .+: found M1-M2 trained, AIFT\(M1\) made, M0-M2 evaluated; nothing left to run",
                     proc.log), proc.log[-3000:]
    assert "everything was done already" in proc.log and "M1 train: started" not in proc.log
