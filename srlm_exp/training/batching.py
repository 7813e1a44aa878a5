"""Batches of chat examples for the training modules: right-padded tensors, a batch order that keeps
examples of similar length together, and batches split into micro-batches."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from srlm_exp.chat import IGNORE_INDEX, ChatExample, pad_batch


def collate_examples(examples: Sequence[ChatExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked in attention and ignored in the loss."""
    input_ids = pad_batch([e.input_ids for e in examples], pad_id)
    labels = pad_batch([e.labels for e in examples], IGNORE_INDEX)
    attention_mask = pad_batch([[1] * len(e.input_ids) for e in examples], 0)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, bucket: int = 128) -> list[list[int]]:
    """Shuffled batches, each of rows from one length bucket (`bucket` tokens wide): short instruction rows
    are not padded to the ~600-token judge prompts of EFT rows (most of a CPU step would be padding), and
    within a bucket rows are mixed at random (batches of one task family make training swing between
    families). Partial batches come last, so re-batching the flattened order keeps the full ones intact."""
    g = torch.Generator().manual_seed(seed)
    buckets: dict[int, list[int]] = {}
    for i in torch.randperm(len(lengths), generator=g).tolist():
        buckets.setdefault(lengths[i] // bucket, []).append(i)
    batches = [rows[k : k + batch_size] for _, rows in sorted(buckets.items()) for k in range(0, len(rows), batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    return [b for b in batches if len(b) == batch_size] + [b for b in batches if len(b) < batch_size]


def in_micro_batches(collate: Callable[[list], Any], micro_batch_size: int | None) -> Callable[[list], Any]:
    """A collate function for one optimizer step's rows: `collate` of the whole batch, or with `micro_batch_size`
    a list of `collate` of each run of that many rows, each padded to its own longest row. The training modules
    forward and backpropagate one micro-batch at a time (training/base.py): same gradient, less memory."""
    if micro_batch_size is None:
        return collate

    def micro_batched(items: list) -> list:
        return [collate(items[k : k + micro_batch_size]) for k in range(0, len(items), micro_batch_size)]
    return micro_batched
