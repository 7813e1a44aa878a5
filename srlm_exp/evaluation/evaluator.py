"""Evaluating M(t): its summary entry (conf/eval/default.yaml).

The policy answers the held-out instructions greedily (graded where the seed data has a grader), the
model judges the held-out ranked sets (the paper's Table 4), and M(t) meets M1 and its predecessor
head-to-head, by ground truth and, with eval.judge_model, by an external judge. The entry also holds
what M(t) was trained on (training.json) and the statistics of its training data (stats.json).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from srlm_exp import distributed
from srlm_exp import layout
from srlm_exp.artifacts import read_jsonl, write_jsonl
from srlm_exp.data.seed_data import GroundTruth
from srlm_exp.evaluation.external import external_head_to_heads
from srlm_exp.evaluation.judge_eval import evaluate_judge
from srlm_exp.evaluation.metrics import head_to_head
from srlm_exp.evaluation.policy import grade_responses, policy_responses
from srlm_exp.inference.sampler import Completion, Sampling, seed_sampling


class Evaluator:
    def __init__(self, eval_cfg, seed_data, judge, tokenizer, load: Callable[[int], Any],
                 release: Callable[[Any], None], iteration_dir: Callable[[int], Path], device, seed: int = 0,
                 external_judge=None):
        self.cfg, self.seed_data, self.judge, self.tokenizer, self.seed = eval_cfg, seed_data, judge, tokenizer, seed
        self.external_judge = external_judge  # eval.external_judge where eval.judge_model is set
        self.load, self.release, self.iteration_dir, self.device = load, release, iteration_dir, device

    def responses_file(self, t: int) -> Path:
        return self.iteration_dir(t) / layout.EVAL_RESPONSES

    def evaluate(self, t: int) -> dict[str, Any]:
        """M(t)'s summary entry: policy metrics, judge metrics, head-to-heads, its training and data stats."""
        e = self.cfg
        entry: dict[str, Any] = {"iteration": t, "model": f"M{t}"}
        model = self.load(t)
        try:
            entry["eval"] = self.policy(model, t)
            seed_sampling("eval-judge", self.seed)  # the K sampled judgments: the same draws for every M(t)
            entry["judge"] = evaluate_judge(model, self.tokenizer, self.judge, self.seed_data, e.judge_batch_size)
        finally:
            self.release(model)  # before any other model (the external judge) is loaded
        distributed.barrier()  # eval_responses.jsonl is on disk for the head-to-heads of every rank
        entry["head_to_head"] = self.head_to_heads(t)
        it = self.iteration_dir(t)
        aift = self.aift_stats(t)
        if aift is not None:
            entry["aift"] = aift
        if (it / layout.TRAINING).exists():
            entry["training"] = json.loads((it / layout.TRAINING).read_text())
        if (it / layout.STATS).exists():
            entry.update(json.loads((it / layout.STATS).read_text()))
            entry["pairs"].pop("dropped", None)
        if e.judge_model and self.opponents(t):  # one external judge model, on rank 0
            entry["external_judge"] = distributed.share_from_main(lambda: self.external_head_to_heads(t))
        return entry

    def aift_stats(self, t: int) -> dict[str, Any] | None:
        """AIFT(M(t)), what M(t) generated and how well it judged it: the generation-verification gap, the
        pairs made and self vs ground-truth score correlation. None until AIFT(M(t)) is made."""
        made = self.iteration_dir(t + 1) / layout.STATS
        if not made.exists():
            return None
        stats = json.loads(made.read_text())
        return {**stats.get("gen_verif", {}), "pairs": stats["pairs"]["n"],
                "self_vs_gt_corr": stats.get("reward_watch", {}).get("corr")}

    def policy(self, model, t: int) -> dict[str, Any]:
        """Greedy responses to the held-out instructions, graded; with eval.sample_temperature > 0 also one
        sampled response each (the candidates' sampling: where self-rewarding's sharpening shows first).
        Responses are read back on a resumed job."""
        metrics = self._responses(model, self.responses_file(t), Sampling(max_new_tokens=self.cfg.max_new_tokens))
        if self.cfg.sample_temperature > 0:
            seed_sampling("eval-sampled", self.seed)
            sampled = self._responses(model, self.iteration_dir(t) / layout.EVAL_SAMPLED_RESPONSES,
                                      Sampling(max_new_tokens=self.cfg.max_new_tokens, temperature=self.cfg.sample_temperature,
                                               top_p=self.cfg.sample_top_p))
            metrics["sampled"] = {k: sampled[k] for k in ("gt_score", "gt_exact") if k in sampled}
        return metrics

    def _responses(self, model, resp_file: Path, sampling: Sampling) -> dict[str, Any]:
        rows = self.seed_data.eval_rows()
        if distributed.share_from_main(resp_file.exists):
            # Read back as written: an answer that recorded whether it ended keeps that (eval.cut_off_rate).
            back = [Completion(g["response"], g["finished"]) if "finished" in g else g["response"] for g in read_jsonl(resp_file)]
            metrics, _ = grade_responses(self.seed_data, rows, back)
            return metrics
        # Instructions split across ranks; all get every response back.
        responses = distributed.split_map(
            lambda part: policy_responses(model, self.tokenizer, part, sampling, self.cfg.batch_size),
            [r["instruction"] for r in rows])
        metrics, graded = grade_responses(self.seed_data, rows, responses)
        if distributed.is_main():
            write_jsonl(resp_file, graded)
        return metrics

    def opponents(self, t: int) -> list[tuple[str, int]]:
        """M(t)'s head-to-head opponents whose evaluation responses exist: M1 and its predecessor."""
        return [(name, other) for name, other in (("vs_M1", 1), ("vs_prev", t - 1))
                if 0 <= other != t and self.responses_file(other).exists()]

    def _gt_scores(self, t: int) -> list[float]:
        return [float(r["gt_score"]) for r in read_jsonl(self.responses_file(t))]

    def head_to_heads(self, t: int) -> dict:
        """Win/tie/loss by ground-truth score against M1 and against the predecessor (paper Fig. 3)."""
        if not isinstance(self.seed_data, GroundTruth):
            return {}
        mine = self._gt_scores(t)
        return {name: head_to_head(mine, self._gt_scores(other)) for name, other in self.opponents(t)}

    def external_head_to_heads(self, t: int) -> dict:
        """The same comparisons judged by the external model (eval.judge_model), both orders."""

        pairs = {name: (self.responses_file(t), self.responses_file(other)) for name, other in self.opponents(t)}
        return external_head_to_heads(self.cfg, self.external_judge, pairs, self.device)
