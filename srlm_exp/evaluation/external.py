"""Head-to-head judged by an external model (the paper used GPT-4): pairwise, both orders,
disagreement = tie. The path a user with real data takes where no ground truth exists."""
from __future__ import annotations

from pathlib import Path

from srlm_exp.artifacts import read_jsonl
from srlm_exp.evaluation.metrics import head_to_head
from srlm_exp.models.loading import load_model, load_tokenizer, release


def external_head_to_heads(eval_cfg, judge, comparisons: dict[str, tuple[Path, Path]], device) -> dict:
    """{name: win/tie/loss} of the first eval_responses.jsonl of each pair against the second, by the
    model at eval.judge_model with the pairwise `judge` (eval.external_judge, built with the other components;
    the model is loaded once, released before returning)."""
    if not comparisons:
        return {}
    pairs = {}
    for name, (mine, theirs) in comparisons.items():
        a, b = read_jsonl(mine), read_jsonl(theirs)
        if [r["instruction"] for r in a] != [r["instruction"] for r in b]:
            raise ValueError(f"{mine} and {theirs} answer different instructions; cannot compare them")
        pairs[name] = [(x["instruction"], x["response"], y["response"]) for x, y in zip(a, b)]
    tok = load_tokenizer(eval_cfg.judge_model)
    model = load_model(eval_cfg.judge_model, tok).to(device)
    try:
        # compare() gives +1 / 0 / -1 per triple (first better / disagreement between orders / second better)
        return {name: head_to_head(judge.compare(model, tok, triples, batch_size=eval_cfg.judge_batch_size,
                                                 desc="external judge"), [0] * len(triples))
                for name, triples in pairs.items()}
    finally:
        release(model)
