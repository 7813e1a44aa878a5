"""Head-to-head judged by an external model (the paper used GPT-4): pairwise, both orders,
disagreement = tie. The path a user with real data takes where no ground truth exists."""
from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate

from srlm_exp.artifacts import read_jsonl
from srlm_exp.models.loading import free, load_model, load_tokenizer


def external_head_to_head(eval_cfg, mine: Path, theirs: Path, device) -> dict:
    a, b = read_jsonl(mine), read_jsonl(theirs)
    if [r["instruction"] for r in a] != [r["instruction"] for r in b]:
        raise ValueError(f"{mine} and {theirs} answer different instructions; cannot compare them")
    judge = instantiate(eval_cfg.external_judge)
    tok = load_tokenizer(eval_cfg.judge_model)
    model = load_model(eval_cfg.judge_model, tok).to(device)
    outcomes, _ = judge.compare(model, tok, [(x["instruction"], x["response"], y["response"]) for x, y in zip(a, b)],
                                batch_size=eval_cfg.judge_batch_size, desc="external judge")
    free(model)
    n = len(outcomes)
    return {"win": sum(o > 0 for o in outcomes) / n, "tie": sum(o == 0 for o in outcomes) / n,
            "loss": sum(o < 0 for o in outcomes) / n, "n": n}
