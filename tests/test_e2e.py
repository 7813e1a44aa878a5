"""The whole loop run the way a user runs it (`python run.py ...` in a subprocess), shrunk by
debug=smoke: the outputs of a finished job, resuming a stopped job, W&B offline runs, a multirun
sweep, and a failing job. The smoke M0 is built once per session (SRLM_EXP_CACHE, conftest.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import REPRODUCIBLE_CPU, compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.generation.aift import make_aift
from srlm_exp.generation.candidates import CandidateSampler
from srlm_exp.generation.prompts import InstructionPoolPrompts
from srlm_exp.judging.judge import Judge
from srlm_exp.pairs.rules import best_vs_worst
from srlm_exp.phases import PhaseLog
from srlm_exp.records import CandidateJudgments, CutOffRule

EVAL_KEYS = {"gt_score", "gt_exact", "mean_length", "per_family"}
JUDGE_KEYS = {"pairwise_acc", "exact_match", "spearman", "kendall", "five_best", "parse_rate"}
PAIRS_KEYS = {"n", "tie_rate"}
GENERATED_KEYS = {"parse_rate", "score_hist", "chosen_len", "rejected_len"}
AIFT_JSONL = ("prompts.jsonl", "candidates.jsonl", "pairs.jsonl")
SMOKE = compose(["debug=smoke"])  # the settings the smoke job runs with, to check outputs against


def _summary(job_dir: Path) -> dict:
    return json.loads((job_dir / "summary.json").read_text())


def _offline_runs(job_dir: Path) -> list[Path]:
    return sorted((job_dir / "wandb").glob("offline-run-*"))


@pytest.fixture(scope="module")
def ds_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("hf_datasets_cache"))


# ------------------------------------------------------------------------------ a finished job

def test_summary_has_every_model_and_metric(smoke_run):
    s = _summary(smoke_run)
    assert s["status"] == "finished" and "error" not in s
    assert s["job"]["choices"]["debug"] == "smoke" and s["job"]["choices"]["logger"] == "none"
    assert s["job"]["sweep"] is None
    its = s["iterations"]
    assert [e["iteration"] for e in its] == [0, 1, 2, 3]
    assert [e["model"] for e in its] == ["M0", "M1", "M2", "M3"]
    for e in its:
        assert EVAL_KEYS <= set(e["eval"]), e["model"]
        assert JUDGE_KEYS <= set(e["judge"]), e["model"]
        assert 0 <= e["eval"]["gt_score"] <= 5 and 0 <= e["eval"]["gt_exact"] <= 1
        assert e["eval"]["mean_length"] >= 0
        assert e["eval"]["per_family"] and all({"gt_score", "gt_exact"} <= set(v) for v in e["eval"]["per_family"].values())
        assert e["judge"]["parse_rate"] is None or 0 <= e["judge"]["parse_rate"] <= 1
        if e["iteration"] >= 2:
            assert PAIRS_KEYS <= set(e["pairs"]) and GENERATED_KEYS <= set(e["generated"]), e["model"]
            assert "dropped" not in e["pairs"]
            assert e["pairs"]["n"] == len(read_jsonl(smoke_run / f"iteration_{e['iteration']}" / "pairs.jsonl"))
            assert e["pairs"]["n"] >= SMOKE.train.min_examples
            assert 0 <= e["pairs"]["tie_rate"] <= 1
            assert all(0 <= int(k) <= 5 for k in e["generated"]["score_hist"])
        else:
            assert "pairs" not in e and "generated" not in e, e["model"]
    # Where the time went: M0's build; each M(t)'s training, its AIFT data (M1, M2) and its evaluation.
    # No GPU memory figures on CPU.
    assert [sorted(e["timings"]) for e in its] == [["eval", "m0"]] + [
        ["candidates_and_judging", "eval", "prompts", "train"]] * 2 + [["eval", "train"]]
    assert all(v >= 0 for e in its for v in e["timings"].values())
    assert not any("peak_gpu_memory_gb" in e for e in its)
    assert (smoke_run / "resolved_config.yaml").exists()


@pytest.mark.parametrize("t", [2, 3])
def test_aift_files_load_with_datasets(smoke_run, ds_cache, t):
    it = smoke_run / f"iteration_{t}"
    loaded = {name: datasets.load_dataset("json", data_files=str(it / name), split="train", cache_dir=ds_cache)
              for name in AIFT_JSONL}
    prompts, cands, pairs = loaded["prompts.jsonl"], loaded["candidates.jsonl"], loaded["pairs.jsonl"]
    assert len(prompts) == SMOKE.prompts.n_prompts
    assert {"prompt_id", "instruction"} <= set(prompts.column_names)
    assert {"prompt_id", "instruction", "candidates", "judge_parse_rate"} <= set(cands.column_names)
    assert {"instruction", "chosen", "rejected", "chosen_score", "rejected_score"} <= set(pairs.column_names)
    assert cands["instruction"] == prompts["instruction"] and cands["prompt_id"] == prompts["prompt_id"]
    assert len(pairs) >= 1
    stats = json.loads((it / "stats.json").read_text())
    assert stats["pairs"]["n"] == len(pairs) and stats["pairs"]["prompts"] == len(prompts)


def test_prompts_are_new_each_iteration(smoke_run):
    p2 = {r["instruction"] for r in read_jsonl(smoke_run / "iteration_2" / "prompts.jsonl")}
    p3 = {r["instruction"] for r in read_jsonl(smoke_run / "iteration_3" / "prompts.jsonl")}
    seed = {r["instruction"] for r in read_jsonl(smoke_run / "data" / "ift.jsonl")}
    assert not (p2 & p3) and not (p2 & seed) and not (p3 & seed)


@pytest.mark.parametrize("t", [2, 3])
def test_candidates_keep_raw_judgments_and_scores(smoke_run, t):
    k = SMOKE.judge.num_judgments
    rows = read_jsonl(smoke_run / f"iteration_{t}" / "candidates.jsonl")
    for row in rows:
        assert len(row["candidates"]) == SMOKE.callbacks.self_reward.n_candidates
        assert 0 <= row["judge_parse_rate"] <= 1
        for c in row["candidates"]:
            assert isinstance(c["text"], str) and c["length"] >= 0
            assert len(c["judgments"]) == len(c["judgment_scores"]) == k
            assert all(isinstance(j, str) for j in c["judgments"])
            valid = [x for x in c["judgment_scores"] if x is not None]
            assert all(0 <= x <= 5 for x in valid)
            if valid:
                assert c["score"] == pytest.approx(sum(valid) / len(valid))
            else:
                assert c["score"] is None  # a failed parse is missing, never a score
            assert "gt_score" in c  # the world grades every candidate
    assert any(c["score"] is not None for row in rows for c in row["candidates"])


@pytest.mark.parametrize("t", [2, 3])
def test_every_pair_prefers_the_higher_scored_candidate(smoke_run, t):
    it = smoke_run / f"iteration_{t}"
    by_prompt = {r["prompt_id"]: r for r in read_jsonl(it / "candidates.jsonl")}
    for p in read_jsonl(it / "pairs.jsonl"):
        assert p["chosen"] != p["rejected"]
        assert p["chosen_score"] > p["rejected_score"]
        row = by_prompt[p["prompt_id"]]
        assert p["instruction"] == row["instruction"]
        # Pairs come from this prompt's candidates; copies of one text are merged, their judgments pooled.
        for text, score in ((p["chosen"], p["chosen_score"]), (p["rejected"], p["rejected_score"])):
            pooled = [s for c in row["candidates"] if c["text"] == text for s in c["judgment_scores"] if s is not None]
            assert pooled and sum(pooled) / len(pooled) == pytest.approx(score)


@pytest.mark.parametrize("t", [1, 2, 3])
def test_model_dirs_load_with_from_pretrained(smoke_run, t):
    model_dir = smoke_run / f"iteration_{t}" / "model"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    assert tok.chat_template and tok.pad_token_id != tok.eos_token_id
    ids = tok.apply_chat_template([{"role": "user", "content": "Add 2 and 3."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape[-1] >= len(tok) and torch.isfinite(logits).all()
    assert model.config.hidden_size == SMOKE.model.architecture.hidden_size


# ------------------------------------------------------------------------------ resume

def _fingerprints(root: Path, rel_paths: list[str]) -> dict[str, tuple[int, bytes]]:
    return {p: ((root / p).stat().st_mtime_ns, (root / p).read_bytes()) for p in rel_paths}


def test_resume_after_a_stop_while_pairing_aift_m2(smoke_run, tmp_path):
    """Stop point: training M2 ended, its save and AIFT(M2)'s prompts and candidates were written, the
    job died while pairing (before iteration_3/pairs.jsonl). M2 was never evaluated (that comes after
    the callback), so summary.json has M0 and M1 only. A rerun on the same dir must redo exactly the
    rest: pairs of iteration 3, eval of M2, training and eval of M3."""
    job = tmp_path / "job"
    shutil.copytree(smoke_run, job)  # copy2: mtimes kept
    for rel in ("iteration_3/pairs.jsonl", "iteration_3/stats.json", "iteration_3/eval_responses.jsonl",
                "iteration_2/eval_responses.jsonl"):
        (job / rel).unlink()
    shutil.rmtree(job / "iteration_3" / "model")
    original = _summary(smoke_run)
    stopped = dict(original, status="running", iterations=[e for e in original["iterations"] if e["iteration"] < 2])
    (job / "summary.json").write_text(json.dumps(stopped, indent=2))

    untouched = sorted(str(p.relative_to(job)) for d in ("data", "iteration_0", "iteration_1", "iteration_2")
                       for p in (job / d).rglob("*") if p.is_file())
    untouched += ["iteration_3/prompts.jsonl", "iteration_3/candidates.jsonl"]
    assert "iteration_2/pairs.jsonl" in untouched and "iteration_2/model/model.safetensors" in untouched
    before = _fingerprints(job, untouched)

    # Compared byte for byte with smoke_run's M3 below: the same threads and kernels.
    proc = run_job(["debug=smoke", "logger=none", f"hydra.run.dir={job}"], tmp_path / "stdout.log", env=REPRODUCIBLE_CPU)

    s = _summary(job)
    assert s["status"] == "finished"
    assert [e["model"] for e in s["iterations"]] == ["M0", "M1", "M2", "M3"]
    # Finished phases were read back, not redone: same bytes, same mtimes.
    after = _fingerprints(job, untouched)
    changed = [p for p in untouched if after[p] != before[p]]
    assert changed == [], f"rewritten on resume: {changed}"
    for e_old, e_new in zip(original["iterations"][:2], s["iterations"][:2]):
        assert e_new == e_old, f"{e_old['model']} was re-evaluated"
    assert "M1: SFT on" not in proc.log, "M1 was retrained"
    assert "iteration 1 data" not in proc.log, "AIFT(M1) was remade"
    # The redone phases are deterministic: identical to the uninterrupted run.
    for rel in ("iteration_3/pairs.jsonl", "iteration_2/eval_responses.jsonl"):
        assert (job / rel).read_bytes() == (smoke_run / rel).read_bytes(), rel
    assert (json.loads((job / "iteration_3/stats.json").read_text())
            == json.loads((smoke_run / "iteration_3/stats.json").read_text()))
    for t in (2, 3):
        old, new = original["iterations"][t], s["iterations"][t]
        assert new["eval"] == old["eval"] and new.get("pairs") == old.get("pairs"), f"M{t}"
    assert (job / "iteration_3/model/model.safetensors").read_bytes() == \
        (smoke_run / "iteration_3/model/model.safetensors").read_bytes(), "M3 differs from the uninterrupted run's"


def test_a_job_stopped_while_sampling_resamples_exactly_what_the_uninterrupted_run_sampled(smoke_run, tmp_path):
    """Stop point: M2 trained and saved, the job died while sampling AIFT(M2)'s candidates, M2 not evaluated.
    Every sampled phase starts its own random stream (seed_sampling), so the rerun samples the same candidates
    and judgments and gives M2 the same sampled evaluation and judge metrics as the uninterrupted run."""
    job = tmp_path / "job"
    shutil.copytree(smoke_run, job)
    for rel in ("iteration_3/candidates.jsonl", "iteration_3/pairs.jsonl", "iteration_3/stats.json",
                "iteration_2/eval_responses.jsonl", "iteration_2/eval_sampled_responses.jsonl",
                "iteration_3/eval_responses.jsonl", "iteration_3/eval_sampled_responses.jsonl"):
        (job / rel).unlink(missing_ok=True)
    shutil.rmtree(job / "iteration_3" / "model")
    original = _summary(smoke_run)
    (job / "summary.json").write_text(json.dumps(
        dict(original, status="running", iterations=[e for e in original["iterations"] if e["iteration"] < 2])))

    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={job}"], tmp_path / "stdout.log", env=REPRODUCIBLE_CPU)

    assert (job / "iteration_3/candidates.jsonl").read_bytes() == (smoke_run / "iteration_3/candidates.jsonl").read_bytes()
    resumed = _summary(job)["iterations"][2]
    assert resumed["eval"] == original["iterations"][2]["eval"] and resumed["judge"] == original["iterations"][2]["judge"]


class _StubSampler(CandidateSampler):
    """Candidates without a model: the same texts for every prompt."""

    n_candidates, batch_size, candidate_models = 4, 8, []
    cut_off = CutOffRule()  # plain texts record no ending: the rule never applies

    def __init__(self, texts):
        self.texts = texts

    def sample(self, model, tokenizer, prompts):
        return [list(self.texts) for _ in prompts]


class _StubJudge(Judge):
    """One judgment per candidate with a given score."""

    model_path = None

    def __init__(self, scores):
        self.scores = scores

    def judge(self, model, tokenizer, instructions, candidates, batch_size=32, desc=""):
        return [[CandidateJudgments([f"Score: {s}"], [s]) for s in self.scores] for _ in candidates]


class _StubTokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class _Seed:
    def seed_instructions(self):
        return ["Add 2 and 3."]

    def sample_instruction(self, rng):
        return f"Add {rng.randrange(100)} and {rng.randrange(100)}."


def _make_aift(out: Path, texts_and_scores=None) -> list[dict]:
    """make_aift on stub candidates. By default: distinct texts with ties at the top and at the bottom of
    every prompt, so the pair rule has to break ties with its random generator."""
    texts_and_scores = texts_and_scores or [(f"answer {i}", s) for i, s in enumerate([4.0, 1.0, 4.0, 1.0])]
    make_aift(None, _StubTokenizer(), out_dir=out, iteration=2, seed=0, prompt_source=InstructionPoolPrompts(n_prompts=8),
              sampler=_StubSampler([t for t, _ in texts_and_scores]), judge=_StubJudge([s for _, s in texts_and_scores]),
              pair_rule=best_vs_worst, seed_data=_Seed(), earlier_prompts=[], phases=PhaseLog(), models=None)
    return read_jsonl(out / "pairs.jsonl")


def test_an_extended_job_adds_aift_to_the_entries_written_before_it(smoke_run, tmp_path):
    """A job run with fewer loop.iterations and then extended: M(t)'s entry was written before AIFT(M(t))
    existed. The extension makes AIFT(M(t)) and must add its generation-verification gap to that entry
    without re-evaluating M(t)."""
    job = tmp_path / "job"
    shutil.copytree(smoke_run, job)
    original = _summary(smoke_run)
    assert all("aift" in e for e in original["iterations"] if e["iteration"] in (1, 2))
    as_extended = dict(original, iterations=[{k: v for k, v in e.items() if k != "aift"} for e in original["iterations"]])
    (job / "summary.json").write_text(json.dumps(as_extended, indent=2))

    proc = run_job(["debug=smoke", "logger=none", f"hydra.run.dir={job}"], tmp_path / "stdout.log")

    s = _summary(job)
    assert s["status"] == "finished"
    for old, new in zip(original["iterations"], s["iterations"]):
        assert new.get("aift") == old.get("aift"), old["model"]
        assert {k: v for k, v in new.items() if k != "aift"} == {k: v for k, v in old.items() if k != "aift"}
    assert "M1: {" not in proc.log, "M1 was re-evaluated"


def test_a_branch_after_m1_reuses_the_jobs_m1_and_trains_its_own_m2_m3(smoke_run, tmp_path):
    """`python -m srlm_exp.branch` then a rerun with another judge: the seed data, M0, M1 and their
    evaluations are the source job's, read back and never redone; AIFT(M1) onwards is the new judge's."""
    from srlm_exp.branch import BranchError, branch, main as branch_main

    job = tmp_path / "oracle"
    assert branch_main([str(smoke_run), str(job)]) == 0
    assert not (job / "iteration_2").exists() and (job / "iteration_1" / "model" / "config.json").exists()
    with pytest.raises(BranchError, match="not empty"):
        branch(smoke_run, job)
    with pytest.raises(BranchError, match="no summary.json"):
        branch(tmp_path / "nowhere", tmp_path / "x")
    assert branch_main([str(job), str(tmp_path / "y"), "--through", "2"]) == 2  # M2 not made yet
    original = _summary(smoke_run)

    refused = run_job(["debug=smoke", "logger=none", "judge=oracle", f"hydra.run.dir={job}"], tmp_path / "refused.log",
                      check=False)
    assert refused.returncode != 0 and "resume_anyway=true" in refused.log  # a branch changes settings knowingly
    proc = run_job(["debug=smoke", "logger=none", "judge=oracle", f"hydra.run.dir={job}", "resume_anyway=true"],
                   tmp_path / "stdout.log")

    s = _summary(job)
    assert s["status"] == "finished" and s["job"]["choices"]["judge"] == "oracle"
    assert [e["model"] for e in s["iterations"]] == ["M0", "M1", "M2", "M3"]
    for t in (0, 1):  # read back, not re-evaluated (AIFT(M1), its stats and timings, are the branch's own)
        new, old = s["iterations"][t], original["iterations"][t]
        assert {k: v for k, v in new.items() if k not in ("aift", "timings")} == \
            {k: v for k, v in old.items() if k not in ("aift", "timings")}
        assert {k: new["timings"][k] for k in ("train", "eval") if k in old["timings"]} == \
            {k: old["timings"][k] for k in ("train", "eval") if k in old["timings"]}
    assert "M1: SFT on" not in proc.log and "M1: {" not in proc.log
    assert s["iterations"][1]["aift"]["pairs"] == s["iterations"][2]["pairs"]["n"]  # AIFT(M1) remade by the oracle
    assert (job / "iteration_1/model/model.safetensors").read_bytes() == \
        (smoke_run / "iteration_1/model/model.safetensors").read_bytes()
    assert (job / "iteration_2/candidates.jsonl").read_bytes() != \
        (smoke_run / "iteration_2/candidates.jsonl").read_bytes()  # judged by the oracle, not by M1
    assert json.loads((job / "branched_from.json").read_text())["through"] == "M1"


def test_a_branch_with_candidates_trains_on_the_same_candidates_under_its_own_cut_off_rule(smoke_run, tmp_path):
    """`branch --with-candidates`: AIFT(M1)'s prompts and judged candidates are the source's, read back and never
    resampled; the rerun makes its own pairs under its own cut-off rule, and refuses a change to anything that
    made the candidates (here the judge), even with resume_anyway."""
    from srlm_exp.branch import BranchError, branch, main as branch_main
    from srlm_exp.records import PromptCandidates

    with pytest.raises(BranchError, match="M0 makes none"):
        branch(smoke_run, tmp_path / "m0", through=0, with_candidates=True)
    job = tmp_path / "keep"
    assert branch_main([str(smoke_run), str(job), "--with-candidates"]) == 0
    assert sorted(p.name for p in (job / "iteration_2").iterdir()) == ["candidates.jsonl", "prompts.jsonl"]
    assert json.loads((job / "branched_from.json").read_text())["candidates"] == "AIFT(M1)"

    refused = run_job(["debug=smoke", "logger=none", "judge=oracle", "resume_anyway=true", f"hydra.run.dir={job}"],
                      tmp_path / "refused.log", check=False)
    assert refused.returncode != 0 and "judge" in refused.log and "--with-candidates" in refused.log
    assert not (job / "iteration_2" / "pairs.jsonl").exists()

    proc = run_job(["debug=smoke", "logger=none", "loop.iterations=1", "callbacks.self_reward.cut_off=keep",
                    "resume_anyway=true", f"hydra.run.dir={job}"], tmp_path / "stdout.log")
    s = _summary(job)
    assert s["status"] == "finished" and [e["model"] for e in s["iterations"]] == ["M0", "M1", "M2"]
    # The source sampled and judged AIFT(M1)'s candidates; the branch read them back (M1's entry keeps the source's
    # timing of that phase: what the candidates cost).
    assert "M1 candidates_and_judging: started" in (smoke_run.parent / "stdout.log").read_text()
    assert "M1 candidates_and_judging: started" not in proc.log
    source = [PromptCandidates.from_json(r) for r in read_jsonl(smoke_run / "iteration_2" / "candidates.jsonl")]
    branched = [PromptCandidates.from_json(r) for r in read_jsonl(job / "iteration_2" / "candidates.jsonl")]
    assert [[(c.text, c.judgment.scores, c.finished) for c in r.candidates] for r in branched] == \
        [[(c.text, c.judgment.scores, c.finished) for c in r.candidates] for r in source]
    assert {r.cut_off.rule for r in source} == {"drop"} and {r.cut_off.rule for r in branched} == {"keep"}
    assert json.loads((job / "iteration_2" / "stats.json").read_text())["generated"]["cut_off_rule"] == "keep"
    assert "applying callbacks.self_reward.cut_off=keep" in proc.log


def test_a_branch_after_m0_keeps_m0s_evaluation_and_trains_its_own_m1(smoke_run, tmp_path):
    """`branch --through 0` then a rerun without EFT (the paper's ablation): the seed data and M0's evaluation
    are the source job's; M1 is trained again, on IFT only, and the loop goes on from it."""
    from srlm_exp.branch import BranchError, branch, main as branch_main

    job = tmp_path / "no_eft"
    assert branch_main([str(smoke_run), str(job), "--through", "0"]) == 0
    assert (job / "iteration_0").is_dir() and not (job / "iteration_1").exists()
    with pytest.raises(BranchError, match="after an evaluated model"):
        branch(smoke_run, tmp_path / "z", through=-1)
    # The smoke M1 cannot judge without EFT (no score parses, no pair: NotEnoughPairsError); the checker judges.
    proc = run_job(["debug=smoke", "logger=none", "data.eft=false", "judge=oracle", f"hydra.run.dir={job}",
                    "resume_anyway=true"], tmp_path / "stdout.log")

    s, original = _summary(job), _summary(smoke_run)
    assert s["status"] == "finished" and [e["model"] for e in s["iterations"]] == ["M0", "M1", "M2", "M3"]
    new, old = s["iterations"][0], original["iterations"][0]
    assert {k: v for k, v in new.items() if k != "timings"} == {k: v for k, v in old.items() if k != "timings"}
    assert "M0: {" not in proc.log and "M1: {" in proc.log  # M0 read back, M1 evaluated anew
    assert (job / "iteration_1/model/model.safetensors").read_bytes() != \
        (smoke_run / "iteration_1/model/model.safetensors").read_bytes()  # trained without the EFT rows
    assert json.loads((job / "branched_from.json").read_text())["through"] == "M0"


def test_pairs_regenerated_on_resume_equal_the_uninterrupted_ones(tmp_path):
    uninterrupted = _make_aift(tmp_path)
    (tmp_path / "pairs.jsonl").unlink()
    (tmp_path / "stats.json").unlink()
    resumed = _make_aift(tmp_path)  # prompts.jsonl and candidates.jsonl are read back
    assert resumed == uninterrupted


def test_identical_samples_never_make_a_pair(tmp_path):
    # A small model often samples the same short answer twice; K sampled judgments can score the copies apart.
    # Copies are merged and their judgments pooled: "1." scores (4 + 1) / 2 = 2.5 against 2.0 for "9.".
    pairs = _make_aift(tmp_path, [("The answer is 1.", 4.0), ("The answer is 1.", 1.0), ("The answer is 9.", 2.0)])
    assert pairs, "the distinct texts still make a pair"
    assert all(p["chosen"] != p["rejected"] for p in pairs), pairs[0]
    assert {(p["chosen"], p["chosen_score"], p["rejected"], p["rejected_score"]) for p in pairs} == {
        ("The answer is 1.", 2.5, "The answer is 9.", 2.0)}


# ------------------------------------------------------------------------------ W&B, failures, sweeps

def test_wandb_offline_run_is_written_under_the_job_dir(tmp_path):
    job = tmp_path / "job"
    # A short job (M0 -> M1 only): enough to open, log to and finish a W&B run.
    run_job(["debug=smoke", "logger=wandb", "loop.iterations=0", "seed_sft.max_steps=5", f"hydra.run.dir={job}"],
            tmp_path / "stdout.log")
    s = _summary(job)
    assert s["status"] == "finished" and [e["model"] for e in s["iterations"]] == ["M0", "M1"]
    runs = _offline_runs(job)
    assert len(runs) == 1, list((job / "wandb").iterdir()) if (job / "wandb").exists() else "no wandb dir"
    assert list(runs[0].glob("run-*.wandb")), f"no run file in {runs[0]}"
    assert not (tmp_path / "wandb").exists()


def test_failing_job_marks_summary_failed_and_keeps_its_files(tmp_path):
    job = tmp_path / "job"
    proc = run_job(["debug=smoke", "logger=wandb", "train.min_examples=100000", "seed_sft.max_steps=5",
                    f"hydra.run.dir={job}"], tmp_path / "stdout.log", check=False)
    assert proc.returncode != 0, proc.log[-3000:]
    s = _summary(job)
    assert s["status"] == "failed"
    n_pairs = len(read_jsonl(job / "iteration_2" / "pairs.jsonl"))
    assert s["error"].startswith("NotEnoughPairsError: iteration 2: ")
    assert f"{n_pairs} valid preference pairs" in s["error"] and "train.min_examples=100000" in s["error"]
    assert "NotEnoughPairsError" in proc.log
    # What was produced before the failure stays: M1, its evaluation and AIFT(M1).
    assert [e["model"] for e in s["iterations"]] == ["M0", "M1"]
    assert (job / "iteration_1" / "model" / "config.json").exists()
    for name in AIFT_JSONL + ("stats.json",):
        assert (job / "iteration_2" / name).exists(), name
    assert not (job / "iteration_2" / "model").exists()
    # The W&B run was finished (its files are there), not left open.
    assert len(_offline_runs(job)) == 1


@pytest.mark.slow
def test_multirun_sweep_gives_one_job_dir_and_wandb_run_per_option(tmp_path):
    sweep = tmp_path / "sweep"
    run_job(["judge=additive5", "train=dpo,sft", "debug=smoke", "logger=wandb", f"hydra.sweep.dir={sweep}"],
            tmp_path / "stdout.log", multirun=True, timeout=1800)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "summary.json").exists())
    assert len(jobs) == 2, list(sweep.iterdir())
    run_ids = set()
    for job, train in zip(jobs, ("dpo", "sft")):
        s = _summary(job)
        assert s["status"] == "finished", (job, s.get("error"))
        assert [e["model"] for e in s["iterations"]][-1] == "M3"
        assert s["job"]["choices"]["train"] == train and s["job"]["choices"]["judge"] == "additive5"
        assert s["job"]["sweep"] == sweep.name
        assert f"train={train}" in job.name and "debug" not in job.name and "logger" not in job.name
        runs = _offline_runs(job)
        assert len(runs) == 1, runs
        run_ids.add(runs[0].name.rsplit("-", 1)[-1])
    assert len(run_ids) == 2, "each job has its own W&B run"
    assert jobs[0].name.replace("train=dpo", "train=X").split("_", 1)[1] == \
        jobs[1].name.replace("train=sft", "train=X").split("_", 1)[1], [j.name for j in jobs]
    # The sft job trained by SFT on top candidates: no DPO pairs were needed, yet both made AIFT data.
    for job in jobs:
        assert (job / "iteration_3" / "candidates.jsonl").exists()
