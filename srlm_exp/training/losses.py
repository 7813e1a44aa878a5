"""DPO loss family, following TRL's conventions (sigmoid / IPO / hinge)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def length_averaged(loss_type: str) -> bool:
    """IPO is defined on per-token average log-probs (the IPO paper's form, as in TRL); the others on sums."""
    return loss_type == "ipo"


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
