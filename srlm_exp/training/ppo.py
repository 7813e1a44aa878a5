"""PPO (InstructGPT): M(t) -> M(t+1) on the iteration's judged candidates as the rollouts.

Per token j of a response: the reward is the KL penalty -beta * (log pi_old - log pi_ref) to the reference
(the SFT model M1, as in InstructGPT, or M(t)), and the last token also gets the candidate's judge
score (centred over the iteration's rollouts). A value head on the policy's last hidden state predicts
each token's return; GAE (gamma, lambda) gives the advantages (whitened over the iteration). Several PPO
epochs over the rollouts minimise the clipped surrogate, the clipped value loss and, with ptx_coef > 0,
PPO-ptx: ptx_coef times the LM loss on a batch of the seed data's IFT rows.

The value head is saved apart from the policy (`value_head.pt` in the iteration's directory, read back
by the next PPO iteration), so every M(t) stays a plain model directory. Candidates without a valid
score are left out, never given a default reward.
"""
from __future__ import annotations

import math
import random
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from srlm_exp import layout
from srlm_exp.artifacts import atomic_named_file
from srlm_exp.chat import IGNORE_INDEX, chat_example
from srlm_exp.checks import at_least, check, positive, require
from srlm_exp.models.context import sequence_budget
from srlm_exp.models.heads import decoder_of, output_head, plain_projection_problem
from srlm_exp.records import PromptCandidates
from srlm_exp.training.base import PolicyModule, reference_pass
from srlm_exp.training.batching import collate_examples
from srlm_exp.training.label_logps import chunked_logps
from srlm_exp.training.losses import token_logps
from srlm_exp.training.optim import adamw_with_cosine
from srlm_exp.training.replay import candidates_to_train_on
from srlm_exp.training.sharding import is_sharded
from srlm_exp.training.stage import StageInputs, StageSettings, too_little_aift_data

VALUE_HEAD_FILE = layout.VALUE_HEAD  # beside M(t) in its iteration directory


# --- the pure parts ---------------------------------------------------------------------------------

def kl_penalized_rewards(score: float, logps: Sequence[float], ref_logps: Sequence[float], beta: float) -> list[float]:
    """Per-token rewards: -beta * (log pi_old - log pi_ref) at every token, plus `score` at the last one."""
    rewards = [-beta * (lp - rp) for lp, rp in zip(logps, ref_logps, strict=True)]
    rewards[-1] += score
    return rewards


def gae(rewards: Sequence[float], values: Sequence[float], gamma: float, lam: float) -> tuple[list[float], list[float]]:
    """Generalised advantage estimates and returns of one sequence (the value after its last token is 0)."""
    advantages, running = [0.0] * len(rewards), 0.0
    for j in reversed(range(len(rewards))):
        next_value = values[j + 1] if j + 1 < len(values) else 0.0
        delta = rewards[j] + gamma * next_value - values[j]
        running = delta + gamma * lam * running
        advantages[j] = running
    return advantages, [a + v for a, v in zip(advantages, values)]


def clipped_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        clip: float) -> torch.Tensor:
    """Mean over response tokens of max(-A * ratio, -A * clip(ratio, 1 - clip, 1 + clip))."""
    ratio = torch.exp(logps - old_logps)
    loss = torch.maximum(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip, 1 + clip))
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float) -> torch.Tensor:
    """Mean over response tokens of 0.5 * max((V - R)^2, (clip(V, V_old +- clip) - R)^2)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    loss = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return (loss * mask).sum() / mask.sum().clamp(min=1)


# --- per-token log-probs and values -----------------------------------------------------------------

def response_mask(labels: torch.Tensor) -> torch.Tensor:
    """[B, L] True at the response tokens predicted from an earlier position (token j from position j-1)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, 1:] = labels[:, 1:] != IGNORE_INDEX
    return mask


