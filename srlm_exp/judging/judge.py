"""LLM-as-a-Judge: one class renders and parses for every pointwise judge prompt.

A judge option (conf/judge/*.yaml) is data: its template, score range and parser settings.
Scores are parsed from the judgment's new tokens only; an unparseable or out-of-range judgment
is missing (NaN), never a number, and a candidate's score is the mean of its valid judgments.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

from srlm_exp.generation.sampler import Sampling, chat_prompt, generate
from srlm_exp.judging.parsing import parse_score


class JudgeTemplateError(ValueError):
    pass


@dataclass
class Judgment:
    """All judgments of one candidate: raw texts, parsed scores (NaN = missing) and their mean."""

    texts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def score(self) -> float:
        valid = [s for s in self.scores if not math.isnan(s)]
        return sum(valid) / len(valid) if valid else math.nan

    def to_dict(self) -> dict:
        return {"judgments": self.texts, "judgment_scores": [None if math.isnan(s) else s for s in self.scores],
                "score": None if math.isnan(self.score) else self.score}


class Judge:
    """A pointwise judge: fills the template with (instruction, response), samples K judgments."""

    required_placeholders: tuple[str, ...] = ("<INSTRUCTION_HERE>", "<RESPONSE_HERE>")
    uses_model = True

    def __init__(
        self,
        name: str,
        template: str,
        score_pattern: str = r"Score:\s*",
        score_range: Sequence[float] = (0, 5),
        num_judgments: int = 3,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_new_tokens: int = 40,
    ):
        missing = [p for p in self.required_placeholders if p not in template]
        if missing:
            raise JudgeTemplateError(
                f"judge '{name}': template lacks the placeholder(s) {missing}; a judge template must contain "
                f"{list(self.required_placeholders)} where the instruction and response(s) go"
            )
        if num_judgments < 1:
            raise ValueError(f"judge '{name}': num_judgments must be >= 1, got {num_judgments}")
        self.name = name
        self.template = template
        self.score_pattern = score_pattern
        self.low, self.high = float(score_range[0]), float(score_range[1])
        self.num_judgments = num_judgments
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)

    # --- rendering -------------------------------------------------------------------------
    def render(self, instruction: str, response: str) -> str:
        # Substitute the response last so text inside the instruction cannot inject a placeholder.
        return self.template.replace("<INSTRUCTION_HERE>", instruction).replace("<RESPONSE_HERE>", response)

    def parse(self, judgment: str) -> float:
        return parse_score(judgment, pattern=self.score_pattern, low=self.low, high=self.high)

    def target(self, judgment: str, score: float) -> str:
        """An EFT target: the justification with its final score clipped into this judge's range."""
        k = int(min(self.high, max(self.low, round(score))))
        body = re.sub(r"\s*Score:\s*\S+\s*$", "", judgment.strip())
        return f"{body} Score: {k}"

    def eft_rows(self, seed_data) -> list[dict]:
        """Judge-format training rows (instruction = filled judge prompt, response = judgment)."""
        return [
            {"instruction": self.render(r["instruction"], r["response"]), "response": self.target(r["judgment"], r["score"])}
            for r in seed_data.eft_graded()
        ]

    # --- judging ---------------------------------------------------------------------------
    def judge(self, model, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
              batch_size: int = 32, desc: str = "judge") -> list[list[Judgment]]:
        """Judge every candidate of every instruction K times in batched generation."""
        jobs = [(p, c) for p, cands in enumerate(candidates) for c in range(len(cands))]
        prompts = []
        for p, c in jobs:
            ids = chat_prompt(tokenizer, self.render(instructions[p], candidates[p][c]))
            prompts.extend([ids] * self.num_judgments)
        texts = generate(model, tokenizer, prompts, self.sampling, batch_size=batch_size, desc=desc)
        out = [[Judgment() for _ in cands] for cands in candidates]
        for j, (p, c) in enumerate(jobs):
            for t in texts[j * self.num_judgments : (j + 1) * self.num_judgments]:
                out[p][c].texts.append(t)
                out[p][c].scores.append(self.parse(t))
        return out

    def model_judge(self) -> "Judge":
        """The judge with which the model itself is trained (EFT) and evaluated as a judge."""
        return self

    def parse_rate_of(self, judgments: Sequence[Judgment]) -> float:
        """Share of individual judgments whose score parsed."""
        scores = [s for j in judgments for s in j.scores]
        return sum(not math.isnan(s) for s in scores) / max(1, len(scores))
