"""The model as a judge on held-out ranked sets: the paper's Table 4 metrics."""
from __future__ import annotations

from typing import Any, Sequence

from srlm_exp.data.seed_data import JudgmentReader, JudgmentReading
from srlm_exp.distributed import split_map
from srlm_exp.evaluation.metrics import judge_metrics
from srlm_exp.records import parse_rate


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
    if judge.writes_seed_judgments and isinstance(seed_data, JudgmentReader):
        metrics.update(judgment_reading(seed_data, sets, judged))
    return metrics


def judgment_reading(seed_data, sets, judged) -> dict[str, Any]:
    """What the judgments got right before their scores, where the seed data can check it (the world):
    `states_answer`, the share of judgments that state the true answer; `quotes_response`, of the
    judgments that quote the response's answer, the share that quote it as it is (None if none do)."""
    reads = [seed_data.read_judgment(s["instruction"], response, text)
             for s, js in zip(sets, judged) for response, judgment in zip(s["responses"], js) for text in judgment.texts]
    return reading_rates([r for r in reads if r is not None])


def reading_rates(reads: Sequence[JudgmentReading]) -> dict[str, float | None]:
    """`states_answer` and `quotes_response` over read judgments (JudgmentReader.read_judgment's dicts)."""
    quotes = [r["quotes_response"] for r in reads if r["quotes_response"] is not None]
    return {"states_answer": sum(r["states_answer"] for r in reads) / len(reads) if reads else None,
            "quotes_response": sum(quotes) / len(quotes) if quotes else None}
