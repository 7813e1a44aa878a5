"""Probe a model as a judge on world tasks, greedily: does it state the true answer, does it read
the response, and can it rank the responses the policy actually writes?

The held-out ranked sets (judge eval, Table 4) mix every score, so a judge can rank them by form alone
(extra text, a bare answer); the loop's candidates are all in the canonical form and differ only in
correctness. The probe judges both kinds of set with one greedy judgment per response (no sampling
noise), on tasks drawn from their own random stream (not the held-out ones: the small families repeat
training instructions, e.g. `capital` has 78, but never with the probe's responses):
- `ranked`: 4 responses of distinct random scores 0-5 per task, like the held-out sets;
- `policy_style`: the canonical-form responses of scores 5, 2 and 1 (right, close, wrong), like AIFT
  candidates.

    python -m srlm_exp.world.judge_probe JOB/iteration_1/model [--judge conf/judge/additive5.yaml] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from srlm_exp.data.seed_data import JudgmentReading
from srlm_exp.evaluation.judge_eval import reading_rates
from srlm_exp.evaluation.metrics import judge_metrics
from srlm_exp.judging.judge import Judge
from srlm_exp.models.loading import load_model, load_tokenizer
from srlm_exp.world.grader import grade_task, read_judgment, response_with_score
from srlm_exp.world.build import N_SCORES, _tasks
from srlm_exp.world.tasks import Task

POLICY_STYLE_SCORES = (5, 2, 1)


def probe_sets(n_tasks: int, seed: int = 0) -> dict[str, list[tuple[Task, list[str]]]]:
    """The probe's tasks (families round-robin) and their responses, per kind of set."""
    rng = random.Random(f"srlm-judge-probe:{seed}")
    tasks = _tasks(rng, n_tasks, set(), unique=True)
    return {"ranked": [(t, [response_with_score(t, s, rng) for s in rng.sample(range(N_SCORES), 4)]) for t in tasks],
            "policy_style": [(t, [response_with_score(t, s, rng) for s in POLICY_STYLE_SCORES]) for t in tasks]}


def probe_metrics(sets: Sequence[tuple[Task, list[str]]], judgments: Sequence[Sequence[str]],
                  scores: Sequence[Sequence[float]], top_score: float = 5) -> dict[str, Any]:
    """Metrics of one kind of set: `states_answer` and `quotes_response` (as the judge eval's, also per
    family), and the ranking metrics of judge_metrics (pairwise_acc, spearman, ...) against the grader."""
    reads: defaultdict[str, list[JudgmentReading]] = defaultdict(list)
    for (task, responses), texts in zip(sets, judgments):
        reads[task.family] += [read_judgment(task, r, text) for r, text in zip(responses, texts)]
    truth = [[grade_task(t, r).score for r in rs] for t, rs in sets]
    ranking = judge_metrics(scores, truth, top_score=top_score)
    valid = [s for row in scores for s in row if s == s]
    return {**{k: ranking[k] for k in ("pairwise_acc", "spearman", "n_pairs")},
            "tie_rate": _tie_rate(truth, scores),
            "parse_rate": len(valid) / max(1, sum(len(row) for row in scores)),
            **reading_rates([r for v in reads.values() for r in v]),
            "states_answer_per_family": {f: reading_rates(v)["states_answer"] for f, v in sorted(reads.items())}}


def _tie_rate(truth: Sequence[Sequence[int]], scores: Sequence[Sequence[float]]) -> float:
    """Of the response pairs the grader tells apart (`truth`: their grades), the share the judge scored equal
    (pairwise_acc counts them as wrong, as Table 4 does)."""
    ties = n = 0
    for grades, row in zip(truth, scores):
        for i in range(len(row)):
            for j in range(i + 1, len(row)):
                if grades[i] != grades[j]:
                    n += 1
                    ties += row[i] == row[j]
    return ties / max(1, n)


def probe(model, tokenizer, judge, n_tasks: int = 150, seed: int = 0, batch_size: int = 64) -> dict[str, Any]:
    """Judge both kinds of probe set with `judge`'s template, one greedy judgment per response."""

    greedy = Judge(judge.name, judge.template, judge.score_marker, (judge.low, judge.high), num_judgments=1,
                   temperature=0.0, max_new_tokens=judge.sampling.max_new_tokens)
    out = {}
    for kind, sets in probe_sets(n_tasks, seed).items():
        judged = greedy.judge(model, tokenizer, [t.instruction for t, _ in sets], [rs for _, rs in sets],
                              batch_size=batch_size, desc=f"judge probe ({kind})")
        out[kind] = probe_metrics(sets, [[j.texts[0] for j in js] for js in judged],
                                  [[j.score for j in js] for js in judged], top_score=judge.high)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf


    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a saved model directory (e.g. JOB/iteration_1/model)")
    ap.add_argument("--judge", default=str(Path(__file__).resolve().parents[2] / "conf" / "judge" / "additive5.yaml"),
                    help="the judge option whose template the model was trained on (default: additive5)")
    ap.add_argument("--tasks", type=int, default=150, help="tasks per kind of set (families round-robin)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the metrics here")
    args = ap.parse_args(argv)
    if args.tasks < 1:
        ap.error(f"--tasks is {args.tasks}; probe at least 1 task (default 150)")
    cfg = OmegaConf.load(args.judge)
    target = cfg.get("_target_") if isinstance(cfg, DictConfig) else None  # a YAML list has none
    if target != "srlm_exp.judging.judge.Judge":
        ap.error(f"--judge {args.judge} is not a pointwise judge prompt (its _target_ is {target!r}); "
                 "the probe reads pointwise judgments, e.g. conf/judge/additive5.yaml")
    judge = instantiate(cfg)
    tokenizer, model = load_tokenizer(args.model), load_model(args.model).eval()
    result = {"model": args.model, "judge": args.judge, "tasks": args.tasks, "seed": args.seed,
              **probe(model, tokenizer, judge, args.tasks, args.seed)}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
