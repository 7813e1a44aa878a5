"""The self-rewarding loop of one job: M0 -> M1 (SFT on IFT+EFT) -> M2 -> ... with evaluation.

Layout of a job's output dir:
  data/                 seed data (world files or Open Assistant splits)
  iteration_0/          eval of M0 (M0 itself lives in the cache, or is the HF checkpoint)
  iteration_1/model     M1
  iteration_t/          for t >= 2: prompts.jsonl, candidates.jsonl, pairs.jsonl, stats.json
                        (AIFT(M(t-1)), made by the callback after M(t-1) was trained), model/ = M(t)
  summary.json
Every phase writes its file atomically; a rerun on the same dir reads finished phases back.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from srlm_exp import distributed
from srlm_exp.artifacts import read_jsonl, write_jsonl
from srlm_exp.evaluation.judge_eval import evaluate_judge
from srlm_exp.evaluation.metrics import head_to_head
from srlm_exp.evaluation.policy import grade_responses, policy_responses
from srlm_exp.models.loading import enable_gradient_checkpointing, free, is_model_dir, load_model, load_tokenizer
from srlm_exp.models.lora import apply_lora
from srlm_exp.phases import PhaseLog
from srlm_exp.summary import Summary
from srlm_exp.tracking import Tracker
from srlm_exp.training.fit import make_trainer
from srlm_exp.training.save_callback import SaveModelCallback
from srlm_exp.training.sft import SFTModule
from srlm_exp.training.tokenize import chat_example, collate_examples, length_grouped_batches

log = logging.getLogger(__name__)
AIFT_FILES = ("prompts.jsonl", "candidates.jsonl", "pairs.jsonl", "stats.json")


class Loop:
    def __init__(self, cfg: DictConfig, out_dir: Path, summary: Summary, tracker: Tracker):
        self.cfg, self.out, self.summary, self.tracker = cfg, Path(out_dir), summary, tracker
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")
        self.seed_data = distributed.main_first(lambda: instantiate(cfg.data).build(self.out / "data"))
        self.judge = instantiate(cfg.judge)
        self.pair_rule = instantiate(cfg.pairs)
        self.prompt_source = instantiate(cfg.prompts)
        self.train_stage = instantiate(cfg.train)
        self.callback = instantiate(cfg.callbacks.self_reward)
        if self.judge.uses_model is False and not self.seed_data.has_ground_truth:
            raise ValueError("judge=oracle needs data with a ground-truth grader (data=world)")

    # --- paths -------------------------------------------------------------------------------
    def it_dir(self, t: int) -> Path:
        return self.out / f"iteration_{t}"

    def model_dir(self, t: int) -> Path:
        return self.m0_dir if t == 0 else self.it_dir(t) / "model"

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        cfg = self.cfg
        t0 = time.time()
        m0_phases = PhaseLog()
        with m0_phases.phase("m0"):
            self.m0_dir = instantiate(cfg.model.source).m0(cfg.model, self.seed_data, cfg.paths.cache_dir, cfg.trainer,
                                                           cfg.seed)
            self.tokenizer = load_tokenizer(self.m0_dir, cfg.model.chat_template, cfg.model.trust_remote_code)
        self.evaluate(0, m0_phases)
        last = cfg.loop.iterations + 1
        for t in range(1, last + 1):
            phases = PhaseLog()
            makes_data = t < last
            # Rank 0 decides what a resumed job skips: every rank must take the same branch.
            if not distributed.share_from_main(lambda: is_model_dir(self.model_dir(t))):
                with phases.phase("train"):  # the generation phases nested in it are timed apart
                    self.train(t, phases if makes_data else None)
            elif makes_data and not distributed.share_from_main(
                    lambda: all((self.it_dir(t + 1) / f).exists() for f in AIFT_FILES)):
                model = self.load(self.model_dir(t))
                self.bind_callback(t, phases).run(model)
                free(model)
            self.evaluate(t, phases)
        log.info("job finished in %.1f s", time.time() - t0)

    def load(self, path: Path, trainable: bool = False):
        c = self.cfg.model
        model = load_model(path, self.tokenizer, dtype=c.dtype, trust_remote_code=c.trust_remote_code)
        if trainable:
            model.train()  # from_pretrained returns eval mode (dropout off)
            if c.gradient_checkpointing:
                enable_gradient_checkpointing(model)
            if c.lora.enabled:
                model = apply_lora(model, c.lora)
        return model.to(self.device)

    def bind_callback(self, t: int, phases: PhaseLog):
        earlier = [r["instruction"] for k in range(2, t + 1) if (self.it_dir(k) / "prompts.jsonl").exists()
                   for r in read_jsonl(self.it_dir(k) / "prompts.jsonl")]
        return self.callback.bind(out_dir=self.it_dir(t + 1), iteration=t, tokenizer=self.tokenizer,
                                  prompt_source=self.prompt_source, judge=self.judge, pair_rule=self.pair_rule,
                                  seed_data=self.seed_data, earlier_prompts=earlier, seed=self.cfg.seed, phases=phases)

    def run_fit(self, callbacks):
        def fit(module, loader, epochs: int, max_steps: int):
            trainer = make_trainer(self.cfg.trainer, max_epochs=epochs, max_steps=max_steps,
                                   logger=self.tracker.lightning_logger, callbacks=callbacks,
                                   default_root_dir=str(self.out))
            trainer.fit(module, loader)
            self.tracker.advance(trainer.global_step)
            return trainer
        return fit

    def train(self, t: int, phases: PhaseLog | None) -> None:
        """Train M(t) from M(t-1); the callbacks save it and (unless last) make AIFT(M(t))."""
        pl.seed_everything(self.cfg.seed + t, workers=True)
        if t == 1 and getattr(self.seed_data, "needs_model_eft", False):
            self.model_judged_eft()

        def rebuild():  # the model to train; after a sharded fit (trainer=fsdp) called again for the gathered weights
            return self.load(self.model_dir(t - 1), trainable=True)

        model = rebuild()
        callbacks: list[pl.Callback] = [SaveModelCallback(self.model_dir(t), self.tokenizer, rebuild)]
        if phases is not None:
            callbacks.append(self.bind_callback(t, phases))
        fit = self.run_fit(callbacks)
        if t == 1:
            self.sft_m1(model, fit)
        else:
            self.train_stage.fit(model, self.tokenizer, self.it_dir(t), t, fit, lambda: self.load(self.model_dir(1)))
        free(model)

    def model_judged_eft(self) -> None:
        """EFT the paper's way (seed data without a grader): an IFT-only SFT model judges human-ranked
        replies K times; sets it orders like the humans become EFT data (data/eft_graded.jsonl)."""
        target = self.seed_data.files["eft_graded"]
        if distributed.share_from_main(target.exists) or not self.seed_data.use_eft:
            return
        ift_dir = self.it_dir(1) / "ift_only_model"
        if not distributed.share_from_main(lambda: is_model_dir(ift_dir)):
            def rebuild():
                return self.load(self.model_dir(0), trainable=True)

            model = rebuild()
            fit = self.run_fit([SaveModelCallback(ift_dir, self.tokenizer, rebuild)])
            self.sft_m1(model, fit, with_eft=False)
            free(model)
        model = self.load(ift_dir)
        sets = self.seed_data.eft_candidates()
        judge = self.judge.model_judge()
        judged = distributed.split_map(lambda part: judge.judge(
            model, self.tokenizer, [s["instruction"] for s in part], [s["responses"] for s in part],
            batch_size=self.cfg.eval.judge_batch_size, desc="EFT judging"), sets)
        free(model)
        rows = self.seed_data.select_eft([[j.scores for j in js] for js in judged], [[j.texts for j in js] for js in judged])
        if distributed.is_main():
            write_jsonl(target, rows)
        distributed.barrier()
        log.info("EFT: kept %d judged replies from %d ranked sets", len(rows), len(sets))

    def sft_m1(self, model, fit, with_eft: bool = True) -> None:
        s = self.cfg.sft
        rows = [{"instruction": r["instruction"], "response": r["response"]} for r in self.seed_data.ift()]
        eft = self.judge.model_judge().eft_rows(self.seed_data) if with_eft else []
        examples = [chat_example(self.tokenizer, r["instruction"], r["response"], s.max_len) for r in rows + eft]
        log.info("M1: SFT on %d IFT + %d EFT examples", len(rows), len(eft))
        # Batches of similar length, in a seeded random order fixed for the run (a plain ordered
        # dataset, so DDP's sampler still splits it evenly across ranks).
        batches = length_grouped_batches([len(e.input_ids) for e in examples], s.batch_size, self.cfg.seed)
        examples = [examples[i] for b in batches for i in b]
        loader = DataLoader(examples, batch_size=s.batch_size, shuffle=False,
                            collate_fn=lambda b: collate_examples(b, self.tokenizer.pad_token_id))
        fit(SFTModule(model, lr=s.lr, min_lr=s.min_lr, warmup_steps=s.warmup_steps), loader, s.epochs, s.max_steps)

    # --- evaluation --------------------------------------------------------------------------
    def evaluate(self, t: int, phases: PhaseLog) -> None:
        """Evaluate M(t) (unless a resumed job already did) and put its summary entry."""
        done = self.summary.entry(t)
        if done is not None and "judge" in done:
            return
        with phases.phase("eval"):
            entry = self.evaluation(t)
        entry.update(phases.summary())
        self.summary.put(entry)
        self.tracker.log_iteration(t, {k: v for k, v in entry.items() if k not in ("iteration", "model")})
        self.log_samples(t)
        if t == 1 and self.summary.entry(0) is not None:  # M0 vs M1 becomes known only now
            m0 = self.summary.entry(0)
            m0["head_to_head"] = self.head_to_heads(0)
            if self.cfg.eval.judge_model:
                m0["external_judge"] = distributed.share_from_main(lambda: self.external_head_to_heads(0))
            self.summary.put(m0)
        log.info("M%d: %s | judge %s", t, {k: v for k, v in entry["eval"].items() if k != "per_family"},
                 {k: entry["judge"].get(k) for k in ("pairwise_acc", "parse_rate")})

    def evaluation(self, t: int) -> dict[str, Any]:
        """M(t)'s summary entry: policy metrics, judge metrics, head-to-heads, its training data's stats."""
        e = self.cfg.eval
        model = self.load(self.model_dir(t))
        resp_file = self.it_dir(t) / "eval_responses.jsonl"
        rows = self.seed_data.eval_rows()
        if distributed.share_from_main(resp_file.exists):
            graded = read_jsonl(resp_file)
            metrics, _ = grade_responses(self.seed_data, rows, [g["response"] for g in graded])
        else:  # instructions split across ranks; all get every response back
            responses = distributed.split_map(lambda part: policy_responses(model, self.tokenizer, part, e.max_new_tokens,
                                                                            e.batch_size), [r["instruction"] for r in rows])
            metrics, graded = grade_responses(self.seed_data, rows, responses)
            if distributed.is_main():
                write_jsonl(resp_file, graded)
        entry: dict[str, Any] = {"iteration": t, "model": f"M{t}", "eval": metrics}
        entry["judge"] = evaluate_judge(model, self.tokenizer, self.judge, self.seed_data, e.judge_batch_size)
        free(model)
        distributed.barrier()  # eval_responses.jsonl is on disk for the head-to-heads of every rank
        entry["head_to_head"] = self.head_to_heads(t)
        stats_file = self.it_dir(t) / "stats.json"
        if stats_file.exists():
            entry.update(json.loads(stats_file.read_text()))
            entry["pairs"].pop("dropped", None)
        if e.judge_model:  # one external judge model, on rank 0
            entry["external_judge"] = distributed.share_from_main(lambda: self.external_head_to_heads(t))
        return entry

    def _gt_scores(self, t: int) -> list[float] | None:
        f = self.it_dir(t) / "eval_responses.jsonl"
        if not f.exists() or not self.seed_data.has_ground_truth:
            return None
        return [float(r["gt_score"]) for r in read_jsonl(f)]

    def opponents(self, t: int) -> list[tuple[str, int]]:
        """M(t)'s head-to-head opponents whose evaluation responses exist: M1 and its predecessor."""
        return [(name, other) for name, other in (("vs_M1", 1), ("vs_prev", t - 1))
                if 0 <= other != t and (self.it_dir(other) / "eval_responses.jsonl").exists()]

    def head_to_heads(self, t: int) -> dict:
        """Win/tie/loss by ground-truth score against M1 and against the predecessor (paper Fig. 3)."""
        mine = self._gt_scores(t)
        if mine is None:
            return {}
        return {name: head_to_head(mine, self._gt_scores(other)) for name, other in self.opponents(t)}

    def external_head_to_heads(self, t: int) -> dict:
        """The same comparisons judged by the external model (eval.judge_model), both orders."""
        from srlm_exp.evaluation.external import external_head_to_head

        return {name: external_head_to_head(self.cfg.eval, self.it_dir(t) / "eval_responses.jsonl",
                                            self.it_dir(other) / "eval_responses.jsonl", self.device)
                for name, other in self.opponents(t)}

    def log_samples(self, t: int) -> None:
        pairs_file = self.it_dir(t) / "pairs.jsonl"
        if not pairs_file.exists():
            return
        rows = read_jsonl(pairs_file)
        sample = random.Random(t).sample(rows, min(16, len(rows)))
        self.tracker.log_table(f"samples/M{t}_training_pairs", ["instruction", "chosen", "chosen_score", "rejected", "rejected_score"],
                               [[r["instruction"], r["chosen"], r["chosen_score"], r["rejected"], r["rejected_score"]] for r in sample])