def token_logps_and_values(model, value_head: nn.Module | None, batch: dict[str, torch.Tensor]):
    """([B, L] log pi of token j given the tokens before it, [B, L] V of the state before token j or None),
    meaningful where `response_mask` holds (0 elsewhere). Only the response tokens are projected onto the
    vocabulary, in chunks (training/label_logps.py); the model's own forward where it must project them all."""
    ids, mask = batch["input_ids"], response_mask(batch["labels"])
    if is_sharded(model) or plain_projection_problem(model) is not None:
        out = model(input_ids=ids, attention_mask=batch["attention_mask"], output_hidden_states=value_head is not None)
        hidden = out.hidden_states[-1] if value_head is not None else None
        logps = token_logps(out.logits[:, :-1][mask[:, 1:]], ids[:, 1:][mask[:, 1:]])
    else:
        hidden = decoder_of(model)(input_ids=ids, attention_mask=batch["attention_mask"], use_cache=False).last_hidden_state
        logps = chunked_logps(output_head(model), hidden[:, :-1][mask[:, 1:]], ids[:, 1:][mask[:, 1:]])
    per_token = torch.zeros(ids.shape, dtype=logps.dtype, device=ids.device).masked_scatter(mask, logps)
    if value_head is None:
        return per_token, None
    assert hidden is not None  # computed whenever there is a value head
    values = F.pad(value_head(hidden[:, :-1].float()).squeeze(-1), (1, 0))
    return per_token, values


# --- rollouts -----------------------------------------------------------------------------------------

def scored_rollouts(rows: Sequence[PromptCandidates]) -> tuple[list[dict[str, Any]], int]:
    """(instruction, response, score) of every candidate with a valid score, and how many were left out."""
    out, unscored = [], 0
    for row in rows:
        for c in row.for_training():  # under the row's cut-off rule
            if math.isnan(c.score):
                unscored += 1
            else:
                out.append({"instruction": row.instruction, "response": c.text, "score": c.score,
                            "ended": c.finished is not False})
    return out, unscored


