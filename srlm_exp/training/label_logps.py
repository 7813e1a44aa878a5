"""Log-probs of labelled tokens without materialising the vocabulary logits of a batch.

The LM head and the log-softmax run over the selected hidden states in chunks of CHUNK positions. With
gradients each chunk is checkpointed: its logits are dropped after the forward pass and recomputed in
backward, so at most one chunk's [CHUNK, vocab] logits (and their gradient) exist at a time. This is the
idea of torchtune's chunked output cross-entropy, Liger's fused linear cross-entropy and Apple's Cut
Cross-Entropy, in plain PyTorch. On SmolLM2 (vocabulary 49,152) a DPO batch of 8 pairs of ~600 tokens
held ~1.9 GB of fp32 logits; a chunk of 512 positions holds ~100 MB.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

CHUNK = 512  # positions per projection: [CHUNK, vocab] fp32 logits live at once


def _chunk_logps(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    logits = head(hidden)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(-1)


def chunked_logps(head: nn.Module, hidden: Tensor, targets: Tensor, chunk: int = CHUNK) -> Tensor:
    """log p(target | hidden) per row of `hidden` [N, d] under the projection `head`, in at least fp32: the
    same values and gradients as `log_softmax(head(hidden))` gathered at `targets` [N]."""
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.promote_types(hidden.dtype, torch.float32))
    grads = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in head.parameters()))
    parts = []
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start:start + chunk], targets[start:start + chunk]
        parts.append(checkpoint(_chunk_logps, head, h, t, use_reentrant=False) if grads else _chunk_logps(head, h, t))
    return torch.cat(parts)
