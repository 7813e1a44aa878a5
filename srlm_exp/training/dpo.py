"""DPO: M(t) -> M(t+1) on preference pairs, with an explicit reference model.

Reference log-probs are computed once per iteration before training — by the policy itself when
the reference is M(t) (the paper; under LoRA with adapters disabled) or by a temporarily loaded
M1 — so no second model is held while training.
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader

from srlm_exp import layout
from srlm_exp.chat import chat_example
from srlm_exp.checks import check, positive, require
from srlm_exp.distributed import split_map
from srlm_exp.models.context import sequence_budget
from srlm_exp.models.shared_prefix import available
from srlm_exp.training.base import PolicyModule, reference_pass
from srlm_exp.training.batching import collate_examples, length_grouped_batches
from srlm_exp.training.losses import LOSS_TYPES, length_averaged, preference_loss
from srlm_exp.training.replay import with_replay
from srlm_exp.training.shared_batches import collate_pairs_with_prompts, response_logps
from srlm_exp.training.stage import StageInputs, StageSettings, TooLittleAIFTData, too_little_aift_data

log = logging.getLogger(__name__)


class NotEnoughPairsError(TooLittleAIFTData):
    """Fewer preference pairs than train.min_examples."""


def pair_batches(items: list[dict], pad_id: int, shared_prompts: bool = False) -> dict[str, torch.Tensor]:
    """Chosen and rejected sequences in one batch (one forward pass for both); with `shared_prompts`
    each pair's prompt is a prefix forwarded once for both (training/shared_batches.py)."""
    if shared_prompts:
        batch = collate_pairs_with_prompts([(i["chosen"], i["rejected"]) for i in items], pad_id)
    else:
        batch = collate_examples([i["chosen"] for i in items] + [i["rejected"] for i in items], pad_id)
    if "ref_chosen" in items[0]:  # absent while the reference log-probs are being computed
        batch["ref_logps"] = torch.tensor([i["ref_chosen"] for i in items] + [i["ref_rejected"] for i in items])
    return batch


def policy_logps(model, batch, loss_type: str, with_lengths: bool = False):
    """Sequence log-probs of the response tokens, all chosen then all rejected; per-token averages for
    the losses defined on them. With `with_lengths`, also each row's number of response tokens."""
    logps, lengths = response_logps(model, batch)
    if length_averaged(loss_type):
        logps = logps / lengths
    if "prefix_ids" in batch:  # rows come as chosen_0, rejected_0, chosen_1, ...
        logps, lengths = torch.cat([logps[0::2], logps[1::2]]), torch.cat([lengths[0::2], lengths[1::2]])
    return (logps, lengths) if with_lengths else logps


def compute_reference_logps(model, items: list[dict], pad_id: int, batch_size: int, loss_type: str,
                            shared_prompts: bool = False) -> None:
    """Fill item['ref_chosen'] / item['ref_rejected'] with the reference model's log-probs."""
    def chosen_and_rejected(m, batch):
        lp = policy_logps(m, batch, loss_type)
        return lp.view(2, -1).T  # chosen then rejected -> one (chosen, rejected) row per pair

    refs = reference_pass(model, items, batch_size, lambda b: pair_batches(b, pad_id, shared_prompts), chosen_and_rejected)
    for i, (chosen, rejected) in zip(items, refs):
        i["ref_chosen"], i["ref_rejected"] = chosen, rejected


def judge_pairs_apart(items: list[dict], batch_size: int, seed: int) -> list[dict]:
    """The items in a seeded order whose consecutive `batch_size` runs hold prompts of similar length. A batch
    pads every pair's prompt to its longest, so one judge pair (its prompt is the whole rubric) among short
    policy pairs would make the batch cost as much as a batch of judge pairs."""
    lengths = [len(i["chosen"].input_ids) for i in items]
    return [items[k] for batch in length_grouped_batches(lengths, batch_size, seed) for k in batch]


class DPOModule(PolicyModule):
    """DPO; with `nll_weight` > 0 plus that weight times the chosen responses' per-token negative
    log-likelihood (Iterative RPO, Pang et al. 2024: without it the likelihood of both responses falls)."""

    def __init__(self, model, beta: float = 0.1, loss_type: str = "sigmoid", lr: float = 1e-6, min_lr: float = 1e-7,
                 warmup_steps: int = 0, weight_decay: float = 0.0, nll_weight: float = 0.0, log_prefix: str = "dpo"):
        super().__init__(model, lr, min_lr, warmup_steps, weight_decay, log_prefix)
        self.beta, self.loss_type, self.nll_weight = beta, loss_type, nll_weight
        self.save_hyperparameters(ignore=["model"])

    def loss(self, batch):
        n = batch["input_ids"].shape[0] // 2
        logps, lengths = policy_logps(self.model, batch, self.loss_type, with_lengths=True)
        ref = batch["ref_logps"].to(logps.dtype)
        losses, cr, rr = preference_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta=self.beta,
                                         loss_type=self.loss_type)
        loss = losses.mean()
        metrics = {"dpo/chosen_reward": cr.mean(), "dpo/rejected_reward": rr.mean(), "dpo/margin": (cr - rr).mean(),
                   "dpo/accuracy": (cr > rr).float().mean(),
                   "dpo/logps_chosen": logps[:n].mean(),  # TRL's logps/chosen: likelihood displacement
                   "dpo/logps_rejected": logps[n:].mean()}
        if self.nll_weight > 0:
            sums = logps[:n] * lengths[:n] if length_averaged(self.loss_type) else logps[:n]
            nll = -(sums / lengths[:n]).mean()
            loss = loss + self.nll_weight * nll
            metrics["dpo/chosen_nll"] = nll
        return loss, metrics


