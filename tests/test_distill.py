"""data=distill (Zephyr's dSFT): a teacher writes M1's IFT responses, optionally refining each instruction."""
from __future__ import annotations

import json

import pytest

from conftest import compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate


def test_a_teacher_is_required_and_must_exist():
    with pytest.raises(ConfigError, match=r"data\.teacher_path"):
        validate(compose(["debug=smoke", "data=distill"]))
    with pytest.raises(ConfigError, match=r"data\.teacher_path: no such directory"):
        validate(compose(["debug=smoke", "data=distill", "data.teacher_path=/no/such/teacher"]))


@pytest.mark.parametrize("refine", [False, True], ids=["dsft", "refined"])
def test_smoke_loop_sft_on_the_teacher_s_responses(refine, smoke_run, tmp_path):
    teacher = smoke_run / "iteration_3" / "model"
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", "data=distill", f"data.teacher_path={teacher}",
             f"data.refine_instructions={str(refine).lower()}", "callbacks.self_reward.cut_off=keep"],  # see LORA_SMOKE
            tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    seed_rows, rows = read_jsonl(out / "data" / "ift.jsonl"), read_jsonl(out / "data" / "ift_distilled.jsonl")
    assert len(rows) == len(seed_rows) and all(r["teacher"] == str(teacher) for r in rows)
    assert sum(r["response"] != s["response"] for r, s in zip(rows, seed_rows)) > 0  # the teacher's, not the seed's
    if refine:
        assert [r["original_instruction"] for r in rows] == [s["instruction"] for s in seed_rows]
    else:
        assert [r["instruction"] for r in rows] == [s["instruction"] for s in seed_rows]
    assert json.loads((out / "iteration_1" / "training.json").read_text())["ift"] == len(rows)
