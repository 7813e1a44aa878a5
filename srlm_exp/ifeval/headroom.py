"""Where self-rewarding can work at all: M0's generation headroom per constraint type, from a data=ifeval job.

For each IFEval constraint type, how often M0 meets it (strict, IFEval's instruction level) when it answers
greedily (the held-out evaluation, iteration_0/eval_responses.jsonl), when it samples (T=0.7, top-p 0.9: the
EFT and judge-eval samples in data/), and whether some sample of a prompt's N meets it (best-of-N). A
judge can teach only where best-of-N is above greedy. The judge's side (judge pick vs random pick, per
family) is in each model's `aift` stats and the report.

    python -m srlm_exp.ifeval.headroom JOB_DIR [--json PATH]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from srlm_exp import layout
from srlm_exp.artifacts import read_jsonl, write_json
from srlm_exp.ifeval.grader import grade

SAMPLE_FILES = ("eft_sets.jsonl", "judge_eval_candidates.jsonl")  # M0's graded samples (source.py)


def headroom(job_dir: str | Path) -> dict[str, dict[str, Any]]:
    """{constraint type: {greedy, sampled, best_of_n, greedy_n, sampled_prompts}} (strict pass shares; None
    where the job has no such constraint) plus an "all" row over every constraint."""
    job = Path(job_dir)
    greedy: dict[str, list[bool]] = defaultdict(list)
    for row in read_jsonl(layout.iteration_dir(job, 0) / layout.EVAL_RESPONSES):
        g = grade(row["instruction"], row["response"])
        if g is None:
            raise ValueError(f"{job}: an evaluation prompt is not gradable: {row['instruction']!r}")
        for cid, ok in zip(g.ids, g.strict):
            greedy[cid].append(ok)
    sampled: dict[str, list[bool]] = defaultdict(list)
    best: dict[str, list[bool]] = defaultdict(list)
    files = [job / layout.DATA / f for f in SAMPLE_FILES if (job / layout.DATA / f).exists()]
    if not files:
        raise FileNotFoundError(f"{job / layout.DATA} has none of {', '.join(SAMPLE_FILES)}: not a data=ifeval job "
                                "that has sampled M0 (it does so before M0's evaluation)")
    for f in files:
        for s in read_jsonl(f):
            g = grade(s["instruction"], "")
            if g is None:
                raise ValueError(f"{f}: a sampled prompt is not gradable: {s['instruction']!r}")
            ids = g.ids  # the constraint types, in the order of each strict list
            for k, cid in enumerate(ids):
                passes = [bool(st[k]) for st in s["strict"]]
                sampled[cid] += passes
                best[cid].append(any(passes))

    def share(v: list[bool]) -> float | None:
        return sum(v) / len(v) if v else None

    types = sorted(set(greedy) | set(sampled))
    out = {t: {"greedy": share(greedy[t]), "sampled": share(sampled[t]), "best_of_n": share(best[t]),
               "greedy_n": len(greedy[t]), "sampled_prompts": len(best[t])} for t in types}
    flat = lambda d: [x for v in d.values() for x in v]  # noqa: E731
    out["all"] = {"greedy": share(flat(greedy)), "sampled": share(flat(sampled)), "best_of_n": share(flat(best)),
                  "greedy_n": len(flat(greedy)), "sampled_prompts": len(flat(best))}
    return out


def table(rows: dict[str, dict[str, Any]]) -> str:
    f = lambda x: "—" if x is None else f"{x:.2f}"  # noqa: E731
    lines = ["| constraint type | greedy | sampled | best-of-N | best − greedy | greedy n | sampled prompts |",
             "|---|---|---|---|---|---|---|"]
    for t, r in rows.items():
        gap = None if r["greedy"] is None or r["best_of_n"] is None else r["best_of_n"] - r["greedy"]
        lines.append(f"| {t} | {f(r['greedy'])} | {f(r['sampled'])} | {f(r['best_of_n'])} | {f(gap)} | "
                     f"{r['greedy_n']} | {r['sampled_prompts']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m srlm_exp.ifeval.headroom", description=__doc__.split("\n\n")[0])
    p.add_argument("job", help="a data=ifeval job directory (after M0's evaluation)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = p.parse_args(argv)
    try:
        rows = headroom(args.job)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