def _collate(items: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    batch = collate_examples([i["example"] for i in items], pad_id)
    if "advantages" in items[0]:
        width = batch["input_ids"].shape[1]
        for key in ("old_logps", "old_values", "advantages", "returns"):
            batch[key] = torch.zeros(len(items), width)
            for r, item in enumerate(items):
                positions = item["positions"]
                batch[key][r, positions] = torch.tensor(item[key])
    return batch


def _per_token(model, value_head: nn.Module | None, items: list[dict], pad_id: int, batch_size: int):
    """Each item's response-token log-probs and values (None without a head) under `model`, through the
    shared reference pass: evaluation mode and, under LoRA, adapters off. At the start of a fit the
    adapters are fresh (their B is zero), so for the policy itself that is the same model."""
    def per_token(m, batch):
        logps, values = token_logps_and_values(m, value_head, batch)
        return torch.stack([logps, torch.zeros_like(logps) if values is None else values], dim=1)

    rows = reference_pass(model, items, batch_size, lambda b: _collate([{"example": i["example"]} for i in b], pad_id),
                          per_token)
    return [([logps[j] for j in i["positions"]], None if value_head is None else [values[j] for j in i["positions"]])
            for i, (logps, values) in zip(items, rows)]


# --- training -----------------------------------------------------------------------------------------

class PPOModule(PolicyModule):
    def __init__(self, model, value_head: nn.Module, ptx_examples: Sequence[Any] = (), ptx_coef: float = 1.0,
                 ptx_batch_size: int = 8, clip: float = 0.2, value_clip: float = 0.2, value_coef: float = 0.5,
                 lr: float = 1e-5, min_lr: float = 1e-6, warmup_steps: int = 0, weight_decay: float = 0.0, seed: int = 0,
                 pad_id: int = 0, log_prefix: str = "ppo"):
        super().__init__(model, lr, min_lr, warmup_steps, weight_decay, log_prefix)
        self.clip, self.value_clip, self.value_coef = clip, value_clip, value_coef
        self.ptx_coef, self.ptx_batch_size = ptx_coef, ptx_batch_size
        self.value_head = value_head
        self.ptx_examples, self.pad_id = list(ptx_examples), pad_id
        self.ptx_rng = random.Random(f"ppo-ptx:{seed}")
        self.save_hyperparameters(ignore=["model", "value_head", "ptx_examples"])

    def configure_optimizers(self):
        params = list(self.model.parameters()) + list(self.value_head.parameters())
        return adamw_with_cosine(self, params, self.lr, self.min_lr, self.warmup_steps, self.weight_decay)

    def loss(self, batch):
        logps, values = token_logps_and_values(self.model, self.value_head, batch)
        mask = response_mask(batch["labels"]).to(logps.dtype)
        policy = clipped_policy_loss(logps, batch["old_logps"], batch["advantages"], mask, self.clip)
        value = clipped_value_loss(values, batch["old_values"], batch["returns"], mask, self.value_clip)
        ratio = torch.exp(logps - batch["old_logps"])
        return policy + self.value_coef * value, {
            "ppo/policy": policy, "ppo/value": value,
            "ppo/clipped_share": (((ratio - 1).abs() > self.clip).to(mask.dtype) * mask).sum() / mask.sum()}

    def weight(self, batch) -> float:
        """The policy and value losses are means over response tokens."""
        return float(response_mask(batch["labels"]).sum())

    def step_loss(self):
        """PPO-ptx: the language-model loss on a batch of IFT rows, once per step whatever the micro-batches."""
        if self.ptx_coef <= 0 or not self.ptx_examples:
            return None
        rows = self.ptx_rng.sample(self.ptx_examples, min(self.ptx_batch_size, len(self.ptx_examples)))
        ptx = {k: v.to(self.device) for k, v in collate_examples(rows, self.pad_id).items()}
        lm = self.model(input_ids=ptx["input_ids"], attention_mask=ptx["attention_mask"], labels=ptx["labels"]).loss
        return self.ptx_coef * lm, {"ppo/ptx_lm": lm}


class PPOStage(StageSettings):
    """Rollouts from candidates.jsonl; old log-probs, values, reference log-probs; GAE; PPO epochs."""

    def __init__(self, name: str = "ppo", beta: float = 0.02, reference: str = "m1", gamma: float = 1.0, lam: float = 0.95,
                 clip: float = 0.2, value_clip: float = 0.2, value_coef: float = 0.5, ptx_coef: float = 1.0,
                 ptx_batch_size: int = 8, center_rewards: bool = True, lr: float = 1e-5, min_lr: float = 1e-6,
                 warmup_steps: int = 0, epochs: int = 2, max_steps: int = -1, batch_size: int = 16,
                 max_len: int | str = "auto", micro_batch_size: int | None = None, min_examples: int = 8,
                 weight_decay: float = 0.0, replay_share: float = 0.0):
        check(self.reference_setting(reference),
              at_least(beta, 0, "beta", "set beta >= 0 (InstructGPT: 0.02)"),
              require(isinstance(gamma, (int, float)) and 0 < gamma <= 1, "gamma", f"is {gamma!r}", "set gamma in (0, 1]"),
              require(isinstance(lam, (int, float)) and 0 <= lam <= 1, "lam", f"is {lam!r}", "set lam in [0, 1]"),
              positive(clip, "clip"), positive(value_clip, "value_clip"), at_least(value_coef, 0, "value_coef"),
              at_least(ptx_coef, 0, "ptx_coef"), at_least(ptx_batch_size, 1, "ptx_batch_size"),
              *self.aift_settings(min_examples=min_examples, replay_share=replay_share),
              *self.fit_settings(lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
                                 epochs=epochs, max_steps=max_steps, batch_size=batch_size, max_len=max_len,
                                 micro_batch_size=micro_batch_size))
        self.name, self.beta, self.gamma, self.lam = name, beta, gamma, lam
        self.clip, self.value_clip, self.value_coef = clip, value_clip, value_coef
        self.ptx_coef, self.ptx_batch_size, self.center_rewards = ptx_coef, ptx_batch_size, center_rewards

    def value_head(self, model, inputs: StageInputs) -> nn.Module:
        """A linear value head on the last hidden state; the previous PPO iteration's when there is one."""
        width = model.get_input_embeddings().embedding_dim
        head = nn.Linear(width, 1).to(next(model.parameters()).device)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        previous = layout.iteration_dir(layout.job_dir_of(inputs.data_dir), inputs.iteration - 1) / VALUE_HEAD_FILE
        if previous.exists():
            head.load_state_dict(torch.load(previous, map_location=head.weight.device))
        return head

    def ptx_examples(self, inputs: StageInputs, n_rollouts: int, max_len: int) -> list:
        """As many IFT rows as the PPO-ptx batches of this fit can draw (a seeded sample, tokenized once)."""
        steps = self.max_steps if self.max_steps > 0 else self.epochs * math.ceil(n_rollouts / self.batch_size)
        rows = inputs.seed_data.ift()
        rows = random.Random(f"ppo-ptx-rows:{inputs.seed}:{inputs.iteration}").sample(
            rows, min(len(rows), steps * self.ptx_batch_size))
        return [chat_example(inputs.tokenizer, r["instruction"], r["response"], max_len, "train.max_len") for r in rows]

    def fit(self, model, inputs: StageInputs) -> dict[str, Any]:
        tok, t = inputs.tokenizer, inputs.iteration
        rows, replayed = candidates_to_train_on(inputs.data_dir, t, self.replay_share, inputs.seed)
        items, unscored = scored_rollouts(rows)
        if len(items) < self.min_examples:
            raise too_little_aift_data(inputs.data_dir, f"iteration {t}: {len(items)} scored candidates in "
                                       f"{inputs.data_dir}/candidates.jsonl ({unscored} unscored)", self.min_examples)
        max_len = sequence_budget(self.max_len, model, "train.max_len")
        for i in items:
            i["example"] = chat_example(tok, i["instruction"], i["response"], max_len, "train.max_len", ended=i["ended"])
            labels = torch.tensor(i["example"].labels)
            i["positions"] = response_mask(labels[None])[0].nonzero().squeeze(-1).tolist()
        head = self.value_head(model, inputs)
        old = _per_token(model, head, items, tok.pad_token_id, self.batch_size)
        with self.reference_model(model, inputs) as ref_model:
            ref = _per_token(ref_model, None, items, tok.pad_token_id, self.batch_size)
        mean_score = sum(i["score"] for i in items) / len(items) if self.center_rewards else 0.0
        kl = []
        for i, (old_logps, old_values), (ref_logps, _) in zip(items, old, ref):
            rewards = kl_penalized_rewards(i["score"] - mean_score, old_logps, ref_logps, self.beta)
            i["advantages"], i["returns"] = gae(rewards, old_values, self.gamma, self.lam)
            i["old_logps"], i["old_values"] = old_logps, old_values
            kl.append(sum(a - b for a, b in zip(old_logps, ref_logps)))
        flat = torch.tensor([a for i in items for a in i["advantages"]])
        mean, std = flat.mean().item(), flat.std().item() if flat.numel() > 1 else 1.0
        for i in items:  # whitened over the iteration
            i["advantages"] = [(a - mean) / (std + 1e-8) for a in i["advantages"]]
        ptx = self.ptx_examples(inputs, len(items), max_len) if self.ptx_coef > 0 else []
        # torch types DataLoader's dataset as a Dataset; a list is a map-style dataset at runtime
        loader: DataLoader[dict[str, Any]] = DataLoader(items, batch_size=self.batch_size, shuffle=True,  # type: ignore[arg-type]
                                                        generator=torch.Generator().manual_seed(t),
                                                        collate_fn=self.collate(lambda b: _collate(b, tok.pad_token_id)))
        module = PPOModule(model, head, ptx, ptx_coef=self.ptx_coef, ptx_batch_size=self.ptx_batch_size, clip=self.clip,
                           value_clip=self.value_clip, value_coef=self.value_coef, seed=inputs.seed + t,
                           pad_id=tok.pad_token_id, **self.optimizer_args())
        inputs.run_fit(module, loader, self.epochs, self.max_steps)
        head_file = inputs.data_dir / VALUE_HEAD_FILE
        if inputs.fitting:  # before the loop writes M(t): M(t) on disk always has the head it was trained with
            with atomic_named_file(head_file) as tmp:
                torch.save({k: v.detach().cpu() for k, v in head.state_dict().items()}, tmp)
        elif not head_file.exists():
            raise FileNotFoundError(f"{head_file} is missing: M{t}'s value head is trained with M{t} and cannot be "
                                    "rebuilt without training it again")
        return {"rollouts": len(items), "replayed_prompts": replayed, "unscored_candidates": unscored, "mean_score": mean_score,
                "kl_to_reference": sum(kl) / len(kl)}
