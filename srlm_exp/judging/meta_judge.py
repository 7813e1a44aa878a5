"""Meta-Rewarding (Wu et al. 2024): the model also judges pairs of its own judgments of one response, and
the judge is trained by DPO on the preferred judgments alongside the policy's pairs (conf/meta_judge).

Per iteration, after the candidates have been judged K times (generation/aift.py):
1. responses: the `n_responses` candidates whose valid judgments disagree most (score variance: the paper
   meta-judges where the judge is least certain), each with at least two distinct valid judgments;
2. battles: every pair of a response's judgments is meta-judged in both orders, since a model prefers one
   position over the other;
3. position weights: over the iteration's parsed verdicts, a win in the first position counts
   w1 = wins_second / (wins_first + wins_second) and a win in the second w2 = wins_first / (...), so a
   meta-judge that always names Judgment A adds nothing (1/2 each when it has no position bias);
4. Bradley-Terry ratings, the maximum-likelihood fit of sum_mn B_mn log sigmoid(e_m - e_n) over the weighted
   battle matrix B (the paper calls them Elo scores; they are no Elo updates); a small ridge keeps a judgment
   that never loses at a finite rating;
5. a judge pair: prompt = the judge prompt of (instruction, response), chosen = the highest-rated judgment,
   rejected = the lowest (none when the ratings tie).

The actor side keeps its own pairs: the paper picks them with length control (`pairs=length_control`, set by
`experiment=meta_rewarding`). M1 learns the meta-judge's format from the seed data's EFT sets when `eft` is
on (`eft_rows`): each EFT judgment against a sibling's judgment of another response to the same
instruction, which misdescribes this one.
"""
from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from srlm_exp.chat import prompt_ids
from srlm_exp.checks import Problem, at_least, check, require, sampling_problems
from srlm_exp.inference.sampler import Sampling, sample
from srlm_exp.records import PromptCandidates, mean_or_none, merge_identical

PLACEHOLDERS = ("<INSTRUCTION_HERE>", "<RESPONSE_HERE>", "<JUDGMENT_A_HERE>", "<JUDGMENT_B_HERE>")
POSITIONS = ("A", "B")


def no_meta_judge(name: str = "none") -> None:
    """meta_judge=none: the paper's self-rewarding loop, whose judge is trained only by EFT."""
    return None


@dataclass(frozen=True)
class Battle:
    """One meta-judgment to make: judgments `first` and `second` (indices into the response's judgments) of
    response `response` (an index into the selected responses), in that order."""

    response: int
    first: int
    second: int


def score_variance(scores: Sequence[float]) -> float:
    valid = [s for s in scores if not math.isnan(s)]
    if len(valid) < 2:
        return 0.0
    mean = sum(valid) / len(valid)
    return sum((s - mean) ** 2 for s in valid) / len(valid)


def position_weights(verdicts: Sequence[str | None]) -> tuple[float, float]:
    """(w1, w2): what a win in the first and in the second position counts, from the parsed verdicts ("A" =
    the first position won). Equal halves when no verdict parsed."""
    first, second = sum(v == "A" for v in verdicts), sum(v == "B" for v in verdicts)
    if first + second == 0:
        return 0.5, 0.5
    return second / (first + second), first / (first + second)


def battle_matrix(n: int, battles: Sequence[Battle], verdicts: Sequence[str | None],
                  weights: tuple[float, float]) -> list[list[float]]:
    """B[m][n]: the weighted wins of judgment m over judgment n (unparsed verdicts count for nobody)."""
    b = [[0.0] * n for _ in range(n)]
    w1, w2 = weights
    for battle, verdict in zip(battles, verdicts):
        if verdict == "A":
            b[battle.first][battle.second] += w1
        elif verdict == "B":
            b[battle.second][battle.first] += w2
    return b


def bradley_terry_ratings(b: Sequence[Sequence[float]], ridge: float = 0.01, steps: int = 500,
                          lr: float = 0.5) -> list[float]:
    """Bradley-Terry ratings of n players from the win matrix b (b[m][k]: m's weighted wins over k): the e maximising
    sum_mn B_mn log sigmoid(e_m - e_n) - ridge/2 * |e|^2, by gradient ascent (the objective is concave, and the
    ridge makes its maximum unique and finite). Meta-Rewarding calls them Elo scores."""
    n = len(b)
    e = [0.0] * n
    for _ in range(steps):
        grad = [-ridge * x for x in e]
        for m in range(n):
            for k in range(n):
                if m != k and b[m][k] > 0:
                    g = b[m][k] * (1.0 - 1.0 / (1.0 + math.exp(-(e[m] - e[k]))))
                    grad[m] += g
                    grad[k] -= g
        e = [x + lr * g for x, g in zip(e, grad)]
    return e


