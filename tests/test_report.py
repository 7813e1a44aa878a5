"""Tests for the report command (srlm_exp.report): collection, variants, tables, plots, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from srlm_exp.report import main
from srlm_exp.report.aggregate import format_stat, summarize
from srlm_exp.report.collect import Job, assign_variants, find_summaries, load_jobs

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _iteration(i: int, gt: float, seed: int) -> dict:
    it = {"iteration": i, "model": f"M{i}",
          "eval": {"gt_score": gt, "gt_exact": gt / 10, "mean_length": 10.0 + i,
                   "per_family": {"add": {"gt_score": gt / 2}, "reverse": {"gt_score": gt}}},
          "judge": {"pairwise_acc": 0.3 + 0.1 * i, "spearman": 0.05 * i, "kendall": 0.04 * i,
                    "exact_match": 0.0, "five_best": None, "parse_rate": 0.5}}
    if i == 0:
        it["head_to_head"] = {"vs_M1": {"win": 0.1, "tie": 0.3, "loss": 0.6, "n": 100}}
    if i == 1:
        it["head_to_head"] = {"vs_prev": {"win": 0.6, "tie": 0.3, "loss": 0.1, "n": 100}}
    if i >= 2:
        it["head_to_head"] = {"vs_M1": {"win": 0.5, "tie": 0.3, "loss": 0.2, "n": 100},
                              "vs_prev": {"win": 0.5, "tie": 0.3, "loss": 0.2, "n": 100}}
        it["external_judge"] = {"vs_M1": {"win": 0.4, "tie": 0.4, "loss": 0.2, "n": 100}}
        it["pairs"] = {"n": 40 + seed, "tie_rate": 0.2}
        it["generated"] = {"parse_rate": 0.95, "score_hist": {"0": 3, "5": 40}}
        it["reward_watch"] = {"self_mean": 3.9, "gt_mean": 3.1, "corr": None}  # undefined metric
    return it


def _summary(judge: str, seed: int, gts: list[float], status: str = "finished") -> dict:
    return {"job": {"choices": {"model": "tiny", "data": "world", "judge": judge, "train": "dpo",
                                "pairs": "best_vs_worst", "prompts": "self_instruct"},
                    "overrides": [f"judge={judge}", f"seed={seed}"], "seed": seed,
                    "data_eft": True, "reference": "previous"},
            "status": status,
            "iterations": [_iteration(i, g, seed) for i, g in enumerate(gts)]}


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    """2 variants (judge) × 2 seeds; judge=multichoice5 seed 2 stopped after M1; one corrupt file."""
    root = tmp_path / "multirun" / "2024-05-01" / "12-00-00"
    jobs = [("additive5", 1, [0.1, 0.3, 0.5], "finished"),
            ("additive5", 2, [0.1, 0.3, 0.7], "finished"),
            ("multichoice5", 1, [0.1, 0.2, 0.45], "finished"),
            ("multichoice5", 2, [0.1, 0.2], "running")]
    for num, (judge, seed, gts, status) in enumerate(jobs):
        d = root / f"{num}_judge={judge},seed={seed}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(_summary(judge, seed, gts, status)))
    bad = root / "4_judge=broken,seed=1"
    bad.mkdir()
    (bad / "summary.json").write_text('{"job": {"choices": ')  # killed mid-write
    return tmp_path


def _row(text: str, variant: str, model: str) -> list[str]:
    """Cells of the first table row starting with variant | model."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == [variant, model]:
            return cells
    raise AssertionError(f"no row {variant} | {model} in:\n{text}")


