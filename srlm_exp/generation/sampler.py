"""Batched generation that reads only the new tokens.

Every generation in the project (prompts, candidates, judgments, evaluation) goes through
`generate`: prompts are batched (sorted by length to waste little padding), left-padded, stop at
EOS, and the budget counts new tokens only — a judge prompt alone is ~400 tokens, so a budget
that counted the prompt would leave nothing to generate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from srlm_exp.chat import pad_batch


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 32
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    sampling: Sampling,
    batch_size: int = 32,
    desc: str = "generate",
    stop_strings: Sequence[str] | None = None,
    show_progress: bool = True,
) -> list[str]:
    """Generate one continuation per prompt (token-id lists); returns the decoded new text only."""
    if not prompts:
        return []
    max_pos = getattr(model.config, "max_position_embeddings", None)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    do_sample = sampling.temperature > 0
    pad_id = tokenizer.pad_token_id
    bar = tqdm(total=len(prompts), desc=desc, disable=not show_progress, leave=False)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = [list(prompts[i]) for i in idx]
        longest = max(len(b) for b in batch)
        if max_pos is not None and longest + sampling.max_new_tokens > max_pos:
            raise ValueError(
                f"{desc}: a prompt of {longest} tokens + {sampling.max_new_tokens} new tokens exceeds the "
                f"model's {max_pos} positions; shorten the prompt or raise model.architecture.max_position_embeddings"
            )
        input_ids = pad_batch(batch, pad_id, left=True).to(device)
        attention_mask = pad_batch([[1] * len(b) for b in batch], 0, left=True).to(device)
        kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=do_sample,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad_id,
            use_cache=True,  # even when training turned it off in the config (gradient checkpointing)
        )
        if do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop_strings:
            kwargs.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        new_tokens = out[:, input_ids.shape[1] :]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        for i, t in zip(idx, texts):
            outputs[i] = t.strip()
        bar.update(len(idx))
    bar.close()
    if was_training:
        model.train()
    return outputs
