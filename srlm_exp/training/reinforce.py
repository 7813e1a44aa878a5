"""REINFORCE with a leave-one-out baseline (RLOO): M(t) -> M(t+1) on the judged candidates themselves.

Seed 004's policy gradient with the self-assigned score as the reward, in the RLOO form (Ahmadian et al.
2024): each of a prompt's N sampled candidates is pushed up or down by its reward minus the mean reward
of the prompt's *other* candidates, loss -(r_i - b_i) log pi(y_i | x). A per-sequence KL penalty to the
reference (M(t), or M1) keeps the update near it: kl_coef * (log pi(y) - log pi_ref(y))^2 / 2 (Schulman's
k2 estimator). Its gradient, kl_coef * (log pi(y) - log pi_ref(y)) * grad log pi(y), is the sampled
gradient of KL(pi || pi_ref) on on-policy samples, and it pulls a response back from either side of the
reference. The plain log-ratio is not a usable penalty here: its gradient kl_coef * grad log pi(y) is zero
in expectation on-policy and, on the stored rollouts, pushes every sampled response down alike. Candidates
whose judgments gave no valid score are left out (never a default reward); a prompt needs two scored
candidates for a baseline.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from srlm_exp.chat import chat_example
from srlm_exp.checks import at_least, check
from srlm_exp.distributed import split_map
from srlm_exp.models.context import sequence_budget
from srlm_exp.records import PromptCandidates
from srlm_exp.training.base import PolicyModule, reference_pass
from srlm_exp.training.batching import collate_examples
from srlm_exp.training.replay import candidates_to_train_on
from srlm_exp.training.shared_batches import response_logps
from srlm_exp.training.stage import StageInputs, StageSettings, too_little_aift_data



def rloo_advantages(rewards: Sequence[float]) -> list[float]:
    """Each reward minus the mean of the others (the leave-one-out baseline); needs two or more."""
    n = len(rewards)
    if n < 2:
        raise ValueError(f"a leave-one-out baseline needs 2 or more rewards, got {n}")
    total = sum(rewards)
    return [r - (total - r) / (n - 1) for r in rewards]


def rollouts(rows: Sequence[PromptCandidates]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(instruction, response, advantage) for every scored candidate of a prompt with 2+ of them, and
    counts of what was left out and why."""
    out, dropped = [], {"unscored_candidates": 0, "prompts_with_fewer_than_2_scored": 0}
    for row in rows:
        usable = row.for_training()  # under the row's cut-off rule
        scored = [c for c in usable if not math.isnan(c.score)]
        dropped["unscored_candidates"] += len(usable) - len(scored)
        if len(scored) < 2:
            dropped["prompts_with_fewer_than_2_scored"] += 1
            continue
        for c, a in zip(scored, rloo_advantages([c.score for c in scored])):
            out.append({"instruction": row.instruction, "response": c.text, "reward": c.score, "advantage": a,
                        "ended": c.finished is not False})
    return out, dropped


def rloo_loss(logps: torch.Tensor, ref_logps: torch.Tensor, advantages: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Mean over the batch of -A * log pi(y) + kl_coef * (log pi(y) - log pi_ref(y))^2 / 2 (the k2 KL penalty:
    zero at the reference, and its gradient pulls log pi(y) back towards log pi_ref(y) from either side)."""
    return (-advantages * logps + kl_coef * 0.5 * (logps - ref_logps).square()).mean()


def _collate(items: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    batch = collate_examples([i["example"] for i in items], pad_id)
    batch["advantages"] = torch.tensor([i["advantage"] for i in items], dtype=torch.float32)
    if "ref_logp" in items[0]:  # absent while the reference log-probs are being computed
        batch["ref_logps"] = torch.tensor([i["ref_logp"] for i in items], dtype=torch.float32)
    return batch


class ReinforceModule(PolicyModule):
    def __init__(self, model, kl_coef: float = 0.05, lr: float = 1e-5, min_lr: float = 1e-6, warmup_steps: int = 0,
                 weight_decay: float = 0.0, log_prefix: str = "reinforce"):
        super().__init__(model, lr, min_lr, warmup_steps, weight_decay, log_prefix)
        self.kl_coef = kl_coef
        self.save_hyperparameters(ignore=["model"])

    def loss(self, batch):
        logps = response_logps(self.model, batch)[0]
        ref, adv = batch["ref_logps"].to(logps.dtype), batch["advantages"].to(logps.dtype)
        return rloo_loss(logps, ref, adv, self.kl_coef), {"reinforce/kl": (logps - ref).mean(),
                                                          "reinforce/advantage_abs": adv.abs().mean()}


class ReinforceStage(StageSettings):
    """Builds the rollouts from candidates.jsonl, computes the reference log-probs, and fits the policy."""

    def __init__(self, name: str = "reinforce", kl_coef: float = 0.05, reference: str = "previous", lr: float = 1e-5,
                 min_lr: float = 1e-6, warmup_steps: int = 0, epochs: int = 1, max_steps: int = -1, batch_size: int = 16,
                 max_len: int | str = "auto", micro_batch_size: int | None = None, min_examples: int = 8,
                 weight_decay: float = 0.0, replay_share: float = 0.0):
        check(self.reference_setting(reference),
              at_least(kl_coef, 0, "kl_coef", "set kl_coef >= 0 (0 = no KL penalty)"),
              *self.aift_settings(min_examples=min_examples, replay_share=replay_share),
              *self.fit_settings(lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
                                 epochs=epochs, max_steps=max_steps, batch_size=batch_size, max_len=max_len,
                                 micro_batch_size=micro_batch_size))
        self.name, self.kl_coef = name, kl_coef

    def fit(self, model, inputs: StageInputs) -> dict[str, Any]:
        tok, t = inputs.tokenizer, inputs.iteration
        rows, replayed = candidates_to_train_on(inputs.data_dir, t, self.replay_share, inputs.seed)
        items, dropped = rollouts(rows)
        if len(items) < self.min_examples:
            raise too_little_aift_data(inputs.data_dir, f"iteration {t}: {len(items)} scored candidates with a "
                                       f"leave-one-out baseline in {inputs.data_dir}/candidates.jsonl ({dropped})",
                                       self.min_examples)
        max_len = sequence_budget(self.max_len, model, "train.max_len")
        for i in items:
            i["example"] = chat_example(tok, i["instruction"], i["response"], max_len, "train.max_len", ended=i["ended"])
        with self.reference_model(model, inputs) as ref_model:

            def reference(part: list[dict]) -> list[list[float]]:
                return reference_pass(ref_model, part, self.batch_size, lambda b: _collate(b, tok.pad_token_id),
                                      lambda m, batch: response_logps(m, batch)[0][:, None])

            for item, (lp,) in zip(items, split_map(reference, items)):
                item["ref_logp"] = lp
        # torch types DataLoader's dataset as a Dataset; a list is a map-style dataset at runtime
        loader: DataLoader[dict[str, Any]] = DataLoader(items, batch_size=self.batch_size, shuffle=True,  # type: ignore[arg-type]
                                                        generator=torch.Generator().manual_seed(t),
                                                        collate_fn=self.collate(lambda b: _collate(b, tok.pad_token_id)))
        module = ReinforceModule(model, kl_coef=self.kl_coef, **self.optimizer_args())
        inputs.run_fit(module, loader, self.epochs, self.max_steps)
        return {"rollouts": len(items), "replayed_prompts": replayed, **dropped}
