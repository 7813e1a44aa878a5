"""DPO loss family, following TRL's conventions (sigmoid / IPO / hinge)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def length_averaged(loss_type: str) -> bool:
    """IPO is defined on per-token average log-probs (the IPO paper's form, as in TRL); the others on sums."""
    return loss_type == "ipo"


def sequence_logps(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """Sum of log-probs of the label tokens per sequence, shape (batch,).

    logits: (batch, T, vocab); labels: (batch, T) aligned with the input ids. Position t's
    logits predict token t+1, so logits[:, :-1] are scored against labels[:, 1:]
    (forgetting the shift is a known public bug). Labels equal to `ignore_index` (prompt
    and padding) contribute nothing.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    # at least fp32: DPO compares small differences of big sums (keep fp64 if given)
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))
    labels = labels[:, 1:]
    mask = labels != ignore_index
    safe = labels.masked_fill(~mask, 0)  # any valid id; masked out below
    # gather - logsumexp avoids materialising a full log_softmax copy of the vocab axis
    token_logps = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return (token_logps * mask).sum(-1)


def token_logps(logits: Tensor, targets: Tensor) -> Tensor:
    """Log-prob of each target token under its logits ([N, vocab], [N]), in at least fp32."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def preference_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-example DPO-family losses and the implicit rewards.

    Inputs are sequence log-probs, shape (batch,). With
    logits = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected):
    sigmoid = -logsigmoid(beta*logits); ipo = (logits - 1/(2*beta))**2;
    hinge = relu(1 - beta*logits). Returns (losses, chosen_rewards, rejected_rewards),
    rewards = beta * (policy - ref), detached. Note: TRL feeds IPO *length-averaged*
    log-probs (the IPO paper's form); pass sums / n_tokens for that, sums otherwise.
    """
    logits = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards
