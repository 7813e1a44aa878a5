"""Batches of chat examples for the training modules: right-padded tensors, and a batch order that keeps
examples of similar length together."""
from __future__ import annotations

from typing import Sequence

import torch

from srlm_exp.chat import IGNORE_INDEX, ChatExample, pad_batch


def collate_examples(examples: Sequence[ChatExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked in attention and ignored in the loss."""
    input_ids = pad_batch([e.input_ids for e in examples], pad_id)
    labels = pad_batch([e.labels for e in examples], IGNORE_INDEX)
    attention_mask = pad_batch([[1] * len(e.input_ids) for e in examples], 0)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, mega: int = 8) -> list[list[int]]:
    """Shuffled batches of similar length: short IFT examples are not padded to the ~450-token
    judge prompts of EFT examples (most of an SFT step's cost on CPU would be padding)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    batches = []
    for s in range(0, len(order), batch_size * mega):
        chunk = sorted(order[s : s + batch_size * mega], key=lambda i: lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    # A short (last) batch goes last, so re-batching the flattened order keeps the groups intact.
    return [b for b in batches if len(b) == batch_size] + [b for b in batches if len(b) < batch_size]
