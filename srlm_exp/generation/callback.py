"""The generation and judging phase of a self-rewarding iteration, as a Lightning callback.

Attached to the Trainer that trains M(t), it runs when the fit ends and writes AIFT(M(t)), the
training data of M(t+1), into the next iteration's directory: prompts.jsonl -> candidates.jsonl
(N samples per prompt, each judged K times, raw judgments kept) -> pairs.jsonl + stats.json.
Each file is a phase: written completely or not at all, and read back instead of redone when a
stopped job is rerun.
"""
from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import pytorch_lightning as pl

from srlm_exp.artifacts import read_jsonl, write_json, write_jsonl
from srlm_exp.distributed import is_main, rank, share_from_main, split_map, world_size
from srlm_exp.evaluation.metrics import pearson
from srlm_exp.generation.sampler import Sampling, chat_prompt, generate
from srlm_exp.pairs.rules import summarize_drops
from srlm_exp.phases import PhaseLog

log = logging.getLogger(__name__)


def unique_candidates(cands: list[dict]) -> list[dict]:
    """Merge identical samples (pooling their judgments), so a pair never has chosen == rejected
    text just because the sampled judge scored two copies differently."""
    merged: dict[str, dict] = {}
    for c in cands:
        m = merged.setdefault(c["text"], dict(c, judgment_scores=[]))
        m["judgment_scores"] = m["judgment_scores"] + list(c.get("judgment_scores") or [c["score"]])
    for m in merged.values():
        valid = [s for s in m["judgment_scores"] if s is not None and not math.isnan(s)]
        m["score"] = sum(valid) / len(valid) if valid else None
    return list(merged.values())


