"""RLAIF-style pairwise judge: "which of two responses is better", asked in both orders to cancel
position bias. Each order's verdict is one judgment of each of the two candidates: 5 for the one it
prefers, 0 for the other, missing (NaN) when it did not parse. A candidate's score is then the mean
of its valid judgments, like every judge's (records.py): its share of wins against the
prompt's other candidates scaled to 0-5, a disagreement between the two orders counting as a tie."""
from __future__ import annotations

import math
import random
import re
from typing import Sequence

from srlm_exp.chat import prompt_ids
from srlm_exp.inference.sampler import sample
from srlm_exp.judging.judge import Judge
from srlm_exp.judging.parsing import parse_preference
from srlm_exp.records import CandidateJudgments

SCALE = 5.0


def both_order_outcome(first: str | None, second: str | None) -> int:
    """+1 if candidate i won both orders (A in (i, j), B in (j, i)), -1 if j did, 0 otherwise (tie)."""
    if first == "A" and second == "B":
        return 1
    if first == "B" and second == "A":
        return -1
    return 0


def verdict_scores(preference: str | None, first_is_a: bool) -> tuple[float, float]:
    """One order's verdict as the scores of the pair's (first, second) candidate, where the first was
    shown as response A when `first_is_a`: (5, 0) if the first was preferred, (0, 5) if the second,
    (NaN, NaN) when the verdict did not parse."""
    if preference is None:
        return math.nan, math.nan
    first_won = (preference == "A") == first_is_a
    return (SCALE, 0.0) if first_won else (0.0, SCALE)


class PairwiseJudge(Judge):
    required_placeholders = ("<INSTRUCTION_HERE>", "<RESPONSE_A_HERE>", "<RESPONSE_B_HERE>")
    writes_seed_judgments = False  # "Response A answers the question better.": no answer to read back
    pointwise_judgments = False    # a preference between two candidates, not a judgment of one

    def __init__(self, name: str, template: str, preference_marker: str = "Better:", num_judgments: int = 1,
                 temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 40, model_path: str | None = None):
        super().__init__(name, template, score_range=(0, SCALE), num_judgments=num_judgments,
                         temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, model_path=model_path)
        self.preference_marker = preference_marker

    @property
    def preference_pattern(self) -> str:
        return re.escape(self.preference_marker) + r"\s*"

    def preference(self, judgment: str) -> str | None:
        return parse_preference(judgment, self.preference_pattern)

    def render_pair(self, instruction: str, a: str, b: str) -> str:
        return (self.template.replace("<INSTRUCTION_HERE>", instruction)
                .replace("<RESPONSE_A_HERE>", a).replace("<RESPONSE_B_HERE>", b))

    def eft_rows(self, seed_data) -> list[dict]:
        rng = random.Random(0)
        rows = []
        for r in seed_data.eft_preference_pairs():
            better_first = rng.random() < 0.5
            a, b = (r["chosen"], r["rejected"]) if better_first else (r["rejected"], r["chosen"])
            verdict = "A" if better_first else "B"
            rows.append({"instruction": self.render_pair(r["instruction"], a, b),
                         "response": f"Response {verdict} answers the question better. {self.preference_marker} {verdict}"})
        return rows

    def compare_texts(self, model, tokenizer, triples: Sequence[tuple[str, str, str]], batch_size: int = 32,
                      desc: str = "pairwise judge") -> list[tuple[str, str]]:
        """The raw verdicts on (instruction, x, y) triples: (x shown as A, y shown as A) per triple."""
        prompts = []
        for instruction, x, y in triples:
            prompts.append(prompt_ids(tokenizer, self.render_pair(instruction, x, y)))
            prompts.append(prompt_ids(tokenizer, self.render_pair(instruction, y, x)))
        texts = [t for (t,) in sample(model, tokenizer, prompts, self.sampling, batch_size=batch_size, desc=desc)]
        return [(texts[2 * k], texts[2 * k + 1]) for k in range(len(triples))]

    def compare(self, model, tokenizer, triples: Sequence[tuple[str, str, str]], batch_size: int = 32,
                desc: str = "pairwise judge") -> list[int]:
        """Head-to-head outcomes of (instruction, x, y) triples: +1 x better in both orders, -1 y, 0 tie."""
        return [both_order_outcome(self.preference(t1), self.preference(t2))
                for t1, t2 in self.compare_texts(model, tokenizer, triples, batch_size, desc)]

    def judge(self, model, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
              batch_size: int = 32, desc: str = "judge") -> list[list[CandidateJudgments]]:
        index, triples = [], []
        for p, cands in enumerate(candidates):
            for i in range(len(cands)):
                for j in range(i + 1, len(cands)):
                    index.append((p, i, j))
                    triples.append((instructions[p], cands[i], cands[j]))
        out = [[CandidateJudgments() for _ in c] for c in candidates]
        for (p, i, j), (t1, t2) in zip(index, self.compare_texts(model, tokenizer, triples, batch_size, desc)):
            for text, first_is_a in ((t1, True), (t2, False)):
                score_i, score_j = verdict_scores(self.preference(text), first_is_a)
                out[p][i].add(text, score_i)
                out[p][j].add(text, score_j)
        return out
