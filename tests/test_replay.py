"""Experience replay (seed 004): earlier iterations' rows mixed into the current training set at a share."""
from __future__ import annotations

import json
import random

import pytest

from conftest import LORA_SMOKE, compose, run_job
from movement import assert_moved_where_rewarded, assert_trained_after_m1
from srlm_exp.artifacts import write_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.training.replay import earlier_rows, replay_count, replay_mix


def test_replay_proportions_on_hand_numbers():
    assert replay_count(60, 0.25) == 20          # 20 of 80 = 25% replayed
    assert replay_count(60, 0.5) == 60 and replay_count(60, 0.0) == 0
    current, earlier = [{"i": k} for k in range(60)], [{"e": k} for k in range(100)]
    mixed, k = replay_mix(current, earlier, 0.25, random.Random(0))
    assert k == 20 and len(mixed) == 80 and mixed[:60] == current
    assert len({m["e"] for m in mixed[60:]}) == 20  # without replacement
    mixed, k = replay_mix(current, earlier[:5], 0.25, random.Random(0))
    assert k == 5  # all of them when there are fewer


def test_earlier_rows_come_from_iterations_2_to_t_minus_1(tmp_path):
    for t, rows in [(2, [{"a": 1}]), (3, [{"a": 2}, {"a": 3}]), (4, [{"a": 4}])]:
        (tmp_path / f"iteration_{t}").mkdir()
        write_jsonl(tmp_path / f"iteration_{t}" / "pairs.jsonl", rows)
    assert earlier_rows(tmp_path / "iteration_4", 4, "pairs.jsonl") == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert earlier_rows(tmp_path / "iteration_2", 2, "pairs.jsonl") == []


@pytest.mark.parametrize("train", ["dpo", "sft", "reinforce", "ppo"])
def test_a_share_outside_0_1_is_a_config_error(train):
    with pytest.raises(ConfigError, match=r"train\.replay_share"):
        validate(compose(["debug=smoke", f"train={train}", "train.replay_share=1.0"]))


# Under LoRA the smoke model's adapters learn no judge in 200 steps, so the oracle scores the candidates there.
@pytest.mark.parametrize("train,key,extra", [("dpo", "replayed", []), ("reinforce", "replayed_prompts", []),
                                             ("reinforce", "replayed_prompts", [*LORA_SMOKE, "judge=oracle"])],
                         ids=["dpo", "reinforce", "reinforce-lora"])
def test_smoke_loop_replays_earlier_data_from_m3_on(train, key, extra, tmp_path):
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", f"train={train}", "train.replay_share=0.5",
             *(["train.max_steps=3", "train.min_examples=1"] if train == "reinforce" else []), *extra], tmp_path / "run.log")
    trained = {t: json.loads((out / f"iteration_{t}" / "training.json").read_text()) for t in (2, 3)}
    assert trained[2][key] == 0  # M2: nothing earlier to replay
    assert trained[3][key] > 0
    if train == "reinforce":
        assert_moved_where_rewarded(out)
    else:
        assert_trained_after_m1(out)