class MetaJudge:
    """Judges two judgments of one response with the model itself and makes the iteration's judge pairs."""

    def __init__(self, name: str, template: str, winner_marker: str = "Winner:", n_responses: int = 64,
                 temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 48, ridge: float = 0.01,
                 eft: bool = True, eft_rows: int = 3000):
        missing = [p for p in PLACEHOLDERS if p not in template]
        check(require(not missing, "template", f"lacks the placeholder(s) {missing}",
                      f"a meta-judge template must contain {list(PLACEHOLDERS)}"),
              require(bool(str(winner_marker).strip()), "winner_marker", "is empty",
                      "set winner_marker to the text before the verdict, e.g. 'Winner:'"),
              at_least(n_responses, 1, "n_responses", "set n_responses to the responses meta-judged per iteration, e.g. 64"),
              require(isinstance(ridge, (int, float)) and ridge > 0, "ridge", f"is {ridge!r}, must be > 0",
                      "set ridge=0.01 (it keeps the rating of a judgment that never loses finite)"),
              at_least(eft_rows, 0, "eft_rows"),
              *sampling_problems(temperature, top_p, max_new_tokens))
        self.name, self.template, self.winner_marker = name, template, winner_marker
        self.n_responses, self.ridge, self.eft, self.eft_rows_cap = n_responses, float(ridge), bool(eft), eft_rows
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        # The letter after the marker, with or without a word before it ("Judgment B", "Judgement B", or a
        # small model's "Wudgment B"): the letter is the verdict. The format string echoed back is none.
        self._verdict = re.compile(re.escape(winner_marker) + r"\s*\[?\s*(?:[A-Za-z]+\s+)?([AB])\b(?!\s*\|)")

    # --- rendering and parsing ---------------------------------------------------------------------
    def render(self, instruction: str, response: str, judgment_a: str, judgment_b: str) -> str:
        # Model-written text goes in last, so a judgment cannot inject a placeholder into the template.
        return (self.template.replace("<INSTRUCTION_HERE>", instruction).replace("<RESPONSE_HERE>", response)
                .replace("<JUDGMENT_A_HERE>", "\0A\0").replace("<JUDGMENT_B_HERE>", "\0B\0")
                .replace("\0A\0", judgment_a.strip()).replace("\0B\0", judgment_b.strip()))

    def parse(self, text: str) -> str | None:
        """"A" or "B" from the meta-judgment's new tokens (its last verdict), None when it names neither."""
        found = self._verdict.findall(text)
        return found[-1] if found else None

    def target(self, winner: str, winner_score: float, loser_score: float) -> str:
        """A meta-EFT target: each judgment's score, the one the response earns (the winner's), the verdict."""
        loser = "B" if winner == "A" else "A"
        return (f"{winner} gives {winner_score:g}, {loser} gives {loser_score:g}; the response earns {winner_score:g}. "
                f"{self.winner_marker} Judgment {winner}")

    # --- teaching M1 (meta-EFT) --------------------------------------------------------------------
    def eft_rows(self, seed_data, judge, seed: int) -> list[dict]:
        """Meta-judge training rows from the seed data's EFT sets: each judgment of a response against the
        judgment of a sibling response (same instruction, another score), in a random order; at most
        `eft_rows` of them, spread over the sets."""
        if not self.eft or self.eft_rows_cap == 0:
            return []
        sets: dict[str, list[dict]] = defaultdict(list)
        for r in seed_data.eft_graded():
            sets[r["instruction"]].append(r)
        rng = random.Random(f"meta-eft:{seed}")
        rows = []
        for instruction, members in sets.items():
            for r in members:
                others = [o for o in members if o["score"] != r["score"]]
                if not others:
                    continue
                o = rng.choice(others)
                right, wrong = judge.target(r["judgment"], r["score"]), judge.target(o["judgment"], o["score"])
                winner = rng.choice(POSITIONS)
                a, b = (right, wrong) if winner == "A" else (wrong, right)
                rows.append({"instruction": self.render(instruction, r["response"], a, b),
                             "response": self.target(winner, float(r["score"]), float(o["score"]))})
        rng.shuffle(rows)
        return rows[: self.eft_rows_cap]

    # --- judging judgments -------------------------------------------------------------------------
    def select(self, rows: Sequence[PromptCandidates]) -> list[dict[str, Any]]:
        """The responses to meta-judge: most disagreed-on first, each with its distinct valid judgments."""
        chosen: list[dict[str, Any]] = []
        for row in rows:
            for cand in merge_identical(row.candidates):
                judgments: dict[str, float] = {}
                for text, score in zip(cand.judgment.texts, cand.judgment.scores):
                    if not math.isnan(score) and text.strip() not in judgments:
                        judgments[text.strip()] = score
                if len(judgments) >= 2:
                    chosen.append({"prompt_id": row.prompt_id, "instruction": row.instruction, "response": cand.text,
                                   "judgments": list(judgments), "scores": list(judgments.values()),
                                   "gt_score": cand.gt_score, "variance": score_variance(list(judgments.values()))})
        chosen.sort(key=lambda r: -r["variance"])  # stable: sample order among equals
        return chosen[: self.n_responses]

    def battles(self, responses: Sequence[dict[str, Any]]) -> list[Battle]:
        return [Battle(r, m, n) for r, resp in enumerate(responses) for m in range(len(resp["judgments"]))
                for n in range(len(resp["judgments"])) if m != n]

    def meta_judgments(self, model, tokenizer, responses: Sequence[dict[str, Any]], battles: Sequence[Battle],
                       batch_size: int = 32) -> list[str]:
        """The model's meta-judgment (new tokens) of every battle."""
        def rendered(b: Battle) -> str:
            r = responses[b.response]
            return self.render(r["instruction"], r["response"], r["judgments"][b.first], r["judgments"][b.second])

        prompts = [prompt_ids(tokenizer, rendered(b)) for b in battles]
        texts = sample(model, tokenizer, prompts, self.sampling, n=1, batch_size=batch_size, desc="meta-judging")
        return [t[0] for t in texts]

    def judge_pairs(self, judge, responses: Sequence[dict[str, Any]], battles: Sequence[Battle],
                    texts: Sequence[str]) -> tuple[list[dict], list[dict], dict[str, Any]]:
        """From the meta-judgments of the battles: the judge's DPO pairs, every battle as a record
        (meta_judgments.jsonl: the raw text and its verdict, None where none parsed), and the iteration's
        meta-judge statistics."""
        verdicts = [self.parse(t) for t in texts]
        records = [{"prompt_id": responses[b.response]["prompt_id"], "response": b.response, "first": b.first,
                    "second": b.second, "meta_judgment": t, "verdict": v} for b, t, v in zip(battles, texts, verdicts)]
        weights = position_weights(verdicts)
        by_response: dict[int, list[tuple[Battle, str | None]]] = defaultdict(list)
        for battle, verdict in zip(battles, verdicts):
            by_response[battle.response].append((battle, verdict))
        pairs, dropped, closer = [], {"no_verdict": 0, "tie": 0}, []
        for r, resp in enumerate(responses):
            fought = by_response.get(r, [])
            if not any(v is not None for _, v in fought):
                dropped["no_verdict"] += 1
                continue
            rating = bradley_terry_ratings(battle_matrix(len(resp["judgments"]), [b for b, _ in fought],
                                                         [v for _, v in fought], weights), ridge=self.ridge)
            best, worst = max(range(len(rating)), key=rating.__getitem__), min(range(len(rating)), key=rating.__getitem__)
            if rating[best] - rating[worst] < 1e-6:
                dropped["tie"] += 1
                continue
            pair = {"prompt_id": resp["prompt_id"], "instruction": judge.render(resp["instruction"], resp["response"]),
                    "chosen": resp["judgments"][best], "rejected": resp["judgments"][worst],
                    "chosen_score": resp["scores"][best], "rejected_score": resp["scores"][worst],
                    "chosen_rating": rating[best], "rejected_rating": rating[worst]}  # Bradley-Terry
            if resp["gt_score"] is not None:
                pair["gt_score"] = resp["gt_score"]
                off_chosen = abs(resp["scores"][best] - resp["gt_score"])
                off_rejected = abs(resp["scores"][worst] - resp["gt_score"])
                if off_chosen != off_rejected:
                    closer.append(float(off_chosen < off_rejected))
            pairs.append(pair)
        parsed = [v for v in verdicts if v is not None]
        stats: dict[str, Any] = {
            "responses": len(responses), "battles": len(battles),
            "parse_rate": len(parsed) / len(verdicts) if verdicts else None,
            "first_position_wins": sum(v == "A" for v in parsed) / len(parsed) if parsed else None,
            "position_weights": list(weights), "pairs": len(pairs), "dropped": dropped,
            "chosen_score": mean_or_none([p["chosen_score"] for p in pairs]),
            "rejected_score": mean_or_none([p["rejected_score"] for p in pairs]),
        }
        if closer:  # graded responses: is the preferred judgment's score nearer the truth than the rejected's?
            stats["chosen_closer_to_truth"] = sum(closer) / len(closer)
            stats["graded_pairs_with_a_difference"] = len(closer)
        return pairs, records, stats


def meta_judge_problems(meta_judge, judge, train_stage) -> list[Problem | None]:
    """What the rest of the config must be for a meta-judge: the policy's own pointwise judgments to compare,
    and a DPO stage to train on the judge pairs."""
    if meta_judge is None:
        return []
    return [
        require(getattr(judge, "pointwise_judgments", False) and judge.model_path is None, "meta_judge",
                f"compares the policy's own pointwise judgments, but judge={getattr(judge, 'name', judge)!r}"
                + (" judges with a teacher (judge.model_path)" if getattr(judge, "model_path", None) else " is not "
                   "a pointwise judge prompt"),
                "choose judge=additive5 or judge=holistic5 with judge.model_path=null, or meta_judge=none"),
        require(getattr(train_stage, "trains_on_judge_pairs", False), "meta_judge", "trains the judge by DPO on its judge pairs, "
                f"but train={getattr(train_stage, 'name', type(train_stage).__name__)}", "set train=dpo, or meta_judge=none"),
    ]
