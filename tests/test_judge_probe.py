"""The greedy judge probe on fresh world tasks (srlm_exp/world/judge_probe.py)."""
from __future__ import annotations

import json
import math

import pytest

from srlm_exp.world.grader import grade_task, judgment
from srlm_exp.world.judge_probe import POLICY_STYLE_SCORES, main, probe_metrics, probe_sets


def test_probe_sets_are_fixed_by_the_seed_and_policy_style_sets_are_right_close_wrong():
    sets = probe_sets(20, seed=3)
    assert sets == probe_sets(20, seed=3) and sets != probe_sets(20, seed=4)
    assert len({t.family for t, _ in sets["ranked"]}) == 10
    for task, responses in sets["policy_style"]:
        assert tuple(grade_task(task, r).score for r in responses) == POLICY_STYLE_SCORES
        assert all(r.startswith("The answer is ") for r in responses)
    for task, responses in sets["ranked"]:
        assert len({grade_task(task, r).score for r in responses}) == 4


def test_the_grader_as_judge_is_perfect_and_a_constant_judge_ranks_nothing():
    sets = probe_sets(30)["policy_style"]
    texts = [[judgment(t, r) for r in rs] for t, rs in sets]
    truth = [[float(grade_task(t, r).score) for r in rs] for t, rs in sets]
    perfect = probe_metrics(sets, texts, truth)
    assert perfect["pairwise_acc"] == 1.0 and perfect["tie_rate"] == 0.0 and perfect["parse_rate"] == 1.0
    assert perfect["states_answer"] == 1.0 and perfect["quotes_response"] == 1.0
    assert set(perfect["states_answer_per_family"].values()) == {1.0}

    # Says "correct" to everything, with a wrong answer stated and one judgment unparsed.
    texts = [["The correct answer is zzz. The response is correct and exact. Score: 5"] * len(rs) for _, rs in sets]
    scores = [[5.0] * len(rs) for _, rs in sets]
    scores[0][0] = math.nan
    constant = probe_metrics(sets, texts, scores)
    assert constant["pairwise_acc"] == 0.0 and constant["tie_rate"] == pytest.approx(1 - 2 / (3 * len(sets)))
    assert constant["states_answer"] == 0.0 and constant["quotes_response"] is None
    assert constant["parse_rate"] == pytest.approx(1 - 1 / (3 * len(sets)))


def test_cli_probes_a_trained_model(smoke_run, tmp_path, capsys):
    out = tmp_path / "probe.json"
    main([str(smoke_run / "iteration_1" / "model"), "--tasks", "4", "--json", str(out)])
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    for kind in ("ranked", "policy_style"):
        m = result[kind]
        assert m["n_pairs"] == 4 * (6 if kind == "ranked" else 3)
        assert 0 <= m["states_answer"] <= 1 and 0 <= m["parse_rate"] <= 1 and 0 <= m["tie_rate"] <= 1


def test_cli_refuses_a_pairwise_judge_and_no_tasks(smoke_run, capsys):
    model = str(smoke_run / "iteration_1" / "model")
    with pytest.raises(SystemExit):
        main([model, "--judge", "conf/judge/pairwise.yaml"])
    assert "not a pointwise judge prompt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([model, "--tasks", "0"])
    assert "--tasks is 0" in capsys.readouterr().err
