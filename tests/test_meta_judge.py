"""Meta-Rewarding's meta-judge: the model judges pairs of its own judgments, and DPO trains the judge on the
preferred ones beside the policy pairs (judging/meta_judge.py)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hydra.utils import instantiate

from conftest import REPRODUCIBLE_CPU, compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.judging.meta_judge import (Battle, MetaJudge, battle_matrix, bradley_terry_ratings, position_weights,
                                         score_variance)
from srlm_exp.records import CandidateJudgments, JudgedCandidate, PromptCandidates

NAN = math.nan


@pytest.fixture(scope="module")
def meta() -> MetaJudge:
    return instantiate(compose(["meta_judge=judgment_pairs"]).meta_judge)


@pytest.fixture(scope="module")
def judge():
    return instantiate(compose([]).judge)


def test_verdicts_are_parsed_from_the_letter_after_the_marker(meta):
    assert meta.parse("A is right. Winner: Judgment A") == "A"
    assert meta.parse("Winner: [Judgement B]") == "B"
    assert meta.parse("Winner: Wudgment B") == "B"               # a misspelt word before the letter
    assert meta.parse("Winner: Judgment A. On reflection, Winner: Judgment B") == "B"  # the last verdict
    for text in ("Winner: [Judgment A | Judgment B]", "Winner: both", "Winner: Judgment C", "Judgment A", ""):
        assert meta.parse(text) is None, text                    # never a default verdict


def test_position_weights_on_hand_numbers():
    assert position_weights(["A", "A", "A", "B", None]) == (0.25, 0.75)  # first position won 3 of 4
    assert position_weights([None, None]) == (0.5, 0.5)
    assert position_weights(["A", "B"]) == (0.5, 0.5)


def test_battle_matrix_counts_weighted_wins_of_each_judgment():
    battles = [Battle(0, 0, 1), Battle(0, 1, 0), Battle(0, 0, 2), Battle(0, 2, 0)]
    b = battle_matrix(3, battles, ["A", "B", "B", None], (0.25, 0.75))
    # 0 beat 1 in the first position (0.25) and again in the second (0.75); 2 beat 0 in the second (0.75).
    assert b == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.75, 0.0, 0.0]]


def test_bradley_terry_ratings_maximise_the_likelihood():
    e = bradley_terry_ratings([[0.0, 2.0], [0.0, 0.0]], ridge=0.1)
    assert e[0] > 0 > e[1] and e[0] == pytest.approx(-e[1], abs=1e-9)
    # Stationary point of 2*log sigmoid(e0 - e1) - 0.05*(e0^2 + e1^2): 2*sigmoid(e1 - e0) = 0.1*e0.
    assert 2 / (1 + math.exp(e[0] - e[1])) == pytest.approx(0.1 * e[0], rel=1e-4)
    assert bradley_terry_ratings([[0.0, 1.0], [1.0, 0.0]]) == pytest.approx([0.0, 0.0])  # even: no preference
    a_beats_b_beats_c = bradley_terry_ratings([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert a_beats_b_beats_c[0] > a_beats_b_beats_c[1] > a_beats_b_beats_c[2]


def _row(pid: int, judgments: list[list[tuple[str, float]]], gt=None) -> PromptCandidates:
    return PromptCandidates(pid, f"question {pid}", [
        JudgedCandidate(f"answer {pid}.{k}", 3, CandidateJudgments([t for t, _ in js], [s for _, s in js]), graded=gt is not None,
                        gt_score=None if gt is None else gt[k]) for k, js in enumerate(judgments)])


def test_responses_are_selected_by_judgment_disagreement(meta):
    rows = [_row(0, [[("j1 Score: 1", 1.0), ("j2 Score: 5", 5.0), ("bad", NAN)],   # variance 4
                     [("j1 Score: 2", 2.0), ("j1 Score: 2", 2.0)]]),               # one distinct judgment: skipped
            _row(1, [[("k1 Score: 3", 3.0), ("k2 Score: 4", 4.0)]])]               # variance 0.25
    selected = meta.select(rows)
    assert [(r["prompt_id"], r["response"]) for r in selected] == [(0, "answer 0.0"), (1, "answer 1.0")]
    assert selected[0]["judgments"] == ["j1 Score: 1", "j2 Score: 5"]          # the unparsed judgment is left out
    assert score_variance([1.0, 5.0, NAN]) == 4.0
    meta_one = MetaJudge(**{**_kwargs(meta), "n_responses": 1})
    assert len(meta_one.select(rows)) == 1


def _kwargs(meta: MetaJudge) -> dict:
    return dict(name=meta.name, template=meta.template, winner_marker=meta.winner_marker)


def test_judge_pairs_prefer_the_judgment_the_meta_judge_picks_in_both_orders(meta, judge):
    rows = [_row(0, [[("says 1 Score: 1", 1.0), ("says 4 Score: 4", 4.0), ("says 5 Score: 5", 5.0)]], gt=[5])]
    responses = meta.select(rows)
    battles = meta.battles(responses)
    assert len(battles) == 6  # 3 judgments: 3 pairs, each in both orders

    def prefers(b: Battle) -> str:  # the judgment closest to the truth (5), whichever position it is in
        scores = responses[0]["scores"]
        return "A" if abs(scores[b.first] - 5) < abs(scores[b.second] - 5) else "B"

    texts = [f"Winner: Judgment {prefers(b)}" for b in battles]
    pairs, records, stats = meta.judge_pairs(judge, responses, battles, texts)
    assert len(pairs) == 1 and len(records) == 6
    assert pairs[0]["chosen"] == "says 5 Score: 5" and pairs[0]["rejected"] == "says 1 Score: 1"
    assert pairs[0]["instruction"] == judge.render("question 0", "answer 0.0")  # the judge prompt is the prompt
    assert stats["first_position_wins"] == 0.5 and stats["position_weights"] == [0.5, 0.5]
    assert stats["chosen_closer_to_truth"] == 1.0 and stats["parse_rate"] == 1.0


def test_a_meta_judge_that_always_names_the_first_position_makes_no_pairs(meta, judge):
    rows = [_row(0, [[("x Score: 1", 1.0), ("y Score: 4", 4.0)]]), _row(1, [[("z Score: 0", 0.0), ("w Score: 2", 2.0)]])]
    responses = meta.select(rows)
    battles = meta.battles(responses)
    pairs, _, stats = meta.judge_pairs(judge, responses, battles, ["Winner: Judgment A"] * len(battles))
    assert pairs == [] and stats["dropped"] == {"no_verdict": 0, "tie": 2}
    assert stats["position_weights"] == [0.0, 1.0]
    pairs, _, stats = meta.judge_pairs(judge, responses, battles, ["no verdict"] * len(battles))
    assert pairs == [] and stats["dropped"] == {"no_verdict": 2, "tie": 0} and stats["parse_rate"] == 0.0


def test_meta_eft_rows_name_the_position_of_the_rows_own_judgment(meta, judge):
    class Seed:
        def eft_graded(self):
            return [{"instruction": "q", "response": f"r{s}", "score": s, "judgment": f"verdict {s}. Score: {s}"}
                    for s in (1, 3, 5)] + [{"instruction": "lonely", "response": "r", "score": 2, "judgment": "Score: 2"}]

    rows = meta.eft_rows(Seed(), judge, seed=0)
    assert len(rows) == 3  # one per response with a sibling of another score
    for r in rows:
        winner = meta.parse(r["response"])
        assert winner in ("A", "B")
        own = r["instruction"].split("<response>")[1].split("</response>")[0]  # e.g. "r3": its own judgment wins
        line = next(x for x in r["instruction"].splitlines() if x.startswith(f"Judgment {winner}:"))
        assert line == f"Judgment {winner}: verdict {own[1]}. Score: {own[1]}"
    assert meta.eft_rows(Seed(), judge, seed=0) == rows  # seeded
    assert len(MetaJudge(**_kwargs(meta), eft_rows=2).eft_rows(Seed(), judge, seed=0)) == 2
    assert MetaJudge(**_kwargs(meta), eft=False).eft_rows(Seed(), judge, seed=0) == []


@pytest.mark.parametrize("overrides,key", [
    (["train=sft"], "meta_judge"),
    (["judge=oracle"], "meta_judge"),
    (["judge=pairwise"], "meta_judge"),
    (["judge=composite"], "meta_judge"),   # scores without judgments of its own to compare
    (["train=reinforce"], "meta_judge"),   # no judge pairs in its data
    (["meta_judge.template=no placeholders"], "meta_judge.template"),
    (["meta_judge.n_responses=0"], "meta_judge.n_responses"),
    (["meta_judge.ridge=0"], "meta_judge.ridge"),
    (["meta_judge.temperature=-1"], "meta_judge.temperature"),
])
def test_bad_settings_are_config_errors_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose(["debug=smoke", "experiment=meta_rewarding", *overrides]))


def test_any_dpo_stage_and_pointwise_judge_prompt_take_a_meta_judge():
    for overrides in (["train=dpo_nll"], ["judge=holistic5"], ["judge=constraints5"]):
        validate(compose(["debug=smoke", "experiment=meta_rewarding", *overrides]))


def test_the_preset_sets_the_meta_judge_and_length_controlled_pairs():
    cfg = compose(["experiment=meta_rewarding"])
    assert cfg.meta_judge.name == "judgment_pairs" and cfg.pairs._target_.endswith("length_control")
    validate(cfg)


# ----------------------------------------------------------------------------- the loop

# Greedy meta-judgments: the smoke model's sampled ones rarely spell a verdict; greedy ones do, and repeat. Three
# judgments per candidate, so that some responses have two distinct ones to compare.
META_RUN = ["debug=smoke", "logger=none", "experiment=meta_rewarding", "meta_judge.temperature=0", "judge.num_judgments=3"]


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meta")
    run_job([*META_RUN, f"hydra.run.dir={root / 'job'}"], root / "run.log", env=REPRODUCIBLE_CPU)
    return root / "job"


def test_smoke_loop_reaches_m3_with_the_meta_judge(meta_run):
    summary = json.loads((meta_run / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    assert json.loads((meta_run / "iteration_1" / "training.json").read_text())["meta_eft"] > 0  # M1 learned the format
    for t in (2, 3):
        it = meta_run / f"iteration_{t}"
        stats = json.loads((it / "stats.json").read_text())["meta_judge"]
        records = read_jsonl(it / "meta_judgments.jsonl")
        judge_pairs = read_jsonl(it / "judge_pairs.jsonl")
        assert stats["battles"] == len(records) > 0 and stats["pairs"] == len(judge_pairs)
        assert stats["parse_rate"] == pytest.approx(sum(r["verdict"] is not None for r in records) / len(records))
        assert json.loads((it / "training.json").read_text())["judge_pairs"] == len(judge_pairs)  # DPO trained on them
        assert summary["iterations"][t]["meta_judge"] == stats  # in the summary (and W&B), with what M(t) trained on
        for p in judge_pairs:
            assert p["chosen"] != p["rejected"] and p["chosen_rating"] > p["rejected_rating"]


def test_dpo_trains_on_the_judge_pairs_beside_the_policy_pairs(meta_run, tmp_path):
    """The stage's loader holds every policy pair and every judge pair (each prompted with the judge prompt)."""
    from srlm_exp.models.loading import load_tokenizer
    from srlm_exp.training.dpo import DPOStage
    from srlm_exp.training.stage import StageInputs
    from transformers import AutoModelForCausalLM

    data = tmp_path / "iteration_2"
    data.mkdir()
    shutil.copy(meta_run / "iteration_2" / "pairs.jsonl", data)
    pairs = read_jsonl(data / "pairs.jsonl")
    judge = instantiate(compose(["debug=smoke"]).judge)
    rows = read_jsonl(meta_run / "iteration_2" / "candidates.jsonl")[:3]
    judge_pairs = [{"instruction": judge.render(r["instruction"], r["candidates"][0]["text"]), "chosen": "right. Score: 5",
                    "rejected": "wrong. Score: 1"} for r in rows]
    (data / "judge_pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in judge_pairs))
    tok = load_tokenizer(meta_run / "iteration_1" / "model", None, False)
    model = AutoModelForCausalLM.from_pretrained(meta_run / "iteration_1" / "model")
    seen = []

    def run_fit(module, loader, epochs, max_steps):
        seen.extend(loader.dataset)

    stage = DPOStage(min_examples=1, batch_size=4)
    trained = stage.fit(model, StageInputs(tokenizer=tok, iteration=2, seed=0, data_dir=data, seed_data=None, judge=judge,
                                           run_fit=run_fit, load_model=None, release=lambda m: None))
    assert trained == {"pairs": len(pairs), "replayed": 0, "judge_pairs": 3, "judge_pairs_replayed": 0}
    assert len(seen) == len(pairs) + 3
    rubric = tok(judge.template.split("<INSTRUCTION_HERE>")[0].strip(), add_special_tokens=False)["input_ids"][:20]
    with_rubric = [_contains(i["chosen"].input_ids, rubric) for i in seen]
    assert sum(with_rubric) == 3 and all("ref_chosen" in i for i in seen)
    # Judge pairs are batched apart from policy pairs (a batch pads to its longest prompt); only the partial
    # batches, which come last, may meet.
    batches = [with_rubric[k:k + 4] for k in range(0, len(seen), 4)]
    assert sum(0 < sum(b) < len(b) for b in batches) <= 1


def _contains(seq, sub) -> bool:
    return any(list(seq[k:k + len(sub)]) == list(sub) for k in range(len(seq) - len(sub) + 1))


def test_resume_after_a_stop_while_pairing_reads_the_meta_judgments_back(meta_run, tmp_path):
    """Stop point: AIFT(M2)'s meta-judging was written, the job died before its pairs. The rerun reads the
    meta-judgments back and finishes with the uninterrupted run's M3."""
    job = tmp_path / "job"
    shutil.copytree(meta_run, job)
    for rel in ("iteration_3/pairs.jsonl", "iteration_3/stats.json"):
        (job / rel).unlink()
    shutil.rmtree(job / "iteration_3" / "model")
    summary = json.loads((meta_run / "summary.json").read_text())
    stopped = dict(summary, status="running", iterations=[e for e in summary["iterations"] if e["iteration"] < 2])
    (job / "summary.json").write_text(json.dumps(stopped, indent=2))
    kept = ["iteration_3/meta_judgments.jsonl", "iteration_3/judge_pairs.jsonl", "iteration_3/meta_judge.json"]
    before = {rel: (job / rel).stat().st_mtime_ns for rel in kept}

    proc = run_job([*META_RUN, f"hydra.run.dir={job}"], tmp_path / "resume.log", env=REPRODUCIBLE_CPU)
    assert json.loads((job / "summary.json").read_text())["status"] == "finished"
    assert {rel: (job / rel).stat().st_mtime_ns for rel in kept} == before, "meta-judging was redone"
    assert "iteration 2 meta-judge" not in proc.log
    assert (job / "iteration_3/pairs.jsonl").read_bytes() == (meta_run / "iteration_3/pairs.jsonl").read_bytes()
    assert (job / "iteration_3/model/model.safetensors").read_bytes() == \
        (meta_run / "iteration_3/model/model.safetensors").read_bytes()


def test_smoke_loop_reaches_m3_with_the_meta_judge_under_lora(meta_run, tmp_path):
    """M2 and M3 trained as LoRA adapters on the full run's M1 (the smoke model's adapters alone learn no judge
    in 200 steps, so M1 is shared); the adapters' model meta-judges AIFT(M2)."""
    out = tmp_path / "run"
    (out / "iteration_1").mkdir(parents=True)
    for rel in ("data", "iteration_0", "iteration_1/model"):
        shutil.copytree(meta_run / rel, out / rel)
    for rel in ("resolved_config.yaml", "iteration_1/training.json"):
        shutil.copy(meta_run / rel, out / rel)
    run_job([*META_RUN, "model.lora.enabled=true", "resume_anyway=true", f"hydra.run.dir={out}"], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    for t in (2, 3):
        stats = json.loads((out / f"iteration_{t}" / "stats.json").read_text())["meta_judge"]
        assert stats["battles"] == len(read_jsonl(out / f"iteration_{t}" / "meta_judgments.jsonl")) > 0
        assert "judge_pairs" in json.loads((out / f"iteration_{t}" / "training.json").read_text())
