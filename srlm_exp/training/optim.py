"""Optimizer and learning-rate schedule shared by the training modules."""
from __future__ import annotations

import math

import torch


def adamw_with_cosine(module, params, lr: float, min_lr: float, warmup_steps: int, weight_decay: float):
    """AdamW with linear warm-up then cosine decay from `lr` to `min_lr` (the paper's SFT schedule).

    The step count comes from the running Trainer, so the schedule spans the real run length.

    Not transformers' get_cosine_with_min_lr_schedule_with_warmup, though its decay to min_lr (min_lr_rate) is this
    one step for step (tests/test_optim.py): its warm-up is step / warmup, so the first step trains at lr 0, a
    step lost from stages that are a few steps long (experiment=ifeval_cpu: warmup_steps=1 in stages of ~5 DPO
    steps). Here warm-up step k trains at lr * (k + 1) / (warmup + 1). Switching would also change every model a
    warm-up trains, the golden smoke fixture's M1 among them.
    """
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)
    total = max(1, int(module.trainer.estimated_stepping_batches))
    warmup = min(warmup_steps, max(0, total - 1))
    floor = min_lr / lr if lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
