"""A trained reward model as the judge (InstructGPT): a scalar head on a causal-LM backbone, trained
once, before the loop's first judging, on ranked response sets, then frozen (or, with
`retrain_each_iteration`, trained further before each later iteration on the previous AIFT candidates
ranked by the world's grader, the analogue of InstructGPT's new comparisons).

Training follows InstructGPT: all C(K,2) pairs of one prompt's K ranked responses are in the same batch
(ties dropped), each response forwarded once, and the loss is -mean log sigmoid(r_w - r_l) over the
pairs. The backbone starts from M1 (or M0, `init`); the reward is the head applied to the last layer's
hidden state at the response's last token (EOS). The model directory keeps the backbone as a plain
Hugging Face model and the head beside it (`reward_head.pt`), so the backbone loads like any M(t).

Its quality on the held-out ranked sets is reported with the same Table-4 metrics as the model-as-judge
(`quality.json` in the reward model's directory, the log, and `judge_report` in stats and the summary).
It is trained by a plain optimisation loop on rank 0 (once, before it is frozen; the other ranks wait
and load it), not by a Lightning fit. The policy is still trained (EFT) and
evaluated as a judge with the prompt this option extends.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from srlm_exp import distributed
from srlm_exp import layout
from srlm_exp.artifacts import atomic_path, read_jsonl, write_json
from srlm_exp.chat import chat_example
from srlm_exp.checks import at_least, check, positive, require
from srlm_exp.data.seed_data import GroundTruth, RankedResponses
from srlm_exp.evaluation.metrics import judge_metrics
from srlm_exp.judging.judge import Judge
from srlm_exp.judging.records import Judgment
from srlm_exp.models.context import sequence_budget
from srlm_exp.models.loading import is_model_dir, load_model, release
from srlm_exp.training.batching import collate_examples

log = logging.getLogger(__name__)
INITS = ("m0", "m1")
HEAD_FILE = "reward_head.pt"
QUALITY_FILE = "quality.json"  # held-out ranking quality, beside the head


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
    losers = torch.tensor([l for _, l in pairs], device=rewards.device)
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

    def save(self, out_dir: Path, tokenizer) -> None:
        with atomic_path(out_dir) as tmp:
            self.backbone.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            torch.save(self.head.state_dict(), tmp / HEAD_FILE)

    @classmethod
    def load(cls, path: Path, tokenizer, device) -> "RewardModel":
        model = cls(load_model(path, tokenizer).to(device))
        model.head.load_state_dict(torch.load(path / HEAD_FILE, map_location=device))
        return model.eval()


class RewardModelJudge(Judge):
    uses_model = False  # scores without generating; the policy is evaluated with the prompt this extends
    requires: ClassVar[tuple[type, ...]] = (RankedResponses,)

    def __init__(self, *args, ranked_data: RankedResponses, init: str = "m1", lr: float = 1e-4, epochs: int = 1,
                 sets_per_batch: int = 16, retrain_each_iteration: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        check(require(init in INITS, "init", f"is {init!r}", f"choose one of {', '.join(INITS)} (the backbone's start)"),
              positive(lr, "lr"), at_least(epochs, 1, "epochs"), at_least(sets_per_batch, 1, "sets_per_batch"),
              require(not retrain_each_iteration or isinstance(ranked_data, GroundTruth), "retrain_each_iteration",
                      "needs seed data that grades the new candidates (a GroundTruth grader)",
                      "set retrain_each_iteration=false, or use data=world"))
        self.retrain_each_iteration = bool(retrain_each_iteration)
        self.last_quality: dict | None = None
        self.ranked_data, self.init, self.lr, self.epochs, self.sets_per_batch = ranked_data, init, lr, epochs, sets_per_batch

    def loop_report(self) -> dict | None:
        """The held-out Table-4 metrics of the reward model that judged (into stats and the summary)."""
        return {"reward_model_quality": self.last_quality} if self.last_quality else None

    def judge(self, model, tokenizer, instructions, candidates, batch_size: int = 32, desc: str = "judge"):
        raise TypeError(f"judge={self.name} scores with its trained reward model: it judges only in the loop (judge_in_loop)")

    # --- training (once per job, before the first judging) ---------------------------------------
    def _examples(self, tokenizer, sets: Sequence[dict], max_len: int):
        rows = []
        for g, s in enumerate(sets):
            for response, score in zip(s["responses"], s["scores"]):
                rows.append((chat_example(tokenizer, s["instruction"], response, max_len, "judge"), g, float(score)))
        return rows

    def train(self, models) -> Path:
        """Train the reward model into `<run>/reward_model` (read back when it exists); return its directory."""
        out = models.run_dir / "reward_model"
        if not is_model_dir(out):
            backbone = models.load(0 if self.init == "m0" else 1)
            self._fit(RewardModel(backbone), models.tokenizer, self.ranked_data.ranked_sets(), out,
                      f"from {self.init.upper()} on the seed data's ranked sets")
        return out

    def retrain(self, models, iteration: int, previous: Path) -> Path:
        """The reward model of AIFT(M(t)), t = `iteration` >= 2: the previous one trained further on
        AIFT(M(t-1))'s candidates, ranked by the grader (InstructGPT's new comparisons on the current
        policy's samples); into `iteration_{t+1}/reward_model` (read back when it exists)."""
        out = layout.iteration_dir(models.run_dir, iteration + 1) / layout.REWARD_MODEL
        if not is_model_dir(out):
            sets = []
            for row in read_jsonl(layout.iteration_dir(models.run_dir, iteration) / layout.CANDIDATES):
                graded = [c for c in row["candidates"] if c.get("gt_score") is not None]
                sets.append({"instruction": row["instruction"], "responses": [c["text"] for c in graded],
                             "scores": [c["gt_score"] for c in graded]})
            self._fit(RewardModel.load(previous, models.tokenizer, models.device), models.tokenizer, sets, out,
                      f"from the reward model of AIFT(M{iteration - 1}) on its grader-ranked candidates")
        return out

    def _fit(self, reward_model: "RewardModel", tokenizer, sets: Sequence[dict], out: Path, what: str) -> None:
        """Train on the differently-ranked sets (all C(K,2) pairs of a set in its batch), report the held-out
        quality, save to `out`, and free the model."""
        sets = [s for s in sets if len(set(s["scores"])) > 1]
        if not sets:
            raise ValueError(f"reward model {what}: every ranked set is a tie (or has < 2 responses): nothing to train on")
        reward_model.train()
        max_len = sequence_budget("auto", reward_model.backbone, "judge")
        optimizer = torch.optim.AdamW(reward_model.parameters(), lr=self.lr)
        device = next(reward_model.parameters()).device
        order = list(range(len(sets)))
        rng, losses = random.Random(f"reward-model:{what}"), []
        for _ in range(self.epochs):
            rng.shuffle(order)
            for s in range(0, len(order), self.sets_per_batch):
                rows = self._examples(tokenizer, [sets[i] for i in order[s : s + self.sets_per_batch]], max_len)
                batch = {k: v.to(device) for k, v in collate_examples([r[0] for r in rows], tokenizer.pad_token_id).items()}
                loss = ranked_pair_loss(reward_model(batch["input_ids"], batch["attention_mask"]),
                                        [r[1] for r in rows], [r[2] for r in rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
        reward_model.eval()
        quality = self._quality(reward_model, tokenizer, max_len)
        quality.update(steps=len(losses), sets=len(sets), first_loss=losses[0],
                       last_loss=sum(losses[-20:]) / len(losses[-20:]))
        log.info("reward model %s: %d steps on %d sets; held-out %s", what, len(losses), len(sets),
                 {k: quality.get(k) for k in ("pairwise_acc", "spearman")})
        reward_model.save(out, tokenizer)
        write_json(out / QUALITY_FILE, quality)
        release(reward_model)

    @torch.no_grad()
    def _rewards(self, reward_model: RewardModel, examples, pad_id: int, batch_size: int = 64) -> list[float]:
        device = next(reward_model.parameters()).device
        out: list[float] = []
        for s in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate_examples(examples[s : s + batch_size], pad_id).items()}
            out += reward_model(batch["input_ids"], batch["attention_mask"]).cpu().tolist()
        return out

    def _quality(self, reward_model: RewardModel, tokenizer, max_len: int) -> dict:
        """Table-4 metrics of the reward model on the held-out ranked sets (never trained on)."""
        sets = self.ranked_data.judge_eval_sets()
        flat = [chat_example(tokenizer, s["instruction"], r, max_len, "judge") for s in sets for r in s["responses"]]
        rewards, predicted, k = self._rewards(reward_model, flat, tokenizer.pad_token_id), [], 0
        for s in sets:
            predicted.append(rewards[k : k + len(s["responses"])])
            k += len(s["responses"])
        return judge_metrics(predicted, [s["scores"] for s in sets], top_score=float("inf"))

    # --- judging ---------------------------------------------------------------------------------
    def judge_in_loop(self, policy, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
                      models, iteration: int, batch_size: int = 32) -> list[list[Judgment]]:
        path = distributed.share_from_main(lambda: self.train(models))
        if self.retrain_each_iteration and iteration >= 2:
            for t in range(2, iteration + 1):  # each iteration's model from the one before (read back on resume)
                path = distributed.share_from_main(lambda: self.retrain(models, t, Path(path)))
        self.last_quality = json.loads((Path(path) / QUALITY_FILE).read_text())
        reward_model = RewardModel.load(Path(path), tokenizer, next(policy.parameters()).device)
        try:
            max_len = sequence_budget("auto", policy, "judge")
            jobs = [(p, c) for p, cands in enumerate(candidates) for c in range(len(cands))]
            rewards = self._rewards(reward_model, [chat_example(tokenizer, instructions[p], candidates[p][c], max_len, "judge")
                                                   for p, c in jobs], tokenizer.pad_token_id, batch_size)
        finally:
            models.release(reward_model)
        out: list[list[Judgment]] = [[Judgment() for _ in cands] for cands in candidates]
        for (p, c), r in zip(jobs, rewards):
            out[p][c].add(f"reward model: {self.score_marker} {r:.4f}", r)
        return out
