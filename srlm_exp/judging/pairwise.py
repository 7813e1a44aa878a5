"""RLAIF-style pairwise judge: "which of two responses is better", asked in both orders to cancel
position bias; disagreement (or a missing verdict) is a tie. A candidate's score is its share of
wins against the prompt's other candidates, scaled to 0-5 so pair rules and margins apply as-is."""
from __future__ import annotations

import math
import random
from typing import Sequence

from srlm_exp.generation.sampler import chat_prompt, generate
from srlm_exp.judging.judge import Judge, Judgment
from srlm_exp.judging.parsing import parse_preference

SCALE = 5.0


def both_order_outcome(first: str | None, second: str | None) -> int:
    """+1 if candidate i won both orders (A in (i, j), B in (j, i)), -1 if j did, 0 otherwise (tie)."""
    if first == "A" and second == "B":
        return 1
    if first == "B" and second == "A":
        return -1
    return 0


class PairwiseJudge(Judge):
    required_placeholders = ("<INSTRUCTION_HERE>", "<RESPONSE_A_HERE>", "<RESPONSE_B_HERE>")

    def __init__(self, name: str, template: str, preference_pattern: str = r"Better:\s*", num_judgments: int = 1,
                 temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 40):
        super().__init__(name, template, score_range=(0, SCALE), num_judgments=num_judgments,
                         temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        self.preference_pattern = preference_pattern

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
                         "response": f"Response {verdict} answers the question better. Better: {verdict}"})
        return rows

    def compare(self, model, tokenizer, triples: Sequence[tuple[str, str, str]], batch_size: int = 32,
                desc: str = "pairwise judge") -> tuple[list[int], list[tuple[str, str]]]:
        """Judge (instruction, x, y) triples in both orders; returns outcomes (+1 x better, -1 y, 0 tie)
        and the raw judgment texts of each order."""
        prompts = []
        for instruction, x, y in triples:
            prompts.append(chat_prompt(tokenizer, self.render_pair(instruction, x, y)))
            prompts.append(chat_prompt(tokenizer, self.render_pair(instruction, y, x)))
        texts = generate(model, tokenizer, prompts, self.sampling, batch_size=batch_size, desc=desc)
        outcomes, raw = [], []
        for k in range(len(triples)):
            t1, t2 = texts[2 * k], texts[2 * k + 1]
            outcomes.append(both_order_outcome(parse_preference(t1, self.preference_pattern),
                                               parse_preference(t2, self.preference_pattern)))
            raw.append((t1, t2))
        return outcomes, raw

    def judge(self, model, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
              batch_size: int = 32, desc: str = "judge") -> list[list[Judgment]]:
        index, triples = [], []
        for p, cands in enumerate(candidates):
            for i in range(len(cands)):
                for j in range(i + 1, len(cands)):
                    index.append((p, i, j))
                    triples.append((instructions[p], cands[i], cands[j]))
        outcomes, raw = self.compare(model, tokenizer, triples, batch_size, desc)
        wins = [[0.0] * len(c) for c in candidates]
        parsed = [[0] * len(c) for c in candidates]
        out = [[Judgment() for _ in c] for c in candidates]
        for (p, i, j), o, (t1, t2) in zip(index, outcomes, raw):
            ok = [parse_preference(t, self.preference_pattern) is not None for t in (t1, t2)]
            for c in (i, j):
                out[p][c].texts.extend([t1, t2])
                parsed[p][c] += sum(ok)
            wins[p][i] += 1.0 if o > 0 else 0.5 if o == 0 else 0.0
            wins[p][j] += 1.0 if o < 0 else 0.5 if o == 0 else 0.0
        for p, cands in enumerate(candidates):
            n_other = len(cands) - 1
            for c in range(len(cands)):
                # A candidate none of whose comparisons produced a verdict has no score (missing).
                s = math.nan if n_other == 0 or parsed[p][c] == 0 else SCALE * wins[p][c] / n_other
                out[p][c].scores = [s]
        return out

    def parse_rate_of(self, judgments: Sequence[Judgment]) -> float:
        texts = [t for j in judgments for t in j.texts]
        return sum(parse_preference(t, self.preference_pattern) is not None for t in texts) / max(1, len(texts))
