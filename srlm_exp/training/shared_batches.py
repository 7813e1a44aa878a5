"""Training batches that forward a shared prefix once (models/shared_prefix.py), with the same loss and
gradients as forwarding every full sequence.

SFT: rows that start with the run's shared prefix (the judge rubric of the EFT rows) carry only what
follows it; the prefix is forwarded once per batch, with gradients, and those rows attend to it
(ordinary rows of the same batch do not). DPO: a pair's chosen and rejected rows carry only their
responses; the pair's prompt is forwarded once and both attend to it.

A prefix never reaches a labelled token: it stops at least one token before every response, so the
logits of the prefix are never needed and every label is predicted inside the rows' own tokens.
"""
from __future__ import annotations

from typing import Sequence

import torch

from srlm_exp.chat import IGNORE_INDEX, ChatExample, pad_batch
from srlm_exp.models.heads import decoder_of, output_head, plain_projection_problem
from srlm_exp.models.shared_prefix import forward
from srlm_exp.training.label_logps import chunked_logps
from srlm_exp.training.losses import token_logps
from srlm_exp.training.sharding import is_sharded


def prompt_length(example: ChatExample) -> int:
    """Tokens before the first labelled one (the prompt)."""
    for i, label in enumerate(example.labels):
        if label != IGNORE_INDEX:
            return i
    return len(example.labels)


def shared_prefix(examples: Sequence[ChatExample], min_tokens: int = 16) -> list[int]:
    """The longest token prefix all `examples` share, ending before any of them reaches its last prompt
    token; [] when shorter than `min_tokens` (not worth a separate forward)."""
    if not examples:
        return []
    first = examples[0].input_ids
    n = min(prompt_length(e) for e in examples) - 1
    for e in examples[1:]:
        k = 0
        while k < n and e.input_ids[k] == first[k]:
            k += 1
        n = k
    return list(first[:n]) if n >= min_tokens else []


def collate_with_prefix(examples: Sequence[ChatExample], pad_id: int, prefix: Sequence[int]) -> dict[str, torch.Tensor]:
    """Right-padded rows; rows that start with `prefix` keep only what follows it (`uses_prefix`)."""
    P = len(prefix)
    uses = [bool(P) and list(e.input_ids[:P]) == list(prefix) and prompt_length(e) > P for e in examples]
    ids = [e.input_ids[P:] if u else e.input_ids for e, u in zip(examples, uses)]
    labels = [e.labels[P:] if u else e.labels for e, u in zip(examples, uses)]
    batch = {"input_ids": pad_batch(ids, pad_id), "labels": pad_batch(labels, IGNORE_INDEX),
             "attention_mask": pad_batch([[1] * len(x) for x in ids], 0)}
    if any(uses):
        batch["prefix_ids"] = torch.tensor([list(prefix)], dtype=torch.long)
        batch["uses_prefix"] = torch.tensor(uses)
    return batch


def collate_pairs_with_prompts(pairs: Sequence[tuple[ChatExample, ChatExample]], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows chosen_0, rejected_0, chosen_1, ... carrying the responses (and the prompt's last token); the
    prompts, less that token, as left-padded prefixes, one per pair."""
    prefixes, rows, labels = [], [], []
    for chosen, rejected in pairs:
        n = prompt_length(chosen) - 1
        if prompt_length(rejected) - 1 != n or chosen.input_ids[:n] != rejected.input_ids[:n]:
            raise ValueError("a pair's chosen and rejected must share their prompt")
        prefixes.append(chosen.input_ids[:n])
        for e in (chosen, rejected):
            rows.append(e.input_ids[n:])
            labels.append(e.labels[n:])
    return {"prefix_ids": pad_batch(prefixes, pad_id, left=True),
            "prefix_mask": pad_batch([[1] * len(p) for p in prefixes], 0, left=True),
            "input_ids": pad_batch(rows, pad_id), "labels": pad_batch(labels, IGNORE_INDEX),
            "attention_mask": pad_batch([[1] * len(r) for r in rows], 0)}


def without_prefix(batch: dict[str, torch.Tensor], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """The same rows as full sequences (the prefix put back in front of the rows that continue it)."""
    prefixes, mask = batch["prefix_ids"], batch.get("prefix_mask")
    G, R = prefixes.shape[0], batch["input_ids"].shape[0]
    uses = batch.get("uses_prefix", torch.ones(R, dtype=torch.bool))
    ids, labels = [], []
    for r in range(R):
        n = int(batch["attention_mask"][r].sum())
        own, own_labels = batch["input_ids"][r, :n].tolist(), batch["labels"][r, :n].tolist()
        if uses[r]:
            g = r // (R // G)
            prefix = prefixes[g][mask[g].bool()].tolist() if mask is not None else prefixes[g].tolist()
            own, own_labels = prefix + own, [IGNORE_INDEX] * len(prefix) + own_labels
        ids.append(own)
        labels.append(own_labels)
    return {"input_ids": pad_batch(ids, pad_id).to(prefixes.device),
            "labels": pad_batch(labels, IGNORE_INDEX).to(prefixes.device),
            "attention_mask": pad_batch([[1] * len(x) for x in ids], 0).to(prefixes.device)}


def label_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-prob of every label under the model, and only of those: (log-probs [N], the row of each [N]).

    The decoder's final hidden states are selected at the positions that predict a label, and the LM head
    and log-softmax run over them chunk by chunk, recomputed in backward (training/label_logps.py): no
    [rows, tokens, vocab] tensor is ever made, on any transformers version. Whether the batch carries a
    shared prefix or not; full rows, projected through the model's own forward, where the model is sharded
    (FSDP reshards the parameters between the prefix's forward pass and the rows', and owns the head) or its
    logits are not a plain projection of the hidden states (logit soft-capping, scaling)."""
    if "prefix_ids" in batch and is_sharded(model):
        batch = without_prefix(batch)
    labels = batch["labels"]
    predicts = torch.zeros_like(labels, dtype=torch.bool)
    predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t+1
    targets = labels[:, 1:][predicts[:, :-1]]
    rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[predicts]
    if is_sharded(model) or plain_projection_problem(model) is not None:
        return _projected_by_model(model, batch, predicts, targets), rows
    if "prefix_ids" not in batch:
        hidden = decoder_of(model)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   use_cache=False).last_hidden_state
    else:
        _, prefix = forward(model, batch["prefix_ids"], batch.get("prefix_mask"), record=True, hidden=True)
        row_masks = [batch["uses_prefix"]] if "uses_prefix" in batch else None
        hidden, _ = forward(model, batch["input_ids"], batch["attention_mask"], prefixes=[prefix], row_masks=row_masks,
                            hidden=True)
    return chunked_logps(output_head(model), hidden[predicts], targets), rows


def _projected_by_model(model, batch: dict[str, torch.Tensor], predicts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """label_logps through the model's own forward: every position projected, the labelled ones kept."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return token_logps(logits[predicts], targets)


def causal_lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled tokens (as Hugging Face's causal-LM loss)."""
    return -label_logps(model, batch)[0].mean()


def response_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the sum of its response tokens' log-probs, and how many response tokens it has (>= 1)."""
    per_token, rows = label_logps(model, batch)
    n = batch["input_ids"].shape[0]
    return per_token.new_zeros(n).index_add(0, rows, per_token), torch.bincount(rows, minlength=n).clamp(min=1)
