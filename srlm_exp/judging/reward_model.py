"""A trained reward model as the judge (InstructGPT): a scalar head on a causal-LM backbone, trained
once, before the loop's first judging, on ranked response sets, then frozen (or, with
`retrain_each_iteration`, trained further before each later iteration on the previous AIFT candidates
ranked by the world's grader, the analogue of InstructGPT's new comparisons).

The backbone starts from M1 (or M0, `init`); the network, its loss (InstructGPT's, over every differently-
ranked pair of a set) and its fit are `training/reward_model.py`.

Its quality on the held-out ranked sets is reported with the same Table-4 metrics as the model-as-judge
(`quality.json` in the reward model's directory, the log, and `judge_report` in stats and the summary).
It is trained on rank 0 (once, before it is frozen; the other ranks wait and load it). The policy is still
trained (EFT) and evaluated as a judge with the prompt this option extends.
"""
from __future__ import annotations

import json
import logging
import random
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence

import torch

from srlm_exp import distributed
from srlm_exp import layout
from srlm_exp.artifacts import read_jsonl
from srlm_exp.chat import chat_example
from srlm_exp.checks import at_least, check, positive, require
from srlm_exp.data.seed_data import GroundTruth, RankedResponses
from srlm_exp.evaluation.metrics import judge_metrics
from srlm_exp.judging.judge import ScorerWithJudgePrompt
from srlm_exp.judging.scorer import flat_candidates, regrouped
from srlm_exp.models.context import sequence_budget
from srlm_exp.models.loading import is_model_dir, release
from srlm_exp.records import CandidateJudgments
from srlm_exp.training.batching import collate_examples
from srlm_exp.training.reward_model import RewardModel, fit_reward_model

log = logging.getLogger(__name__)
INITS = ("m0", "m1")
QUALITY_FILE = "quality.json"  # held-out ranking quality, beside the head


class _RankedSeedData(RankedResponses, Protocol):
    """Seed data (a SeedData) with ranked sets: its held-out judge-eval sets measure the reward model."""

    def judge_eval_sets(self) -> list[dict[str, Any]]: ...


class RewardModelJudge(ScorerWithJudgePrompt):
    """Scores in the loop only, with its trained reward model; the policy is evaluated with the prompt this extends."""

    requires: ClassVar[tuple[type, ...]] = (RankedResponses,)

    def __init__(self, *args, ranked_data: _RankedSeedData, init: str = "m1", lr: float = 1e-4, epochs: int = 1,
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

    # --- training (once per job, before the first judging) ---------------------------------------
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

    def _fit(self, reward_model: RewardModel, tokenizer, sets: Sequence[dict], out: Path, what: str) -> None:
        """Train on the differently-ranked sets (training/reward_model.py), report the held-out quality, save to
        `out`, and free the model."""
        sets = [s for s in sets if len(set(s["scores"])) > 1]
        if not sets:
            raise ValueError(f"reward model {what}: every ranked set is a tie (or has < 2 responses): nothing to train on")
        max_len = sequence_budget("auto", reward_model.backbone, "judge")
        losses = fit_reward_model(reward_model, tokenizer, sets, max_len, self.lr, self.epochs, self.sets_per_batch,
                                  random.Random(f"reward-model:{what}"))
        quality = self._quality(reward_model, tokenizer, max_len)
        quality.update(steps=len(losses), sets=len(sets), first_loss=losses[0],
                       last_loss=sum(losses[-20:]) / len(losses[-20:]))
        log.info("reward model %s: %d steps on %d sets; held-out %s", what, len(losses), len(sets),
                 {k: quality.get(k) for k in ("pairwise_acc", "spearman")})
        reward_model.save(out, tokenizer, {QUALITY_FILE: quality})  # one unit: a rerun that finds it finds both
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
                      models, iteration: int, batch_size: int = 32) -> list[list[CandidateJudgments]]:
        path = distributed.share_from_main(lambda: self.train(models))
        if self.retrain_each_iteration and iteration >= 2:
            for t in range(2, iteration + 1):  # each iteration's model from the one before (read back on resume)
                path = distributed.share_from_main(partial(self.retrain, models, t, Path(path)))
        self.last_quality = json.loads((Path(path) / QUALITY_FILE).read_text())
        reward_model = RewardModel.load(Path(path), tokenizer, next(policy.parameters()).device)
        try:
            max_len = sequence_budget("auto", policy, "judge")
            rewards = self._rewards(reward_model, [chat_example(tokenizer, i, c, max_len, "judge")
                                                   for i, c in flat_candidates(instructions, candidates)],
                                    tokenizer.pad_token_id, batch_size)
        finally:
            models.release(reward_model)
        return regrouped(candidates, [[(f"reward model: {self.score_marker} {r:.4f}", r)] for r in rewards])
