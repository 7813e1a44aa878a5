"""From judged candidates to training data: the one ranking that DPO's pairs and the SFT ablation's top
candidates both come from, and the statistics of an iteration's data (stats.json)."""
from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any, Callable, Sequence

from srlm_exp.evaluation.metrics import pearson
from srlm_exp.pairs.rules import PairChoice, summarize_drops
from srlm_exp.records import JudgedCandidate, PromptCandidates, mean_or_none, merge_identical

PairRule = Callable[[Sequence[float], Sequence[int], random.Random], PairChoice]


def top_candidate(row: PromptCandidates) -> JudgedCandidate | None:
    """The judge's pick: the highest-scored distinct candidate (the first sampled among equals); None if none
    has a score."""
    scored = [c for c in merge_identical(row.candidates) if not math.isnan(c.score)]
    return max(scored, key=lambda c: c.score) if scored else None


def training_target(row: PromptCandidates) -> JudgedCandidate | None:
    """What SFT on the top candidate trains on: the judge's pick among the candidates the row's cut-off rule
    lets training use and choose (records.CutOffRule); None if there is none."""
    allowed = [c for c in merge_identical(row.for_training()) if not math.isnan(c.score)
               and (row.cut_off is None or row.cut_off.may_be_chosen(c))]
    return max(allowed, key=lambda c: c.score) if allowed else None


def accepted_candidates(row: PromptCandidates, min_score: float, limit: int) -> list[JudgedCandidate]:
    """Rejection sampling: the distinct candidates scored at least `min_score` that training may use and
    choose under the row's cut-off rule, best first (the first sampled among equals), at most `limit`."""
    allowed = [c for c in merge_identical(row.for_training()) if not math.isnan(c.score) and c.score >= min_score
               and (row.cut_off is None or row.cut_off.may_be_chosen(c))]
    return sorted(allowed, key=lambda c: -c.score)[:limit]


def build_pairs(rows: Sequence[PromptCandidates], rule: PairRule, rng: random.Random) -> tuple[list[dict], dict[str, Any]]:
    """(chosen, rejected) pairs of every prompt by `rule`, and the iteration's data statistics.

    Stats: how many pairs and why prompts made none (`pairs`), the judge's parse rate and score
    histogram and the chosen/rejected lengths (`generated`), and, where candidates have a ground
    truth, whether the self-judge tracks it (`reward_watch`)."""
    pairs, choices, all_scores, self_scores, gt_scores = [], [], [], [], []
    cut_chosen = 0
    for row in rows:
        for c in merge_identical(row.candidates):
            if not math.isnan(c.score):
                all_scores.append(c.score)
                if c.gt_score is not None:
                    self_scores.append(c.score)
                    gt_scores.append(c.gt_score)
        cands = merge_identical(row.for_training())  # under the row's cut-off rule (records.CutOffRule)
        scores = [c.score for c in cands]
        choice = rule(scores, [c.length for c in cands], rng)
        choices.append(choice)
        for ci, ri in choice.pairs:
            chosen, rejected = cands[ci], cands[ri]
            if row.cut_off is not None and not row.cut_off.may_be_chosen(chosen):
                cut_chosen += 1
                continue
            pair: dict[str, Any] = {"prompt_id": row.prompt_id, "instruction": row.instruction,
                                    "chosen": chosen.text, "rejected": rejected.text,
                                    "chosen_score": chosen.score, "rejected_score": rejected.score,
                                    "chosen_length": chosen.length, "rejected_length": rejected.length}
            if chosen.finished is not None and rejected.finished is not None:
                pair["chosen_finished"], pair["rejected_finished"] = chosen.finished, rejected.finished
            pairs.append(pair)
    drops = summarize_drops(choices)
    if cut_chosen:
        drops["chosen_cut_off"] = cut_chosen
    hist = Counter(str(int(round(s))) for s in all_scores)
    stats: dict[str, Any] = {
        "pairs": {"n": len(pairs), "tie_rate": drops.get("tie", 0) / max(1, len(rows)), "dropped": drops,
                  "prompts": len(rows)},
        "generated": {"parse_rate": mean_or_none([r.parse_rate for r in rows]), "score_hist": dict(sorted(hist.items())),
                      "chosen_len": mean_or_none([p["chosen_length"] for p in pairs]),
                      "rejected_len": mean_or_none([p["rejected_length"] for p in pairs])},
    }
    cut = [c.cut_off for r in rows for c in r.candidates if c.finished is not None]
    if cut:  # the share of sampled candidates the new-token budget cut off, and what training does with them
        stats["generated"]["cut_off_rate"] = sum(cut) / len(cut)
        rules = {r.cut_off.rule for r in rows if r.cut_off is not None}
        if len(rules) == 1:
            stats["generated"]["cut_off_rule"] = rules.pop()
    if gt_scores:
        # Reward-hacking watch: does the self-judge drift above the ground truth it should track?
        stats["reward_watch"] = {"self_mean": mean_or_none(self_scores), "gt_mean": mean_or_none(gt_scores),
                                 "corr": pearson(self_scores, gt_scores), "n": len(gt_scores)}
    if any(row.graded for row in rows):
        stats["gen_verif"] = generation_verification(rows)
    return pairs, stats


def generation_verification(rows: Sequence[PromptCandidates]) -> dict[str, Any]:
    """Can the judge tell right from wrong better than chance (the generation-verification gap)?

    Over the prompts the grader knows, in all and per task family: the share of sampled candidates that
    are correct (`sampled_exact`), and, on prompts whose candidates the judge scored, how often its top
    candidate (the one the SFT ablation trains on, the usual `chosen`) is correct (`judge_pick_exact`)
    against a random candidate of the same prompt (`random_pick_exact`) and against the pick of a perfect
    judge (`best_pick_exact`: some candidate is correct). best − random is all a judge can add to a prompt's
    `chosen`, the oracle included.
    `gradable`: the share of prompts the grader knows at all."""
    def summarize(group: Sequence[PromptCandidates]) -> dict[str, Any]:
        cands = [c for r in group for c in r.candidates if c.gt_correct is not None]
        picks = [(top, [bool(c.gt_correct) for c in r.candidates]) for r in group if (top := top_candidate(r)) is not None]
        return {"prompts": len(group), "sampled_exact": mean_or_none([float(bool(c.gt_correct)) for c in cands]),
                "judge_pick_exact": mean_or_none([float(bool(top.gt_correct)) for top, _ in picks]),
                "random_pick_exact": mean_or_none([sum(correct) / len(correct) for _, correct in picks]),
                "best_pick_exact": mean_or_none([float(any(correct)) for _, correct in picks])}

    known = [r for r in rows if r.family is not None]
    families = sorted({r.family for r in known if r.family is not None})  # all of them: None narrowed away
    return {"gradable": len(known) / max(1, len(rows)), **summarize(known),
            "per_family": {f: summarize([r for r in known if r.family == f]) for f in families}}
