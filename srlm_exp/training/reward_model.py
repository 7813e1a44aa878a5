"""The reward model of `judge=reward_model` (judging/reward_model.py): a scalar head on a causal-LM backbone,
its InstructGPT loss and its fit.

All C(K,2) pairs of one prompt's K ranked responses are in the same batch (ties dropped), each response is
forwarded once, and the loss is -mean log sigmoid(r_w - r_l) over the pairs. The reward is the head applied to
the last layer's hidden state at the response's last token (EOS). The model directory keeps the backbone as a
plain Hugging Face model and the head beside it (`reward_head.pt`), so the backbone loads like any M(t).
A plain optimisation loop, not a Lightning fit: it runs on rank 0 once, before the model is frozen.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from srlm_exp.artifacts import atomic_path, write_json
from srlm_exp.chat import chat_example
from srlm_exp.models.loading import load_model
from srlm_exp.training.batching import collate_examples

HEAD_FILE = "reward_head.pt"


def ranked_pairs(groups: Sequence[int], scores: Sequence[float]) -> list[tuple[int, int]]:
    """(winner, loser) indices of every pair of rows of the same group with different scores."""
    n = len(groups)
    return [(i, j) for i in range(n) for j in range(n) if groups[i] == groups[j] and scores[i] > scores[j]]


def ranked_pair_loss(rewards: torch.Tensor, groups: Sequence[int], scores: Sequence[float]) -> torch.Tensor:
    """-mean log sigmoid(r_w - r_l) over every differently-ranked pair within a group (ties dropped)."""
    pairs = ranked_pairs(groups, scores)
    if not pairs:
        raise ValueError("no differently-ranked pair in the batch: every group is a tie")
    winners = torch.tensor([w for w, _ in pairs], device=rewards.device)
    losers = torch.tensor([loser for _, loser in pairs], device=rewards.device)
    return -F.logsigmoid(rewards[winners] - rewards[losers]).mean()


class RewardModel(nn.Module):
    """A causal LM's last hidden state at the last real token, through a linear head, as one number."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        width = backbone.get_input_embeddings().embedding_dim
        self.head = nn.Linear(width, 1)
        nn.init.normal_(self.head.weight, std=1.0 / (width + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        self.head.to(next(backbone.parameters()).device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               output_hidden_states=True).hidden_states[-1]
        last = attention_mask.sum(dim=1) - 1  # rows are right-padded
        return self.head(hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()).squeeze(-1)

    def save(self, out_dir: Path, tokenizer, beside: dict[str, Any] | None = None) -> None:
        """The backbone, its tokenizer, the head and `beside` ({file name: JSON}, e.g. its quality) in one
        directory, written at once: a resumed job that finds the directory reads all of them back."""
        with atomic_path(out_dir) as tmp:
            self.backbone.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            torch.save(self.head.state_dict(), tmp / HEAD_FILE)
            for name, obj in (beside or {}).items():
                write_json(tmp / name, obj)

    @classmethod
    def load(cls, path: Path, tokenizer, device) -> "RewardModel":
        model = cls(load_model(path, tokenizer).to(device))
        model.head.load_state_dict(torch.load(path / HEAD_FILE, map_location=device))
        return model.eval()


def ranked_examples(tokenizer, sets: Sequence[dict], max_len: int) -> list[tuple]:
    """(chat example, set index, score) for every response of every ranked set."""
    rows = []
    for g, s in enumerate(sets):
        for response, score in zip(s["responses"], s["scores"]):
            rows.append((chat_example(tokenizer, s["instruction"], response, max_len, "judge"), g, float(score)))
    return rows


def fit_reward_model(reward_model: RewardModel, tokenizer, sets: Sequence[dict], max_len: int, lr: float, epochs: int,
                     sets_per_batch: int, rng: random.Random) -> list[float]:
    """Train on ranked sets (`sets_per_batch` whole sets per step, AdamW at `lr`); the loss of every step. The
    model is left in evaluation mode."""
    reward_model.train()
    optimizer = torch.optim.AdamW(reward_model.parameters(), lr=lr)
    device = next(reward_model.parameters()).device
    order, losses = list(range(len(sets))), []
    for _ in range(epochs):
        rng.shuffle(order)
        for s in range(0, len(order), sets_per_batch):
            rows = ranked_examples(tokenizer, [sets[i] for i in order[s : s + sets_per_batch]], max_len)
            batch = {k: v.to(device) for k, v in collate_examples([r[0] for r in rows], tokenizer.pad_token_id).items()}
            loss = ranked_pair_loss(reward_model(batch["input_ids"], batch["attention_mask"]),
                                    [r[1] for r in rows], [r[2] for r in rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    reward_model.eval()
    return losses
