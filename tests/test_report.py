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
