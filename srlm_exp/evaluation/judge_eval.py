"""The model as a judge on held-out ranked sets: the paper's Table 4 metrics."""
from __future__ import annotations

from typing import Any

from srlm_exp.distributed import split_map
from srlm_exp.evaluation.metrics import judge_metrics
from srlm_exp.judging.records import parse_rate


def evaluate_judge(model, tokenizer, judge, seed_data, batch_size: int) -> dict[str, Any]:
    """Judge every response of every held-out set with the model; compare with the reference ranking."""
    judge = judge.model_judge()
    sets = seed_data.judge_eval_sets()
    # Sets split across ranks under DDP; every rank gets all judgments back, in order.
    judged = split_map(lambda part: judge.judge(model, tokenizer, [s["instruction"] for s in part],
                                                [s["responses"] for s in part], batch_size=batch_size,
                                                desc="judge eval"), sets)
    metrics = judge_metrics([[j.score for j in js] for js in judged], [s["scores"] for s in sets], top_score=judge.high)
    # Table 4's parse rate is over individual judgments, not per-response means.
    metrics["parse_rate"] = parse_rate(j for js in judged for j in js)
    return metrics