class DPOStage(StageSettings):
    """Builds DPO data from pairs.jsonl (and a meta-judge's judge_pairs.jsonl), computes reference log-probs,
    and fits the policy."""

    trains_on_judge_pairs = True

    def __init__(self, name: str = "dpo", loss_type: str = "sigmoid", beta: float = 0.1, reference: str = "previous",
                 lr: float = 1e-6, min_lr: float = 1e-7, warmup_steps: int = 0, epochs: int = 1, max_steps: int = -1,
                 batch_size: int = 16, max_len: int | str = "auto", micro_batch_size: int | None = None,
                 min_examples: int = 8, weight_decay: float = 0.0, nll_weight: float = 0.0, replay_share: float = 0.0):
        check(self.reference_setting(reference),
              require(loss_type in LOSS_TYPES, "loss_type", f"is {loss_type!r}", f"choose one of {', '.join(LOSS_TYPES)}"),
              require(nll_weight >= 0, "nll_weight", f"is {nll_weight}", "set it to 0 (plain DPO) or a positive weight"),
              # beta = 0 makes the loss a constant (log 2 for sigmoid): nothing would be learned.
              positive(beta, "beta", "set beta > 0 (the paper's DPO: 0.1)"),
              *self.aift_settings(min_examples=min_examples, replay_share=replay_share),
              *self.fit_settings(lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
                                 epochs=epochs, max_steps=max_steps, batch_size=batch_size, max_len=max_len,
                                 micro_batch_size=micro_batch_size))
        self.name, self.loss_type, self.beta, self.nll_weight = name, loss_type, beta, nll_weight

    def fit(self, model, inputs: StageInputs) -> dict[str, Any]:
        tokenizer, t = inputs.tokenizer, inputs.iteration
        rows, replayed = with_replay(inputs.data_dir, t, layout.PAIRS, self.replay_share, inputs.seed)
        if len(rows) < self.min_examples:
            raise too_little_aift_data(inputs.data_dir, f"iteration {t}: {len(rows)} valid preference pairs in "
                                       f"{inputs.data_dir}/pairs.jsonl", self.min_examples, NotEnoughPairsError)
        # Meta-Rewarding: the judge's pairs (judge prompt, better vs worse judgment) train beside the policy's.
        meta_judged = (inputs.data_dir / layout.JUDGE_PAIRS).exists()
        judge_rows, judge_replayed = with_replay(inputs.data_dir, t, layout.JUDGE_PAIRS, self.replay_share, inputs.seed) \
            if meta_judged else ([], 0)
        max_len = sequence_budget(self.max_len, model, "train.max_len")
        items: list[dict[str, Any]]  # each pair's two examples, then its reference log-probs (floats)
        items = [{"chosen": chat_example(tokenizer, r["instruction"], r["chosen"], max_len, "train.max_len",
                                         ended=r.get("chosen_finished", True)),
                  "rejected": chat_example(tokenizer, r["instruction"], r["rejected"], max_len, "train.max_len",
                                           ended=r.get("rejected_finished", True))}
                 for r in rows + judge_rows]
        shared = available(model, "DPO", training=True)  # each pair's prompt forwarded once for chosen and rejected
        with self.reference_model(model, inputs) as ref_model:

            def reference(part: list[dict]) -> list[tuple[float, float]]:
                compute_reference_logps(ref_model, part, tokenizer.pad_token_id, self.batch_size, self.loss_type, shared)
                return [(i["ref_chosen"], i["ref_rejected"]) for i in part]

            # Split across ranks under DDP (the plain model, outside the fit: no collective inside).
            for item, (chosen, rejected) in zip(items, split_map(reference, items)):
                item["ref_chosen"], item["ref_rejected"] = chosen, rejected
        collate = partial(pair_batches, pad_id=tokenizer.pad_token_id, shared_prompts=shared)
        if judge_rows:  # judge prompts (~the rubric's length) in batches of their own: see judge_pairs_apart
            # torch types DataLoader's dataset as a Dataset; a list is a map-style dataset at runtime
            loader: DataLoader[dict[str, Any]] = DataLoader(
                judge_pairs_apart(items, self.batch_size, inputs.seed + t),  # type: ignore[arg-type]
                batch_size=self.batch_size, shuffle=False, collate_fn=self.collate(collate))
        else:
            loader = DataLoader(items, batch_size=self.batch_size, shuffle=True,  # type: ignore[arg-type]
                                generator=torch.Generator().manual_seed(t), collate_fn=self.collate(collate))
        module = DPOModule(model, beta=self.beta, loss_type=self.loss_type, nll_weight=self.nll_weight,
                           **self.optimizer_args())
        inputs.run_fit(module, loader, self.epochs, self.max_steps)
        trained = {"pairs": len(rows), "replayed": replayed}
        if meta_judged:
            trained.update(judge_pairs=len(judge_rows), judge_pairs_replayed=judge_replayed)
        return trained