class SelfRewardCallback(pl.Callback):
    def __init__(self, n_candidates: int = 4, temperature: float = 0.7, top_p: float = 0.9,
                 max_new_tokens: int = 32, batch_size: int = 64):
        if n_candidates < 2:
            raise ValueError(f"callbacks.self_reward.n_candidates must be >= 2 to form pairs, got {n_candidates}")
        self.n_candidates = n_candidates
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        self.batch_size = batch_size
        self.ctx: dict[str, Any] | None = None

    def bind(self, *, out_dir: Path, iteration: int, tokenizer, prompt_source, judge, pair_rule: Callable,
             seed_data, earlier_prompts: Sequence[str], seed: int, phases: PhaseLog) -> "SelfRewardCallback":
        """Tell the callback which iteration's data it makes (the pipeline calls this per stage)."""
        self.ctx = dict(out_dir=Path(out_dir), iteration=iteration, tokenizer=tokenizer, prompt_source=prompt_source,
                        judge=judge, pair_rule=pair_rule, seed_data=seed_data, earlier=list(earlier_prompts),
                        seed=seed, phases=phases)
        return self

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.ctx is not None:
            # Every rank takes part. Lightning's teardown moved the model to the CPU before
            # on_fit_end: put it back on this rank's device to generate.
            self.run(pl_module.model.to(trainer.strategy.root_device))

    # --- the phase, callable directly when a resumed job skips training ----------------------------
    def run(self, model) -> dict:
        """Make AIFT(M(t)). Under DDP every rank calls this: rank 0 writes the prompts, each rank
        samples and judges its share of them, rank 0 writes the gathered candidates, pairs and stats."""
        c = self.ctx
        assert c is not None, "SelfRewardCallback.bind() must be called before run()"
        out: Path = c["out_dir"]
        # Separate streams: a resumed job that reads prompts back must still break pair ties the same way.
        prompt_rng = random.Random(f"self-reward-prompts:{c['seed']}:{c['iteration']}")
        pair_rng = random.Random(f"self-reward-pairs:{c['seed']}:{c['iteration']}")
        tok, judge, phases = c["tokenizer"], c["judge"], c["phases"]

        def prompts_phase() -> list[str]:
            out.mkdir(parents=True, exist_ok=True)
            if (out / "prompts.jsonl").exists():
                return [r["instruction"] for r in read_jsonl(out / "prompts.jsonl")]
            with phases.phase("prompts"):
                prompts = c["prompt_source"].produce(model, tok, c["seed_data"].seed_instructions(), c["earlier"],
                                                     prompt_rng)
                write_jsonl(out / "prompts.jsonl", [{"prompt_id": i, "instruction": p} for i, p in enumerate(prompts)])
            return prompts

        # On rank 0 only: self-instruct filters novelty sequentially; the others get the result.
        prompts = share_from_main(prompts_phase)

        rows = None
        if not share_from_main((out / "candidates.jsonl").exists):
            with phases.phase("candidates_and_judging"):
                rows = split_map(lambda part: self._candidates(model, tok, judge, part, c["seed_data"]), prompts)
                for k, row in enumerate(rows):
                    row["prompt_id"] = k
                if is_main():
                    write_jsonl(out / "candidates.jsonl", rows)

        def pairs_phase() -> dict:
            if (out / "pairs.jsonl").exists() and (out / "stats.json").exists():
                return json.loads((out / "stats.json").read_text())
            pairs, stats = self._pairs(rows if rows is not None else read_jsonl(out / "candidates.jsonl"), c["pair_rule"], pair_rng)
            write_jsonl(out / "pairs.jsonl", pairs)
            write_json(out / "stats.json", stats)
            log.info("iteration %d data: %d prompts, %d pairs (%s)", c["iteration"], len(prompts), len(pairs),
                     stats["pairs"]["dropped"])
            return stats

        return share_from_main(pairs_phase)  # also the barrier: the files exist when any rank returns

    def _candidates(self, model, tok, judge, prompts: list[str], seed_data) -> list[dict]:
        if world_size() > 1:
            log.info("rank %d of %d: sampling and judging %d prompts", rank(), world_size(), len(prompts))
        ids = [chat_prompt(tok, p) for p in prompts]
        flat = generate(model, tok, [i for i in ids for _ in range(self.n_candidates)], self.sampling,
                        batch_size=self.batch_size, desc="candidates")
        cands = [flat[k * self.n_candidates : (k + 1) * self.n_candidates] for k in range(len(prompts))]
        judged = judge.judge(model, tok, prompts, cands, batch_size=self.batch_size, desc="judging")
        rows = []
        for k, (p, cs, js) in enumerate(zip(prompts, cands, judged)):
            entries = []
            for text, j in zip(cs, js):
                e = {"text": text, "length": len(tok(text, add_special_tokens=False)["input_ids"]), **j.to_dict()}
                if seed_data.has_ground_truth:
                    g = seed_data.grade(p, text)
                    e["gt_score"] = None if g is None else g.score
                entries.append(e)
            rows.append({"prompt_id": k, "instruction": p, "candidates": entries,
                         "judge_parse_rate": judge.parse_rate_of(js)})
        return rows

    @staticmethod
    def _pairs(rows: list[dict], pair_rule: Callable, rng: random.Random) -> tuple[list[dict], dict]:
        pairs, choices, all_scores, parse_rates = [], [], [], []
        self_scores, gt_scores = [], []
        for r in rows:
            cands = unique_candidates(r["candidates"])
            scores = [math.nan if c["score"] is None else float(c["score"]) for c in cands]
            choice = pair_rule(scores, [c["length"] for c in cands], rng)
            choices.append(choice)
            parse_rates.append(r["judge_parse_rate"])
            for c, s in zip(cands, scores):
                if not math.isnan(s):
                    all_scores.append(s)
                    if c.get("gt_score") is not None:
                        self_scores.append(s)
                        gt_scores.append(c["gt_score"])
            for ci, ri in choice.pairs:
                pairs.append({"prompt_id": r["prompt_id"], "instruction": r["instruction"],
                              "chosen": cands[ci]["text"], "rejected": cands[ri]["text"],
                              "chosen_score": scores[ci], "rejected_score": scores[ri],
                              "chosen_length": cands[ci]["length"], "rejected_length": cands[ri]["length"]})
        drops = summarize_drops(choices)
        hist = Counter(str(int(round(s))) for s in all_scores)
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        stats = {
            "pairs": {"n": len(pairs), "tie_rate": drops.get("tie", 0) / max(1, len(rows)), "dropped": drops,
                      "prompts": len(rows)},
            "generated": {"parse_rate": mean(parse_rates), "score_hist": dict(sorted(hist.items())),
                          "chosen_len": mean([p["chosen_length"] for p in pairs]),
                          "rejected_len": mean([p["rejected_length"] for p in pairs])},
        }
        if gt_scores:
            # Reward-hacking watch: does the self-judge drift above the ground truth it should track?
            stats["reward_watch"] = {"self_mean": mean(self_scores), "gt_mean": mean(gt_scores),
                                     "corr": pearson(self_scores, gt_scores), "n": len(gt_scores)}
        return pairs, stats
