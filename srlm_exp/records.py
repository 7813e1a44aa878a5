"""What judging produces, as typed records with one JSON codec: a candidate's judgments and its score,
and one prompt's judged candidates (a row of candidates.jsonl).

One rule for a score everywhere: a candidate's score is the mean of its valid judgments; a judgment
whose verdict did not parse is missing (NaN), never a number (SPEC §3), and a candidate with no valid
judgment has no score. NaN exists only in memory: JSON holds null.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence


def mean_of_valid(scores: Sequence[float]) -> float:
    """The mean of the scores that are not NaN; NaN when there are none."""
    valid = [s for s in scores if not math.isnan(s)]
    return sum(valid) / len(valid) if valid else math.nan


def mean_or_none(values: Sequence[float]) -> float | None:
    """`mean_of_valid` for statistics written to JSON: None, not NaN, when no value is valid."""
    mean = mean_of_valid(values)
    return None if math.isnan(mean) else mean


def _to_json_number(x: float) -> float | None:
    return None if math.isnan(x) else x


def _from_json_number(x: float | None) -> float:
    return math.nan if x is None else float(x)


@dataclass
class CandidateJudgments:
    """All judgments of one candidate: each raw text with the score parsed from it (NaN = missing)."""

    texts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.scores):
            raise ValueError(f"a CandidateJudgments needs one score per text, got {len(self.texts)} texts and "
                             f"{len(self.scores)} scores")

    def add(self, text: str, score: float) -> None:
        self.texts.append(text)
        self.scores.append(score)

    @property
    def score(self) -> float:
        return mean_of_valid(self.scores)


def parse_rate(judgments: Iterable[CandidateJudgments]) -> float:
    """Share of individual judgments whose verdict parsed (0 when there are none)."""
    scores = [s for j in judgments for s in j.scores]
    return sum(not math.isnan(s) for s in scores) / max(1, len(scores))


@dataclass
class JudgedCandidate:
    """One sampled response, its token length, its judgments and, where the seed data has a grader,
    its ground-truth score (None for an ungradable instruction)."""

    text: str
    length: int
    judgment: CandidateJudgments
    graded: bool = False          # whether the seed data has a grader (then `gt_score`, `gt_correct` are written)
    gt_score: float | None = None
    gt_correct: bool | None = None
    source: str = "policy"        # which model sampled it: the policy M(t), or a candidate model's path
    finished: bool | None = None  # ended within its new-token budget (None: not recorded, older files)

    @property
    def score(self) -> float:
        return self.judgment.score

    def to_json(self) -> dict[str, Any]:
        row = {"text": self.text, "source": self.source, "length": self.length, "judgments": list(self.judgment.texts),
               "judgment_scores": [_to_json_number(s) for s in self.judgment.scores],
               "score": _to_json_number(self.score)}
        if self.graded:
            row["gt_score"], row["gt_correct"] = self.gt_score, self.gt_correct
        if self.finished is not None:
            row["finished"] = self.finished
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "JudgedCandidate":
        judgment = CandidateJudgments(list(row["judgments"]), [_from_json_number(s) for s in row["judgment_scores"]])
        return cls(row["text"], int(row["length"]), judgment, graded="gt_score" in row, gt_score=row.get("gt_score"),
                   gt_correct=row.get("gt_correct"), source=row.get("source", "policy"), finished=row.get("finished"))

    @property
    def cut_off(self) -> bool:
        """Known to have been cut off by its new-token budget."""
        return self.finished is False


CUT_OFF_RULES = ("drop", "penalty", "keep")


@dataclass(frozen=True)
class CutOffRule:
    """What training does with a candidate cut off by its new-token budget (TRL: `missing_eos_penalty`).

    drop:    it is left out of training altogether: no side of a pair, no SFT target, no rollout;
    penalty: its score is lowered by `penalty` before pairs, targets or rewards are made, and it is never
             a pair's chosen side or an SFT target (a pair that would choose it is dropped);
    keep:    it is trained on like a finished answer (the behaviour before cut-offs were recorded).
    Whatever the rule, a cut-off answer is never taught to end (chat.chat_example(ended=False))."""

    rule: str = "drop"
    penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.rule not in CUT_OFF_RULES:
            raise ValueError(f"cut-off rule {self.rule!r} is not one of {', '.join(CUT_OFF_RULES)}")

    def apply(self, candidates: Sequence[JudgedCandidate]) -> list[JudgedCandidate]:
        if self.rule == "drop":
            return [c for c in candidates if not c.cut_off]
        if self.rule == "keep":
            return list(candidates)
        return [c if not c.cut_off else JudgedCandidate(
            c.text, c.length, CandidateJudgments(list(c.judgment.texts), [s - self.penalty for s in c.judgment.scores]),
            c.graded, c.gt_score, c.gt_correct, c.source, c.finished) for c in candidates]

    def may_be_chosen(self, candidate: JudgedCandidate) -> bool:
        return self.rule == "keep" or not candidate.cut_off

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "penalty": self.penalty}


@dataclass
class PromptCandidates:
    """One prompt and its judged candidates (a row of candidates.jsonl); `family` is the task family of a
    prompt the seed data's grader knows (None when it cannot grade it, absent without a grader)."""

    prompt_id: int
    instruction: str
    candidates: list[JudgedCandidate]
    family: str | None = None
    cut_off: CutOffRule | None = None  # how its cut-off candidates are trained on (None: as finished ones)

    @property
    def parse_rate(self) -> float:
        return parse_rate(c.judgment for c in self.candidates)

    @property
    def graded(self) -> bool:
        return any(c.graded for c in self.candidates)

    def to_json(self) -> dict[str, Any]:
        row = {"prompt_id": self.prompt_id, "instruction": self.instruction,
               "candidates": [c.to_json() for c in self.candidates], "judge_parse_rate": self.parse_rate}
        if self.graded:
            row["family"] = self.family
        if self.cut_off is not None:
            row["cut_off"] = self.cut_off.to_json()
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "PromptCandidates":
        rule = CutOffRule(**row["cut_off"]) if row.get("cut_off") is not None else None
        return cls(int(row["prompt_id"]), row["instruction"], [JudgedCandidate.from_json(c) for c in row["candidates"]],
                   row.get("family"), rule)

    def for_training(self) -> list[JudgedCandidate]:
        """The candidates that training may use, as training sees them, under the row's cut-off rule."""
        return self.candidates if self.cut_off is None else self.cut_off.apply(self.candidates)

    @property
    def cut_off_rate(self) -> float | None:
        known = [c.finished for c in self.candidates if c.finished is not None]
        return None if not known else sum(not f for f in known) / len(known)


def merge_identical(candidates: Sequence[JudgedCandidate]) -> list[JudgedCandidate]:
    """One candidate per distinct text, in first-seen order, with the judgments of its copies pooled.

    A small model often samples the same answer twice, and K sampled judgments can score the copies
    apart; merging them keeps a pair from having chosen == rejected text."""
    merged: dict[str, JudgedCandidate] = {}
    for c in candidates:
        m = merged.get(c.text)
        if m is None:
            merged[c.text] = JudgedCandidate(c.text, c.length,
                                             CandidateJudgments(list(c.judgment.texts), list(c.judgment.scores)),
                                             c.graded, c.gt_score, c.gt_correct, c.source, c.finished)
        else:
            m.judgment = CandidateJudgments(m.judgment.texts + c.judgment.texts, m.judgment.scores + c.judgment.scores)
            if m.finished is not None and c.finished is not None:
                m.finished = m.finished and c.finished  # the same text cut once is a cut text
    return list(merged.values())
