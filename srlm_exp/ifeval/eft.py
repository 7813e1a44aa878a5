"""From a model's graded samples to EFT rows, IFT rows and ranked sets (pure functions, no model).

A *graded set* is one instruction with the responses a model sampled for it and each response's checker
grade: {"instruction", "family", "responses", "scores", "correct", "strict", "loose"} (per response: its
rubric score, IFEval prompt-level strict pass, and per-constraint strict / loose passes), and "finished"
(whether each response ended within its budget) where the sampler recorded it.

  * EFT rows (`eft_rows`): from every *contrastive* set (responses of at least two different scores), one
    response per distinct score (the first sampled), each with its target judgment; then the most common
    score is downsampled, at random, to the count of the second most common (`balance_scores`), so that no
    score outnumbers all others as the all-pass or all-fail score otherwise would.
  * IFT rows (`ift_rows`): the first response that passes every constraint strictly and ended within its
    budget, per instruction (contrastive or not), up to a cap: the model's own checker-passing answers. A cut
    one is never an IFT row: seed SFT would teach it as a finished answer, so M1 would learn to write to the
    budget and stop there (measured: 12 of M0's 26 passing IFT rows were cut at 256 tokens, and M1's answers
    were cut off 91% of the time against M0's 69%).
  * Ranked sets (`ranked_sets`): contrastive sets with all their responses (ties kept): the held-out
    judge_eval sets and the reward model's training sets.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Sequence

from .grader import IFGrade

__all__ = ["graded_set", "contrastive", "balance_scores", "eft_rows", "ift_rows", "ranked_sets"]


def graded_set(instruction: str, responses: Sequence[str], grades: Sequence[IFGrade]) -> dict[str, Any]:
    if len(responses) != len(grades) or not grades:
        raise ValueError(f"{len(responses)} responses but {len(grades)} grades")
    out = {"instruction": instruction, "family": grades[0].family, "responses": [str(r) for r in responses],
           "scores": [g.score for g in grades], "correct": [g.correct for g in grades],
           "strict": [list(g.strict) for g in grades], "loose": [list(g.loose) for g in grades]}
    finished = [getattr(r, "finished", None) for r in responses]  # inference/sampler.py:Completion
    if any(f is not None for f in finished):
        out["finished"] = finished
    return out


def contrastive(s: dict[str, Any]) -> bool:
    return len(set(s["scores"])) >= 2


def balance_scores(rows: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """The rows of the most common score thinned at random to the count of the second most common; order kept."""
    counts = Counter(r["score"] for r in rows).most_common()
    if len(counts) < 2 or counts[0][1] <= counts[1][1]:
        return list(rows)
    top, cap = counts[0][0], counts[1][1]
    keep = set(rng.sample([i for i, r in enumerate(rows) if r["score"] == top], cap))
    return [r for i, r in enumerate(rows) if r["score"] != top or i in keep]


def eft_rows(sets: Sequence[dict[str, Any]], judgment_of: Callable[[str, str], str],
             rng: random.Random) -> list[dict[str, Any]]:
    """{"instruction", "response", "score", "judgment", "family"} rows (module docstring);
    `judgment_of(instruction, response)` writes the target judgment."""
    rows = []
    for s in sets:
        if not contrastive(s):
            continue
        seen: set[int] = set()
        for response, score in zip(s["responses"], s["scores"]):
            if score in seen:
                continue
            seen.add(score)
            rows.append({"instruction": s["instruction"], "response": response, "score": score,
                         "judgment": judgment_of(s["instruction"], response), "family": s["family"]})
    return balance_scores(rows, rng)


def ift_rows(sets: Sequence[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    rows = []
    for s in sets:
        finished = s.get("finished", [None] * len(s["responses"]))
        for response, ok, ended in zip(s["responses"], s["correct"], finished):
            if ok and ended is not False:
                rows.append({"instruction": s["instruction"], "response": response, "family": s["family"]})
                break
    return rows[:cap]


def ranked_sets(sets: Sequence[dict[str, Any]], n: int | None = None) -> list[dict[str, Any]]:
    out = [{"instruction": s["instruction"], "family": s["family"], "responses": list(s["responses"]),
            "scores": list(s["scores"])} for s in sets if contrastive(s)]
    return out if n is None else out[:n]