def test_report_tables_and_plots(multirun: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report_out"
    assert main([str(multirun), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    md = (out / "report.md").read_text()
    main_table = md.split("## Main table")[1].split("##")[0]

    # Hand-computed: gt_score of M2 over seeds 1, 2 = 0.5, 0.7 -> mean 0.6, sample std 0.1414.
    a2 = _row(main_table, "judge=additive5", "M2")
    assert a2[2] == "0.600 ± 0.141 (2)"
    assert a2[4] == "0.500 ± 0.000 (2)"  # pairwise_acc at iteration 2 is 0.5 for both seeds
    assert a2[7] == "41.5 ± 0.7 (2)"     # pairs.n 41, 42
    # The partial job (only M0, M1) leaves one seed in M2: just its value, no ± std.
    b2 = _row(main_table, "judge=multichoice5", "M2")
    assert b2[2] == "0.450"
    # M1 has no vs_M1 comparison and no pairs -> "—".
    b1 = _row(main_table, "judge=multichoice5", "M1")
    assert b1[6] == "—" and b1[7] == "—"
    for v in ("judge=additive5", "judge=multichoice5"):
        for m in ("M0", "M1", "M2"):
            _row(main_table, v, m)
    assert "M3" not in main_table
    # Undefined everywhere (five_best null) and undefined in one job (corr null) -> "—".
    judge_table = md.split("## Judge quality")[1].split("##")[0]
    assert _row(judge_table, "judge=additive5", "M2")[-2] == "—"
    loop_table = md.split("## Self-rewarding loop")[1].split("##")[0]
    assert _row(loop_table, "judge=additive5", "M2")[-1] == "—"
    fam = md.split("## Per-family gt_score")[1].split("##")[0]
    assert _row(fam, "judge=additive5", "M2")[2:] == ["0.300 ± 0.071 (2)", "0.600 ± 0.141 (2)"]

    # Header: jobs, seeds, unfinished job named, corrupt file named (skipped, not hidden).
    assert "4 job(s), 2 variant(s)" in md and "seeds 1, 2" in md
    assert "1 of 4 job(s) not finished" in md and "3_judge=multichoice5,seed=2" in md
    assert "4_judge=broken,seed=1" in md
    assert "4_judge=broken,seed=1" in captured.err and "warning" in captured.err

    # Head-to-head section, incl. external judge and the resolved "prev" opponent.
    h2h = md.split("## Head-to-head")[1].split("## Plots")[0]
    assert "| judge=additive5 | M2 | M1 | head_to_head | 0.500 | 0.300 | 0.200 | 2 |" in h2h
    assert "| judge=additive5 | M2 | M1 (prev) | head_to_head |" in h2h
    assert "| judge=multichoice5 | M2 | M1 | external_judge | 0.400 | 0.400 | 0.200 | 1 |" in h2h

    assert "## IFEval accuracies" not in md  # no job of this grid was graded by IFEval's checkers

    for name in ("metrics_over_iterations.png", "head_to_head.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in md
    # The main table goes to the terminal too.
    assert "| judge=additive5 | M2 | 0.600 ± 0.141 (2) |" in captured.out


def test_default_out_is_dir(multirun: Path) -> None:
    assert main([str(multirun)]) == 0
    assert (multirun / "report.md").exists() and (multirun / "head_to_head.png").exists()


def _job(config: dict, seed) -> Job:
    return Job(Path("x/summary.json"), "x", config, seed, "finished", [])


def test_variants_ignore_seed(tmp_path: Path) -> None:
    jobs = [_job({"judge": "additive5", "data_eft": True}, s) for s in (1, 2, 3)]
    assert assign_variants(jobs) == ["all"] and {j.variant for j in jobs} == {"all"}

    # seed given only through overrides, or as a differing job scalar, is still a repeat.
    for i, seed in enumerate((1, 2)):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(
            {"job": {"choices": {"judge": "additive5"}, "overrides": [f"seed={seed}", "train.beta=0.1"],
                     "data_eft": i == 0}, "status": "finished", "iterations": []}))
    loaded, problems = load_jobs(find_summaries(tmp_path), tmp_path)
    assert problems == []
    assert [j.seed for j in loaded] == ["1", "2"]
    # data_eft differs (a non-choice job scalar) -> it defines the variant; beta does not differ.
    assert assign_variants(loaded) == ["data.eft=true", "data.eft=false"]


def test_a_typed_job_setting_and_its_override_are_one_variant_key(tmp_path: Path) -> None:
    """A job run with `data.eft=false` records the typed value and the override; one key labels it, whether
    the summary names the value `data.eft` (since stop 33) or `data_eft` (before)."""
    for i, (eft_key, eft, overrides) in enumerate((("data.eft", True, []), ("data.eft", False, ["data.eft=false"]),
                                                   ("data_eft", False, ["data.eft=false"]))):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(
            {"job": {"choices": {"judge": "additive5"}, "overrides": overrides, "seed": 1, eft_key: eft,
                     "train.reference": "previous"}, "status": "finished", "iterations": []}))
    loaded, problems = load_jobs(find_summaries(tmp_path), tmp_path)
    assert problems == []
    assert assign_variants(loaded) == ["data.eft=true", "data.eft=false"]
    assert [j.variant for j in loaded] == ["data.eft=true", "data.eft=false", "data.eft=false"]


def test_sweep_over_plain_override_defines_variant() -> None:
    jobs = [_job({"judge": "additive5", "train.beta": "0.1"}, 1), _job({"judge": "additive5"}, 1)]
    assert assign_variants(jobs) == ["train.beta=0.1", "train.beta=default"]


def test_format_stat() -> None:
    assert format_stat(summarize([0.5, 0.7])) == "0.600 ± 0.141 (2)"
    assert format_stat(summarize([0.5, None, float("nan"), True, "x"])) == "0.500"
    assert format_stat(summarize([None])) == "—"


def test_partial_and_malformed_data_do_not_crash(tmp_path: Path) -> None:
    weird = [{"job": None, "iterations": None},
             {"status": 3, "iterations": ["M0", None, {"model": "M1"},
                                          {"iteration": 2, "eval": None, "judge": {"spearman": "n/a"},
                                           "head_to_head": {"vs_M1": None, "vs_prev": {"win": 0.5}},
                                           "pairs": [], "external_judge": "oops"}]},
             {"job": {"choices": {"judge": "x"}, "seed": None}, "iterations": [{"iteration": 0}]},
             [1, 2, 3]]
    for i, s in enumerate(weird):
        (tmp_path / f"{i}").mkdir()
        (tmp_path / f"{i}" / "summary.json").write_text(json.dumps(s))
    assert main([str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "1 file(s) skipped" in md  # the JSON list is not a summary
    assert (tmp_path / "metrics_over_iterations.png").read_bytes()[:8] == PNG_MAGIC


def test_no_head_to_head_data_skips_that_plot(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(
        {"job": {"seed": 0}, "status": "running", "iterations": [{"iteration": 0, "eval": {"gt_score": 0.2}}]}))
    assert main([str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "| all | M0 | 0.200 |" in md and "No head-to-head results yet" in md
    assert not (tmp_path / "head_to_head.png").exists()


def test_empty_dir_exits_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no summary.json found under" in err and "python run.py" in err
    assert main([str(tmp_path / "does_not_exist")]) == 2


def test_only_corrupt_files_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "summary.json").write_text("not json")
    assert main([str(tmp_path)]) == 2
    assert "could be read" in capsys.readouterr().err


def test_python_dash_m(multirun: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "srlm_exp.report", str(multirun), "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "| variant | model | gt_score | gt_exact | pairwise_acc | spearman | win vs M1 | pairs.n |" in r.stdout
    assert (out / "report.md").exists()
    r = subprocess.run([sys.executable, "-m", "srlm_exp.report", str(tmp_path / "empty")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no summary.json found" in r.stderr


def test_a_job_resumed_with_resume_anyway_is_the_same_variant(tmp_path: Path) -> None:
    for i, overrides in enumerate((["seed=1"], ["resume_anyway=true", "seed=2"])):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(
            {"job": {"choices": {"judge": "oracle"}, "overrides": overrides}, "status": "finished", "iterations": []}))
    loaded, problems = load_jobs(find_summaries(tmp_path), tmp_path)
    assert problems == [] and assign_variants(loaded) == ["all"]


def test_a_meta_judge_section_appears_only_for_grids_with_a_meta_judge(tmp_path: Path) -> None:
    def job(d: Path, seed: int, meta: dict | None) -> None:
        d.mkdir(parents=True)
        m2 = {"iteration": 2, "eval": {"gt_score": 1.0}, **({"meta_judge": meta} if meta else {})}
        (d / "summary.json").write_text(json.dumps({"job": {"seed": seed}, "status": "finished",
                                                    "iterations": [{"iteration": 1, "eval": {"gt_score": 1.0}}, m2]}))

    for seed, closer in ((0, 0.25), (1, 0.75)):
        job(tmp_path / "meta" / str(seed), seed, {"pairs": 50 + seed, "parse_rate": 1.0, "chosen_closer_to_truth": closer})
    assert main([str(tmp_path / "meta")]) == 0
    md = (tmp_path / "meta" / "report.md").read_text()
    section = md.split("## Meta-judge")[1].split("\n## ")[0]
    assert "| all | M2 | 50.5 ± 0.7 (2) | 1.000 ± 0.000 (2) | — | 0.500 ± 0.354 (2) | — | — |" in section
    job(tmp_path / "plain" / "0", 0, None)
    assert main([str(tmp_path / "plain")]) == 0
    assert "## Meta-judge" not in (tmp_path / "plain" / "report.md").read_text()


def test_ifeval_accuracies_get_their_own_table(tmp_path: Path) -> None:
    """data=ifeval's summaries carry IFEval's four accuracies in eval; the report tabulates them."""
    for seed, strict in ((1, 0.25), (2, 0.35)):
        s = _summary("oracle", seed, [1.0, 2.0])
        for it in s["iterations"]:
            it["eval"].update(prompt_strict=strict + it["iteration"] / 10, prompt_loose=0.5, instruction_strict=0.6,
                              instruction_loose=None)
        d = tmp_path / f"{seed}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(s))
    assert main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    table = (tmp_path / "r" / "report.md").read_text().split("## IFEval accuracies")[1].split("##")[0]
    assert _row(table, "all", "M1")[2:] == ["0.400 ± 0.071 (2)", "0.500 ± 0.000 (2)", "0.600 ± 0.000 (2)", "—"]


# --- paired differences (issue 39): pure functions on hand numbers, then through the command -------------

def test_mcnemar_exact_on_hand_numbers() -> None:
    from srlm_exp.report.paired import mcnemar_exact
    # 6 prompts only M(t) gets right, none the other way: two-sided 2 * 0.5**6.
    assert mcnemar_exact([0] * 6 + [1, 0], [1] * 6 + [1, 0]) == pytest.approx(0.03125)
    # 1 win against 4 losses: 2 * P(X <= 1 | n=5) = 2 * 6/32.
    assert mcnemar_exact([0, 1, 1, 1, 1], [1, 0, 0, 0, 0]) == pytest.approx(0.375)
    assert mcnemar_exact([0, 1, 1], [1, 0, 1]) == pytest.approx(1.0)  # 1 vs 1
    assert mcnemar_exact([1, 0], [1, 0]) == 1.0  # the models never disagree


def test_paired_bootstrap_resamples_prompts_within_each_seed() -> None:
    from srlm_exp.report.paired import paired_bootstrap
    import numpy as np
    # Seed A gains on both its prompts, seed B on neither: resampled within seeds, every resample keeps
    # two prompts of each, so the pooled mean is always 0.5 (pooling the four prompts first would vary).
    assert paired_bootstrap([np.array([1, 1]), np.array([0, 0])]) == (0.5, 0.5, 0.5)
    # One seed, deltas +1 and -1: a resample's mean is -1, 0 or +1 with 1/4, 1/2, 1/4, so the 95% interval
    # is [-1, +1] around the observed 0.
    assert paired_bootstrap([np.array([1, -1])]) == (0.0, -1.0, 1.0)
    # Pooled over (seed, prompt) units: (3 * 1 + 1 * 0) / 4 prompts, not the mean of the seed means.
    mean, lo, hi = paired_bootstrap([np.array([1, 1, 1]), np.array([0])])
    assert mean == 0.75 and lo == hi == 0.75
    # A fixed RNG seed: the same interval every time.
    d = [np.array([1, 0, 0, -1, 1, 0, 1, 1]), np.array([0, 1, -1, 0])]
    first = paired_bootstrap(d)
    assert paired_bootstrap(d) == first and first[1] < first[0] < first[2]
    with pytest.raises(ValueError, match="no paired prompts"):
        paired_bootstrap([np.array([])])


def test_prompts_pair_by_instruction_text() -> None:
    from srlm_exp.report.paired import match_prompts
    base = [("a", True), ("b", False), ("a", False), ("gone", True)]
    new = [("b", True), ("a", True), ("a", True), ("extra", True)]
    b, n = match_prompts(base, new)
    # new's order: b, then the first and second "a" against base's first and second "a"; unmatched left out.
    assert b.tolist() == [0.0, 1.0, 0.0] and n.tolist() == [1.0, 1.0, 1.0]


def _graded_job(root: Path, name: str, seed, correct: dict[int, list[bool]], overrides=(), choices=None,
                extra_job=None, resolved: str | None = None) -> Path:
    """A job dir whose iteration_t/eval_responses.jsonl grades prompts p0, p1, ... as `correct[t]`."""
    d = root / name
    iterations = []
    for t, oks in correct.items():
        it_dir = d / f"iteration_{t}"
        it_dir.mkdir(parents=True)
        rows = [{"instruction": f"p{k}", "response": "r", "length": 1, "gt_score": 5 * ok, "correct": ok}
                for k, ok in enumerate(oks)]
        (it_dir / "eval_responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        iterations.append({"iteration": t, "model": f"M{t}", "eval": {"gt_exact": sum(oks) / len(oks)},
                           "judge": {"parse_rate": 0.0 if t == 0 else 0.5, "spearman": 0.0 if t == 0 else 0.2},
                           "peak_rss_gb": {"train": 1.0 + t}})
    job = {"choices": choices or {"judge": "oracle", "logger": "none", "model_debug": "tiny_smoke"},
           "overrides": [*overrides, f"seed={seed}"], "seed": seed, **(extra_job or {})}
    (d / "summary.json").write_text(json.dumps({"job": job, "status": "finished", "iterations": iterations}))
    if resolved is not None:
        (d / "resolved_config.yaml").write_text(resolved)
    return d


@pytest.fixture
def graded(tmp_path: Path) -> Path:
    """One variant, seeds 1 and 2 launched in two sweeps (job.sweep differs) with a logging-only override
    in one, each with 4 held-out prompts graded at M0, M1, M2."""
    root = tmp_path / "graded"
    _graded_job(root, "sweepA/0_seed=1", 1, {0: [False, False, True, False], 1: [True, False, True, False],
                                              2: [True, True, True, False]}, extra_job={"sweep": "10-00-00"})
    _graded_job(root, "single/s2", 2, {0: [False, False, False, False], 1: [False, True, False, False],
                                       2: [False, True, True, False]},
                overrides=["trainer.enable_progress_bar=false", "hydra.job.chdir=false"],
                choices={"judge": "oracle", "logger": "wandb", "model_debug": "tiny_smoke"},
                extra_job={"sweep": None})
    return root


def test_paired_rows_on_hand_numbers(graded: Path) -> None:
    from srlm_exp.report.paired import paired_rows
    jobs, problems = load_jobs(find_summaries(graded), graded)
    assert problems == []
    variants = assign_variants(jobs)
    assert variants == ["all"]  # the sweep's name, the logger and the progress bar define no variant
    rows = {r.model: r for r in paired_rows(jobs, variants)}
    assert sorted(rows) == ["M1", "M2"]
    m2 = rows["M2"]
    # M2 - M1: seed 1 gains p1 (+1/4), seed 2 gains p2 (+1/4); pooled over 8 prompts: 2/8.
    assert [(s.seed, s.n, s.delta) for s in m2.vs[1].per_seed] == [("1", 4, 0.25), ("2", 4, 0.25)]
    assert m2.vs[1].mean == 0.25 and m2.vs[1].n_prompts == 8
    # M2 - M0: seed 1 +2/4, seed 2 +2/4.
    assert [s.delta for s in m2.vs[0].per_seed] == [0.5, 0.5] and m2.vs[0].mean == 0.5
    assert m2.vs[0].per_seed[0].p == pytest.approx(0.5)  # 2 wins, 0 losses: 2 * 0.5**2
    assert m2.vs[1].lo <= 0.25 <= m2.vs[1].hi and m2.vs[0].lo > 0  # every resample gains on both seeds
    assert m2.accuracy.mean == pytest.approx(0.625) and m2.n_seeds == 2
    assert 1 not in rows["M1"].vs and rows["M1"].vs[0].mean == 0.25  # M1 has no "M1 - M1"


def test_the_report_shows_paired_differences_and_pools_seeds_however_launched(graded: Path, tmp_path: Path,
                                                                               capsys) -> None:
    csv_path = tmp_path / "tables" / "report.csv"
    assert main([str(graded), "--out", str(tmp_path / "o"), "--csv", str(csv_path)]) == 0
    printed = capsys.readouterr().out
    md = (tmp_path / "o" / "report.md").read_text()
    section = md.split("## Paired differences")[1].split("\n## ")[0]
    row = _row(section, "all", "M2")
    assert row[2:5] == ["2", "8", "0.625 ± 0.177 (2)"]
    # Each seed's resampled gain count is binomial over its 4 prompts, and the two seeds share the rate,
    # so the pooled count is Binomial(8, rate) / 8. M2 - M1 (rate 1/4): P(0) = 0.75**8 = 0.100 > 2.5%, and
    # P(<= 4) = 0.973 < 97.5% <= P(<= 5) -> [0, 5/8]. M2 - M0 (rate 1/2): P(0) = 0.004 < 2.5% <= P(<= 1)
    # = 0.035 -> [1/8, 7/8].
    assert row[5] == "+0.250 [+0.000, +0.625]" and row[6] == "+0.500 [+0.125, +0.875]"
    assert row[7] == "1: +0.250 (p=1); 2: +0.250 (p=1)" and row[8] == "1: +0.500 (p=0.5); 2: +0.500 (p=0.5)"
    assert _row(section, "all", "M1")[5] == "—"
    assert "paired differences" in printed and "| all | M2 | 2 | 8 |" in printed
    # M0's judge parsed nothing: its Spearman (written as 0) is undefined, shown as "—", not 0.
    assert _row(md.split("## Main table")[1].split("##")[0], "all", "M0")[5] == "—"
    assert _row(md.split("## Main table")[1].split("##")[0], "all", "M1")[5] == "0.200 ± 0.000 (2)"

    import csv
    with csv_path.open() as f:
        table = list(csv.DictReader(f))
    by_model = {r["model"]: r for r in table}
    assert list(by_model) == ["M0", "M1", "M2"] and by_model["M2"]["variant"] == "all"
    assert by_model["M2"]["seeds"] == "2" and by_model["M2"]["eval.gt_exact.mean"] == "0.625"
    assert by_model["M2"]["vs_M1.delta"] == "0.25" and by_model["M2"]["vs_M0.prompts"] == "8"
    assert by_model["M0"]["judge.spearman.mean"] == "" and by_model["M0"]["vs_M0.delta"] == ""  # undefined: empty
    assert by_model["M1"]["vs_M1.delta"] == "" and by_model["M1"]["vs_M0.delta"] == "0.25"
    assert by_model["M2"]["peak_rss_gb.train.mean"] == "3.0"  # the per-phase memory table is in it too


def test_by_names_the_variant_keys(graded: Path, tmp_path: Path, capsys) -> None:
    _graded_job(graded, "other/s3", 3, {0: [True] * 4, 1: [True] * 4}, choices={"judge": "additive5"},
                overrides=["train.beta=0.5"])
    # Without --by, judge and train.beta both differ; --by judge pools by the judge alone.
    assert main([str(graded), "--out", str(tmp_path / "a")]) == 0
    assert "judge=additive5,train.beta=0.5" in (tmp_path / "a" / "report.md").read_text()
    assert main([str(graded), "--out", str(tmp_path / "b"), "--by", "judge"]) == 0
    md = (tmp_path / "b" / "report.md").read_text()
    assert "- `judge=oracle`: 2 job(s), seeds 1, 2" in md and "Variants by: `judge`" in md
    assert "- `judge=additive5`: 1 job(s), seeds 3 — one seed (n=1)" in md
    captured = capsys.readouterr()
    assert "one seed (n=1, no spread over seeds): judge=additive5" in captured.out
    assert "note: --by pools jobs of judge=oracle" not in captured.err  # its jobs agree on train.beta
    assert main([str(graded), "--out", str(tmp_path / "d"), "--by", "model"]) == 2  # no job records `model`
    capsys.readouterr()
    # Jobs that --by pools although they differ in another setting: allowed, and said.
    _graded_job(graded, "other/s4", 4, {0: [True] * 4}, choices={"judge": "additive5"})
    assert main([str(graded), "--out", str(tmp_path / "e"), "--by", "train.beta"]) == 0
    assert "note: --by pools jobs of train.beta=default that differ in judge" in capsys.readouterr().err
    # Every --by key is in the label, even one that does not differ; "a,b" is two keys.
    assert main([str(graded), "--out", str(tmp_path / "c"), "--by", "judge,model_debug"]) == 2
    err = capsys.readouterr().err
    assert "model_debug: changes no artifact" in err
    for bad, why in (("nosuch", "nosuch: no job has this setting"), ("seed", "the seed is what a variant pools over"),
                     ("logger", "logger: changes no artifact")):
        assert main([str(graded), "--by", "judge", bad]) == 2
        err = capsys.readouterr().err
        assert why in err and "Settings that differ between these jobs: judge, train.beta" in err


def test_a_setting_left_at_its_default_matches_the_same_value_set_on_the_command_line(tmp_path: Path) -> None:
    _graded_job(tmp_path, "a", 1, {0: [True]}, overrides=["train.beta=1e-1"])
    _graded_job(tmp_path, "b", 2, {0: [True]}, resolved="train:\n  beta: 0.1\nseed: 2\n")
    _graded_job(tmp_path, "c", 3, {0: [True]}, resolved="train:\n  beta: 0.5\n")
    _graded_job(tmp_path, "d", 4, {0: [True]})  # no resolved config: the value is unknown
    jobs, _ = load_jobs(find_summaries(tmp_path), tmp_path)
    assert assign_variants(jobs) == ["train.beta=0.1", "train.beta=0.5", "train.beta=default"]
    assert [j.variant for j in jobs] == ["train.beta=0.1", "train.beta=0.1", "train.beta=0.5", "train.beta=default"]
    # --by may name a key only the resolved configs hold.
    assert assign_variants(jobs, ["train.beta"]) == ["train.beta=0.1", "train.beta=0.5", "train.beta=default"]


def test_legend_names_and_one_seed() -> None:
    from srlm_exp.report.collect import short_names, variant_settings
    assert variant_settings("judge=additive5,train.beta=0.1") == [("judge", "additive5"), ("train.beta", "0.1")]
    assert variant_settings("models=[a,b],judge=x") == [("models", "[a,b]"), ("judge", "x")]
    assert short_names(["judge=additive5,train=dpo", "judge=oracle,train=sft"]) == (
        "judge · train", {"judge=additive5,train=dpo": "additive5 · dpo", "judge=oracle,train=sft": "oracle · sft"})
    assert short_names(["all"]) == ("", {"all": "all"})

    from srlm_exp.report.aggregate import Grid
    from srlm_exp.report.plots import legend_labels
    grid = Grid(["judge=a", "judge=b"])
    assert legend_labels(grid, {"judge=a": "a", "judge=b": "b"}, {"judge=a": 3, "judge=b": 1}) == {
        "judge=a": "a (n=3)", "judge=b": "b (n=1: no error bar)"}


def test_head_to_head_plot_draws_each_comparison_once() -> None:
    from srlm_exp.report.plots import _dedupe_comparisons
    from srlm_exp.report.tables import H2H
    rows = [H2H("v", 2, "M2", "head_to_head", "M1", 0.5, 0.3, 0.2, 2),
            H2H("v", 2, "M2", "head_to_head", "M1 (prev)", 0.5, 0.3, 0.2, 2),  # the same comparison again
            H2H("v", 2, "M2", "external_judge", "M1 (prev)", 0.4, 0.4, 0.2, 2),  # no vs_M1 of this judge: kept
            H2H("v", 3, "M3", "head_to_head", "M1", 0.6, 0.2, 0.2, 2),
            H2H("v", 3, "M3", "head_to_head", "M2 (prev)", 0.4, 0.4, 0.2, 2)]
    assert [(h.model, h.opponent, h.source) for h in _dedupe_comparisons(rows)] == [
        ("M2", "M1", "head_to_head"), ("M2", "M1 (prev)", "external_judge"),
        ("M3", "M1", "head_to_head"), ("M3", "M2 (prev)", "head_to_head")]


def test_an_override_and_its_typed_value_render_alike() -> None:
    from srlm_exp.report.collect import format_value
    assert format_value("1e-5") == format_value(1e-05) == "1e-05"
    assert format_value("0.10") == format_value(0.1) == "0.1"
    assert format_value("3") == "3" and format_value("dpo") == "dpo" and format_value(True) == "true"
