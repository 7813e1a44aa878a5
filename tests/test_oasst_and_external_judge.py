"""The paths a user with real data takes, on embedded models: Open Assistant seed data with EFT
judged by the IFT-only model (the paper's way), and a head-to-head judged by an external model."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_job
from test_architectures import save_random_model, world_texts  # noqa: F401  (module fixture)

FIXTURE = Path(__file__).parent / "fixtures" / "oasst" / "oasst1_sample.jsonl"


def test_oasst_seed_data_with_model_judged_eft_reaches_m1(world_texts, tmp_path):  # noqa: F811
    m0 = save_random_model("llama", world_texts, tmp_path / "m0")
    out = tmp_path / "run"
    run_job(["model=hf", f"model.name_or_path={m0}", "data=oasst", f"data.source={FIXTURE}", "debug=smoke",
             "data.sizes.ift=4", "data.sizes.eval=2", "data.sizes.judge_eval=2", "loop.iterations=0",
             "seed_sft.max_steps=5", "judge.num_judgments=1", "logger=none", f"hydra.run.dir={out}"], tmp_path / "run.log")
    data = out / "data"
    for name in ("ift", "eft_candidates", "eval", "judge_eval", "eft_graded"):
        assert (data / f"{name}.jsonl").exists(), name
    ift = [json.loads(line) for line in (data / "ift.jsonl").read_text().splitlines()]
    assert 0 < len(ift) <= 4
    # EFT came from the IFT-only model judging human-ranked replies, before M1 was trained.
    assert (out / "iteration_1" / "ift_only_model" / "config.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["model"] for e in summary["iterations"]] == ["M0", "M1"]
    m1 = summary["iterations"][1]
    assert "gt_score" not in m1["eval"] and m1["eval"]["n"] == 2  # no ground truth for real prompts
    assert set(m1["judge"]) >= {"pairwise_acc", "spearman", "kendall", "exact_match", "five_best", "parse_rate"}
    assert m1["judge"]["n_prompts"] == 2  # judged against the human ranking of the held-out sets


def test_external_judge_head_to_head_on_embedded_models(world_texts, tmp_path):  # noqa: F811
    judge_model = save_random_model("llama", world_texts, tmp_path / "external_judge")
    out = tmp_path / "run"
    run_job(["debug=smoke", "loop.iterations=0", "logger=none", f"eval.judge_model={judge_model}",
             f"hydra.run.dir={out}"], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    m1 = summary["iterations"][1]
    ext = m1["external_judge"]["vs_prev"]  # M1 against M0, judged in both orders by the external model
    assert ext["n"] == 8 and abs(ext["win"] + ext["tie"] + ext["loss"] - 1) < 1e-9
    assert "vs_prev" in m1["head_to_head"]  # the ground-truth head-to-head sits beside it
    assert "external_judge" not in summary["iterations"][0]  # M0 has no earlier model to meet
