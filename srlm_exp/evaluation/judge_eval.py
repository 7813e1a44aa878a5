"""The model as a judge on held-out ranked sets: the paper's Table 4 metrics."""
from __future__ import annotations

from typing import Any

from srlm_exp.evaluation.metrics import judge_metrics


def evaluate_judge(model, tokenizer, judge, seed_data, batch_size: int) -> dict[str, Any]:
    """Judge every response of every held-out set with the model; compare with the reference ranking."""
    judge = judge.model_judge()
    sets = seed_data.judge_eval_sets()
    judged = judge.judge(model, tokenizer, [s["instruction"] for s in sets], [s["responses"] for s in sets],
                         batch_size=batch_size, desc="judge eval")
    metrics = judge_metrics([[j.score for j in js] for js in judged], [s["scores"] for s in sets], top_score=judge.high)
    # Table 4's parse rate is over individual judgments, not per-response means.
    metrics["parse_rate"] = judge.parse_rate_of([j for js in judged for j in js])
    return metrics
