"""Policy evaluation: greedy responses to the held-out instructions, graded where the seed data has a
ground-truth grader."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from srlm_exp.chat import prompt_ids
from srlm_exp.data.seed_data import Grade, GradeAccuracies, GroundTruth, SeedData
from srlm_exp.inference.sampler import Completion, Sampling, sample


def policy_responses(model, tokenizer, instructions: list[str], sampling: Sampling, batch_size: int) -> list[str]:
    """One response per instruction (greedy unless `sampling` samples)."""
    prompts = [prompt_ids(tokenizer, i) for i in instructions]
    return [t for (t,) in sample(model, tokenizer, prompts, sampling, batch_size=batch_size, desc="eval")]


def grade_responses(seed_data: SeedData, rows: list[dict], responses: list[str]) -> tuple[dict[str, Any], list[dict]]:
    """gt_score (mean 0-5), gt_exact (share exactly right), per-family scores (rows' optional `family`),
    the seed data's own accuracies (GradeAccuracies, e.g. IFEval's four) and mean length (chars); the graded
    rows of eval_responses.jsonl."""
    graded_by = seed_data if isinstance(seed_data, GroundTruth) else None
    per_family: dict[str, list[Grade]] = defaultdict(list)
    graded = []
    for row, resp in zip(rows, responses):
        entry = {"instruction": row["instruction"], "response": resp, "length": len(resp)}
        if isinstance(resp, Completion):
            entry["finished"] = resp.finished
        if graded_by is not None:
            g = graded_by.grade(row["instruction"], resp)
            if g is None:
                raise ValueError(f"held-out instruction is ungradable: {row['instruction']!r}")
            entry.update(gt_score=g.score, correct=g.correct)
            per_family[row.get("family", "all")].append(g)
        graded.append(entry)
    metrics: dict[str, Any] = {"mean_length": sum(e["length"] for e in graded) / max(1, len(graded)), "n": len(graded)}
    ended = [e["finished"] for e in graded if "finished" in e]
    if ended:  # the share of answers the new-token budget cut off
        metrics["cut_off_rate"] = sum(not f for f in ended) / len(ended)
    if graded_by is not None:
        allg = [g for gs in per_family.values() for g in gs]
        metrics["gt_score"] = sum(g.score for g in allg) / len(allg)
        metrics["gt_exact"] = sum(g.correct for g in allg) / len(allg)
        metrics["per_family"] = {f: {"gt_score": sum(g.score for g in gs) / len(gs),
                                     "gt_exact": sum(g.correct for g in gs) / len(gs)}
                                 for f, gs in sorted(per_family.items())}
        if isinstance(seed_data, GradeAccuracies):
            metrics.update(seed_data.accuracies(allg))
    return metrics, graded
