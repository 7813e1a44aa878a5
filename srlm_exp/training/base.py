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
    W&B; models are never captured in hparams: that would serialize the weights into every checkpoint).

    One optimizer step per batch. A batch may come as micro-batches (a list of collated batches:
    `train.micro_batch_size`, training/batching.py), forwarded and backpropagated one at a time so that one
    micro-batch's activations are held at a time (on SmolLM2 they, not the weights, fill most of a step's memory).
    Each micro-batch's loss counts by its share of the batch's `weight` (rows, or label tokens for a per-token
    mean), so the step's gradient is the whole batch's. Lightning cannot accumulate inside one step, so the
    optimisation is manual; gradient clipping runs where Lightning would clip (`ClipGradients`, training/fit.py).
    A subclass defines `loss`, and `weight` when its loss is not a mean over rows."""

    automatic_optimization = False
    logged_weight: str | None = None  # a name to log each step's total `weight` under (`<log_prefix>/<name>`)

    def __init__(self, model, lr: float, min_lr: float, warmup_steps: int, weight_decay: float, log_prefix: str):
        super().__init__()
        self.model = model
        self.strict_loading = not is_lora(model)  # LoRA checkpoints hold the adapters only
        self.lr, self.min_lr, self.warmup_steps, self.weight_decay = lr, min_lr, warmup_steps, weight_decay
        self.log_prefix = log_prefix

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One (micro-)batch's loss and the metrics to log, each a mean over the batch by its `weight`."""
        raise NotImplementedError

    def rows(self, batch) -> int:
        return batch["input_ids"].shape[0]

    def weight(self, batch) -> float:
        """What the loss is a mean over, counted in `batch`: its rows."""
        return float(self.rows(batch))

    def step_loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """A term added once per optimizer step, outside the micro-batches (PPO-ptx's language-model batch)."""
        return None

    def training_step(self, batch, batch_idx):
        micro_batches = batch if isinstance(batch, list) else [batch]
        weights = [self.weight(b) for b in micro_batches]
        total = sum(weights) or 1.0  # a batch with nothing to learn from contributes 0
        optimizer = self.optimizers()
        assert not isinstance(optimizer, list)  # configure_optimizers gives one
        optimizer.zero_grad()
        step = torch.zeros(())
        metrics: dict[str, torch.Tensor] = {}
        for micro_batch, w in zip(micro_batches, weights):
            loss, values = self.loss(micro_batch)
            self.manual_backward(loss * (w / total))
            step = step.to(loss.device) + loss.detach() * (w / total)
            for name, value in values.items():
                metrics[name] = metrics.get(name, torch.zeros((), device=value.device)) + value.detach() * (w / total)
        extra = self.step_loss()
        if extra is not None:
            loss, values = extra
            self.manual_backward(loss)
            step = step + loss.detach()
            metrics.update({name: value.detach() for name, value in values.items()})
        optimizer.step()  # ClipGradients clips first (on_before_optimizer_step)
        self.lr_schedulers().step()  # type: ignore[union-attr]  # configure_optimizers gives one per-step schedule
        log: dict[str, Any] = dict(on_step=True, on_epoch=False, batch_size=sum(self.rows(b) for b in micro_batches))
        self.log(f"{self.log_prefix}/loss", step, prog_bar=True, **log)
        for name, value in metrics.items():
            self.log(name, value, **log)
        if self.logged_weight is not None:
            self.log(f"{self.log_prefix}/{self.logged_weight}", float(sum(weights)), **log)
        return step

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
