"""The seed-data interface: what every source of seed data provides, and the optional capabilities
components ask for structurally (`isinstance(seed_data, GroundTruth)`), never by option name.

A source (conf/data/*.yaml) writes its files into the job's `data/` directory in `build()`; the loop
reads them back through the methods below, so a resumed job sees exactly what the first attempt did.

Row schemas (plain dicts, as they are stored in JSONL):
  ift()                   {"instruction", "response"}
  eft_graded()            {"instruction", "response", "score", "judgment"}: a judgment ending in its score
  eft_preference_pairs()  {"instruction", "chosen", "rejected"}: for pairwise judges
  eval_rows()             {"instruction", "family"?}: held-out instructions; `family` groups per-family metrics
  judge_eval_sets()       {"instruction", "responses", "scores"}: held-out ranked sets, higher score = better
"""
from __future__ import annotations

import abc
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, TypedDict, runtime_checkable

from srlm_exp.artifacts import read_jsonl


class SeedData(abc.ABC):
    """A source of seed data. Subclasses build their files and say whether EFT data is used."""

    files: dict[str, Path]
    use_eft: bool

    @abc.abstractmethod
    def build(self, out_dir: Path) -> "SeedData":
        """Write (or, on a resumed job, find) the source's files under `out_dir`; return self."""

    @abc.abstractmethod
    def eft_graded(self) -> list[dict[str, Any]]:
        """Judge-training rows for pointwise judges ([] when EFT is off)."""

    @abc.abstractmethod
    def eft_preference_pairs(self) -> list[dict[str, Any]]:
        """Judge-training pairs for pairwise judges ([] when EFT is off)."""

    def ift(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files["ift"])

    def eval_rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files["eval"])

    def judge_eval_sets(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files["judge_eval"])

    def seed_instructions(self) -> list[str]:
        """The instructions few-shot prompt generation draws its examples from."""
        return [r["instruction"] for r in self.ift()]


# --- optional capabilities -------------------------------------------------------------------------

class Grade(Protocol):
    """A ground-truth verdict on one response."""

    score: int | float  # on the judge's scale (0-5)
    correct: bool       # the answer is exactly right
    family: str         # the kind of task (groups per-family metrics)


@runtime_checkable
class GroundTruth(Protocol):
    """Seed data with a program that grades any response (the embedded world)."""

    def grade(self, instruction: str, response: str) -> Grade | None:
        """The grade of `response`, or None when `instruction` is not one the grader knows."""


@runtime_checkable
class GradeAccuracies(Protocol):
    """Seed data with accuracies of its own over graded responses, beyond gt_score and gt_exact (IFEval's
    prompt- and instruction-level, strict and loose); they join the policy's eval metrics."""

    def accuracies(self, grades: list[Grade]) -> dict[str, float | None]:
        """{metric name: value} over `grades` (None where undefined, e.g. no graded response)."""


class JudgmentReading(TypedDict):
    """What a judgment got right before its score (JudgmentReader.read_judgment)."""

    states_answer: bool
    quotes_response: bool | None


@runtime_checkable
class JudgmentReader(Protocol):
    """Seed data that knows what its EFT judgments say before the score, and can check it (the world: the
    correct answer, then the response's answer where it is wrong)."""

    def read_judgment(self, instruction: str, response: str, judgment: str) -> JudgmentReading | None:
        """{"states_answer": bool, "quotes_response": bool | None}, or None when `instruction` is not gradable."""


@runtime_checkable
class RankedResponses(Protocol):
    """Seed data with ranked response sets to train a reward model on, apart from the held-out ones."""

    def ranked_sets(self) -> list[dict[str, Any]]:
        """Training sets: {"instruction", "responses", "scores"} (higher = better; equal scores are ties)."""


@runtime_checkable
class InstructionPool(Protocol):
    """Seed data that can draw fresh instructions of its own tasks (an unlabeled prompt set)."""

    def sample_instruction(self, rng: random.Random) -> str: ...


@runtime_checkable
class PretrainingCorpus(Protocol):
    """Seed data with a corpus to pretrain M0 on and the text its tokenizer learns from."""

    def corpus_texts(self) -> list[str]: ...

    def tokenizer_texts(self) -> list[str]: ...


@dataclass
class EFTJudgingTools:
    """What a source needs from the loop to make EFT data with a model (ModelJudgedEFT)."""

    train_ift_only: Callable[[], Path]      # SFT of M0 on IFT only (once per job); returns its directory
    load: Callable[[Path], Any]             # a saved model, ready to generate
    release: Callable[[Any], None]          # frees a loaded model
    tokenizer: Any
    judge: Any                              # the model judge (its template is what EFT teaches)
    batch_size: int
    load_m0: Callable[[], Any] | None = None  # M0 itself, ready to generate (sources whose EFT responses are M0's)


@runtime_checkable
class ModelJudgedEFT(Protocol):
    """Seed data whose EFT rows are judged by a model before M1 is trained (the paper's way, SPEC §1.1)."""

    def build_eft(self, tools: EFTJudgingTools) -> None: ...


@runtime_checkable
class ModelMadeJudgeEval(Protocol):
    """Seed data whose held-out ranked sets (judge_eval) are made from M0's own responses: the loop makes them
    before M0 is evaluated, since every model's judge metrics are taken on them (data=ifeval)."""

    def build_judge_eval(self, tools: EFTJudgingTools) -> None: ...
