"""What every training module shares: the wrapped HF model, LoRA-aware checkpoints, the optimizer,
FSDP sharding under trainer=fsdp."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch

from srlm_exp.models.lora import adapter_only, is_lora, reference_context
from srlm_exp.training.optim import adamw_with_cosine
from srlm_exp.training.sharding import is_sharded, shard


class PolicyModule(pl.LightningModule):
    """The optimizer's settings and the metrics' prefix are typed attributes, read by the code; subclasses also
    call `self.save_hyperparameters(ignore=["model"])`, which only logs their arguments (`hparams/<stage>/` in
    W&B; models are never captured in hparams: that would serialize the weights into every checkpoint)."""

    def __init__(self, model, lr: float, min_lr: float, warmup_steps: int, weight_decay: float, log_prefix: str):
        super().__init__()
        self.model = model
        self.strict_loading = not is_lora(model)  # LoRA checkpoints hold the adapters only
        self.lr, self.min_lr, self.warmup_steps, self.weight_decay = lr, min_lr, warmup_steps, weight_decay
        self.log_prefix = log_prefix

    def configure_model(self) -> None:
        # Lightning calls this before every fit; only trainer=fsdp (ModelParallelStrategy) sets a device mesh.
        if self.device_mesh is not None and not is_sharded(self.model):
            shard(self.model, self.device_mesh["data_parallel"])

    def on_save_checkpoint(self, checkpoint) -> None:
        if is_lora(self.model):
            checkpoint["state_dict"] = adapter_only(checkpoint["state_dict"], self)

    def configure_optimizers(self):
        return adamw_with_cosine(self, self.model.parameters(), self.lr, self.min_lr, self.warmup_steps, self.weight_decay)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # The learning rate this step takes, beside the stage's loss (`dpo/lr`, as TRL logs `lr`): the warm-up
        # and the cosine decay are visible, and a stage whose rate decayed to nothing explains a flat loss.
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log(f"{self.log_prefix}/lr", lr, on_step=True, on_epoch=False, batch_size=1)


@torch.no_grad()
def reference_pass(model, items: Sequence[Any], batch_size: int, collate: Callable[[list], dict],
                   values: Callable[[Any, dict], torch.Tensor]) -> list[list[Any]]:
    """`values(model, batch)` ([items of the batch, k]: k floats per item; [items, k, tokens]: k lists of floats)
    for every item, with `model` as the reference policy: evaluation mode, and under LoRA its adapters disabled.
    The model's mode is restored after."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[Any]] = []
    with reference_context(model):
        for s in range(0, len(items), batch_size):
            batch = {k: v.to(device) for k, v in collate(list(items[s : s + batch_size])).items()}
            out += values(model, batch).float().cpu().tolist()
    model.train(was_training)
    return out
