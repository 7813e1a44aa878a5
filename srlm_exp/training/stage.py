"""The contract of a training stage: M(t-1) -> M(t).

A stage (conf/seed_sft/*.yaml for M1, conf/train/*.yaml for every later model) is built from its
config and gets, per iteration, the model to train and `StageInputs`. It builds its data, fits the
model through `inputs.run_fit`, writes its own files (if any) and returns what it trained on, which the loop
stores in the iteration's `training.json` before M(t) itself: a stage's outputs are one unit, and M(t)'s
directory, written last, tells a resumed job that the stage is done.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from srlm_exp import layout
from srlm_exp.checks import Problem, at_least, micro_batch_problem, require, training_problems
from srlm_exp.training.batching import in_micro_batches
from srlm_exp.training.replay import replay_share_problem

# The reference policy of the stages that have one (DPO, RLOO, PPO).
REFERENCES = ("previous", "m1")
# Below this share of parsed judgments, too little AIFT data is the judge's doing, not the sample size's.
UNPARSED_JUDGE = 0.5
MOSTLY_CUT_OFF = 0.5  # a cut-off rate from which dropping cut-off candidates is the likely cause of too little data


class TooLittleAIFTData(RuntimeError):
    """AIFT(M(t-1)) left fewer training examples than the stage's min_examples."""


def too_little_aift_data(data_dir: Path, what: str, min_examples: int, error: type = TooLittleAIFTData) -> RuntimeError:
    """The error for a stage whose AIFT data is too small (`what`: '3 valid preference pairs in ...'), with
    the fix its stats.json points to: a judge whose scores do not parse (a model that was never taught the
    judge prompt's format, e.g. data.eft=false) is not helped by more prompts."""
    fix = "generate more prompts (prompts.n_prompts) or candidates, or lower train.min_examples"
    stats_file = Path(data_dir) / layout.STATS
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    parse_rate = stats.get("generated", {}).get("parse_rate")
    generated = stats.get("generated", {})
    cut_off_rate, cut_off_rule = generated.get("cut_off_rate"), generated.get("cut_off_rule")
    if cut_off_rate is not None and cut_off_rate >= MOSTLY_CUT_OFF and cut_off_rule == "drop":
        fix = (f"{cut_off_rate:.1%} of the candidates ran out of their new-token budget ({stats_file}: "
               "generated.cut_off_rate) and callbacks.self_reward.cut_off=drop trains on none of them: raise "
               "callbacks.self_reward.max_new_tokens, or train on them (callbacks.self_reward.cut_off=penalty or keep)")
    if parse_rate is not None and parse_rate < UNPARSED_JUDGE:
        fix = (f"the judge's score parsed in only {parse_rate:.1%} of its judgments ({stats_file}: "
               "generated.parse_rate), so more prompts will not help: teach the model the judge prompt's format "
               "(EFT: data.eft=true, more EFT rows), or score without it (judge=oracle where the data has ground "
               "truth, or judge.model_path=<a model that judges>)")
    return error(f"{what}, fewer than train.min_examples={min_examples} (see {stats_file} for prompts, ties and "
                 f"parse failures); {fix}")


@dataclass
class StageInputs:
    tokenizer: Any
    iteration: int                 # t: the stage trains M(t)
    seed: int
    data_dir: Path                 # iteration_t/: AIFT(M(t-1)) for t >= 2 (pairs.jsonl, candidates.jsonl)
    seed_data: Any                 # the SeedData of the run
    judge: Any                     # the model judge: M1 learns its format (EFT)
    run_fit: Callable[..., Any]    # run_fit(module, loader, epochs, max_steps): one Lightning fit
    load_model: Callable[[int], Any]     # M(k) for k < t, ready to use (e.g. DPO's fixed-M1 reference)
    release: Callable[[Any], None]       # frees a model from load_model
    meta_judge: Any = None               # the MetaJudge (meta_judge=...): M1 also learns its format
    # False when a resumed job rebuilds the record of an M(t) already on disk (loop.rebuild_training_record):
    # run_fit trains nothing, and the stage writes none of its files (they belong to the M(t) that was trained).
    fitting: bool = True


class TrainStage(Protocol):
    def fit(self, model, inputs: StageInputs) -> dict[str, Any]:
        """Train `model` (M(t-1), trainable) into M(t); return counts of what it trained on."""


class StageSettings:
    """The settings every stage is configured with (conf/seed_sft, conf/train/*.yaml), checked and stored in
    one place; each stage's constructor names them (Hydra passes them by name) and hands them here."""

    # Trains on a meta-judge's judge pairs (judge_pairs.jsonl) beside the policy's pairs: DPO only.
    trains_on_judge_pairs = False

    def fit_settings(self, *, lr: float, min_lr: float, warmup_steps: int, weight_decay: float, epochs: int,
                     max_steps: int, batch_size: int, max_len: int | str,
                     micro_batch_size: int | None = None) -> list[Problem | None]:
        """Optimizer, schedule and batches; the problems with them."""
        self.lr, self.min_lr, self.warmup_steps, self.weight_decay = lr, min_lr, warmup_steps, weight_decay
        self.epochs, self.max_steps, self.batch_size, self.max_len = epochs, max_steps, batch_size, max_len
        self.micro_batch_size = micro_batch_size
        return [*training_problems(lr, min_lr, warmup_steps, epochs, max_steps, batch_size, max_len),
                at_least(weight_decay, 0, "weight_decay"), micro_batch_problem(micro_batch_size, batch_size)]

    def collate(self, collate: Callable[[list], Any]) -> Callable[[list], Any]:
        """The DataLoader's collate function: `collate` per batch, or per micro-batch (micro_batch_size)."""
        return in_micro_batches(collate, self.micro_batch_size)

    def aift_settings(self, *, min_examples: int, replay_share: float) -> list[Problem | None]:
        """For the stages of M(t >= 2), which train on AIFT(M(t-1)): how little is too little, replay."""
        self.min_examples, self.replay_share = min_examples, replay_share
        return [at_least(min_examples, 1, "min_examples"), replay_share_problem(replay_share)]

    def reference_setting(self, reference: str) -> Problem | None:
        self.reference = reference
        return require(reference in REFERENCES, "reference", f"is {reference!r}",
                       "choose previous (M(t-1), the model being trained, as in the paper) or m1 (a fixed M1, "
                       "InstructGPT's SFT model)")

    def optimizer_args(self) -> dict[str, Any]:
        """What the stage's Lightning module takes for its optimizer (training/base.py)."""
        return dict(lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps, weight_decay=self.weight_decay)

    @contextmanager
    def reference_model(self, model, inputs: StageInputs) -> Iterator[Any]:
        """The reference policy for the passes before the fit: `model` itself (M(t-1); under LoRA its adapters
        are turned off by `reference_pass`), or M1 loaded for them and released after, so that one model is in
        memory while fitting. At t = 2, M(t-1) is M1: nothing is loaded."""
        ref = model if self.reference == "previous" or inputs.iteration == 2 else inputs.load_model(1)
        try:
            yield ref
        finally:
            if ref is not model:
                inputs.release(ref)
