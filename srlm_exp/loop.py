"""The self-rewarding loop of one job, as a sequence of stages: build M0, then for each t train M(t)
with its stage, make AIFT(M(t)) (the callback at the end of the fit) and evaluate M(t).

Layout of a job's output dir:
  data/                 seed data (world files or Open Assistant splits)
  iteration_0/          eval of M0 (M0 itself lives in the cache, or is the HF checkpoint)
  iteration_1/model     M1 (SFT on the seed data)
  iteration_t/          for t >= 2: prompts.jsonl, candidates.jsonl, pairs.jsonl, stats.json
                        (AIFT(M(t-1)), made after M(t-1) was trained), model/ = M(t)
  iteration_t/training.json   what M(t)'s stage trained on
  summary.json
Every phase writes its file atomically; a rerun on the same dir reads finished phases back. A phase that
writes several files writes last the one whose presence tells a rerun it is done: M(t)'s stage writes its
record (and its own files: PPO's value head, the LoRA adapter) before M(t)'s directory.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from srlm_exp import distributed
from srlm_exp import layout
from srlm_exp.artifacts import read_jsonl, write_json
from srlm_exp.config import Components
from srlm_exp.data.distill import Distilled, DistillTools
from srlm_exp.data.seed_data import EFTJudgingTools, ModelJudgedEFT, ModelMadeJudgeEval
from srlm_exp.evaluation.evaluator import Evaluator
from srlm_exp.generation.aift import aift_done, make_aift
from srlm_exp.inference.vllm_engine import release_engine
from srlm_exp.models.loading import ModelStore, is_model_dir, load_tokenizer, release, release_cached_memory
from srlm_exp.phases import PhaseLog
from srlm_exp.progress import LoggedPhases, TrainingProgress, job_finished
from srlm_exp.summary import Summary
from srlm_exp.tracking import Tracker
from srlm_exp.training.fit import make_trainer
from srlm_exp.training.save_callback import SaveModelCallback
from srlm_exp.training.stage import StageInputs, TrainStage

log = logging.getLogger(__name__)


class Loop:
    def __init__(self, cfg: DictConfig, out_dir: Path, components: Components, summary: Summary, tracker: Tracker):
        self.cfg, self.out, self.components, self.summary, self.tracker = cfg, Path(out_dir), components, summary, tracker
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")
        self.seed_data = distributed.main_first(lambda: components.seed_data.build(self.out / "data"))

    def iteration_dir(self, t: int) -> Path:
        return layout.iteration_dir(self.out, t)

    # --- the sequence ---------------------------------------------------------------------------
    def run(self) -> None:
        t0 = time.time()
        m0_phases = LoggedPhases(self.out, 0)  # PhaseLog whose phases say when they start and end
        with m0_phases.phase("m0"):
            m0_dir = self.components.model_source.m0(self.cfg.model, self.seed_data, self.cfg.paths.cache_dir, self.cfg.trainer,
                                            self.cfg.seed)
            tokenizer = load_tokenizer(m0_dir, self.cfg.model.chat_template, self.cfg.model.trust_remote_code)
        models = ModelStore(self.cfg.model, tokenizer, self.device,
                            lambda t: Path(m0_dir) if t == 0 else self.iteration_dir(t) / "model", run_dir=self.out)
        evaluator = Evaluator(self.cfg.eval, self.seed_data, self.components.judge, tokenizer, models.load, release,
                              self.iteration_dir, self.device, seed=self.cfg.seed, external_judge=self.components.external_judge)
        if isinstance(self.seed_data, ModelMadeJudgeEval):  # its judge_eval sets are M0's responses
            with m0_phases.phase("judge_eval_sets"):
                self.seed_data.build_judge_eval(self.eft_tools(models))
        self.record(0, evaluator, m0_phases)
        last = self.cfg.loop.iterations + 1
        for t in range(1, last + 1):
            phases = LoggedPhases(self.out, t)
            makes_data = t < last
            # Rank 0 decides what a resumed job skips: every rank must take the same branch.
            if not distributed.share_from_main(partial(is_model_dir, models.model_dir(t))):
                with phases.phase("train"):  # the generation phases nested in it are timed apart
                    self.train(t, models, phases if makes_data else None)
            else:
                if not distributed.share_from_main((self.iteration_dir(t) / layout.TRAINING).exists):
                    self.rebuild_training_record(t, models)
                if makes_data and not distributed.share_from_main(partial(aift_done, self.iteration_dir(t + 1))):
                    model = models.load(t)
                    self.make_aift(t, model, tokenizer, phases, models)
                    release(model)
            self.record(t, evaluator, phases)
        job_finished(t0)  # or that a rerun found everything done

    # --- stages ---------------------------------------------------------------------------------
    def stage_inputs(self, t: int, models: ModelStore, callbacks: list[pl.Callback]) -> StageInputs:
        return StageInputs(tokenizer=models.tokenizer, iteration=t, seed=self.cfg.seed, data_dir=self.iteration_dir(t),
                           seed_data=self.seed_data, judge=self.components.judge.model_judge(), run_fit=self.run_fit(callbacks),
                           load_model=models.load, release=release, meta_judge=self.components.meta_judge)

    def run_fit(self, callbacks: list[pl.Callback]):
        def fit(module, loader, epochs: int, max_steps: int):
            trainer = make_trainer(self.cfg.trainer, max_epochs=epochs, max_steps=max_steps,
                                   logger=self.tracker.lightning_logger, callbacks=[*callbacks, TrainingProgress()],
                                   default_root_dir=str(self.out))
            trainer.fit(module, loader)
            self.tracker.advance(trainer.global_step)
            return trainer
        return fit

    def train(self, t: int, models: ModelStore, phases: PhaseLog | None) -> None:
        """Train M(t) from M(t-1) with its stage (the seed SFT for M1); unless M(t) is the last model, make
        AIFT(M(t)) with it once M(t) is on disk."""
        pl.seed_everything(self.cfg.seed + t, workers=True)
        distilled = self.seed_data
        if t == 1 and isinstance(distilled, Distilled):  # dSFT: the teacher writes M1's IFT responses
            distributed.share_from_main(lambda: distilled.distill(DistillTools(models.load_checkpoint, release)))
        if t == 1 and isinstance(self.seed_data, ModelJudgedEFT):
            self.seed_data.build_eft(self.eft_tools(models))
        release_engine()  # after the seed data's own generation: the engine would hold its model through training
        model = models.load(t - 1, trainable=True)
        # Under trainer=fsdp the fit ends with shards; the gathered weights go into M(t-1) loaded again.
        saved = SaveModelCallback(models.model_dir(t), models.tokenizer, rebuild=partial(models.load, t - 1, True),
                                  deferred=True)
        trained_on = self.stage(t).fit(model, self.stage_inputs(t, models, [saved]))
        # The stage's outputs are one unit: its record, then M(t), whose directory tells a resumed job that the
        # stage is done (the stage's own files were written before it returned). AIFT(M(t)) comes after both, so a
        # job killed while making it keeps M(t) with its record, and the rerun makes AIFT(M(t)) with that M(t).
        if distributed.is_main():
            write_json(self.iteration_dir(t) / layout.TRAINING, trained_on)
        saved.publish()
        if phases is not None:
            release_cached_memory()  # the fit's optimizer state, unreachable since the stage returned
            # Lightning's teardown moved the model to the CPU: back on this rank's device to generate.
            assert saved.model is not None  # publish() raised otherwise
            self.make_aift(t, saved.model.to(self.device), models.tokenizer, phases, models)
        release(saved.model)
        release(model)

    def stage(self, t: int) -> TrainStage:
        return self.components.seed_sft if t == 1 else self.components.train_stage

    def rebuild_training_record(self, t: int, models: ModelStore) -> None:
        """training.json of an M(t) on disk without it: a job stopped between the two by a version that wrote the
        record after AIFT(M(t)). The stage runs again on its inputs (M(t-1) and its data) without training, so
        it counts what it trained on; where that cannot be done, the error says how to retrain M(t)."""
        record, model_dir = self.iteration_dir(t) / layout.TRAINING, models.model_dir(t)
        log.warning("M%d (%s) has no training record %s: the job was stopped between them (by a version that wrote "
                    "the record after AIFT(M%d)); rebuilding it from the stage's inputs, without training", t, model_dir,
                    record, t)
        pl.seed_everything(self.cfg.seed + t, workers=True)
        model = models.load(t - 1, trainable=True)
        inputs = replace(self.stage_inputs(t, models, []), run_fit=lambda *args: None, fitting=False)
        try:
            trained_on = self.stage(t).fit(model, inputs)
        except Exception as e:
            raise RuntimeError(f"{record} is missing beside M{t} ({model_dir}) and could not be rebuilt from the "
                               f"stage's inputs ({type(e).__name__}: {e}). To train M{t} again, delete {model_dir}, its "
                               f"evaluation ({self.iteration_dir(t)}/eval_*.jsonl), every later iteration_k/ directory "
                               f"and the entries from M{t} on in summary.json; or rerun the job in a new directory") from e
        finally:
            release(model)
        if distributed.is_main():
            write_json(record, trained_on)

    def eft_tools(self, models: ModelStore) -> EFTJudgingTools:
        def train_ift_only() -> Path:
            out = self.iteration_dir(1) / "ift_only_model"
            if not distributed.share_from_main(lambda: is_model_dir(out)):
                release_engine()
                model = models.load(0, trainable=True)
                saved = SaveModelCallback(out, models.tokenizer, rebuild=partial(models.load, 0, True))
                self.components.seed_sft.fit_ift_only(model, self.stage_inputs(1, models, [saved]))
                release(saved.model)
                release(model)
            return out

        return EFTJudgingTools(train_ift_only=train_ift_only, load=models.load_path, release=release,
                               tokenizer=models.tokenizer, judge=self.components.judge.model_judge(),
                               batch_size=self.cfg.eval.judge_batch_size, load_m0=partial(models.load, 0))

    def make_aift(self, t: int, model, tokenizer, phases: PhaseLog, models: ModelStore) -> dict:
        """AIFT(M(t)) into iteration t+1, with every prompt of earlier iterations as known prompts."""
        earlier = [r["instruction"] for k in range(2, t + 1) if (self.iteration_dir(k) / layout.PROMPTS).exists()
                   for r in read_jsonl(self.iteration_dir(k) / layout.PROMPTS)]
        return make_aift(model, tokenizer, out_dir=self.iteration_dir(t + 1), iteration=t, seed=self.cfg.seed,
                         prompt_source=self.components.prompt_source, sampler=self.components.sampler,
                         judge=self.components.judge, pair_rule=self.components.pair_rule, seed_data=self.seed_data,
                         earlier_prompts=earlier, phases=phases, models=models, curriculum=self.components.curriculum,
                         meta_judge=self.components.meta_judge)

    # --- evaluation -----------------------------------------------------------------------------
    def record(self, t: int, evaluator: Evaluator, phases: PhaseLog) -> None:
        """Evaluate M(t) (unless a resumed job already did) and put its summary entry."""
        done = self.summary.entry(t)
        if done is not None and "judge" in done:
            # A job extended past its last model (more loop.iterations) made AIFT(M(t)) after M(t)'s entry
            # was written: add what that phase measured, keep the evaluation. Likewise M(t)'s training record,
            # where an older version wrote the entry without it (rebuild_training_record).
            added = {}
            aift = evaluator.aift_stats(t) if "aift" not in done else None
            if aift is not None:
                added["aift"] = aift
            record = self.iteration_dir(t) / layout.TRAINING
            if t > 0 and "training" not in done and record.exists():
                added["training"] = json.loads(record.read_text())
            if added:
                timings = {**done.get("timings", {}), **phases.summary()["timings"]}
                self.summary.put({**done, **added, "timings": timings})
            return
        with phases.phase("eval"):
            entry = evaluator.evaluate(t)
        entry.update(phases.summary())
        self.summary.put(entry)
        self.tracker.log_iteration(t, {k: v for k, v in entry.items() if k not in ("iteration", "model")})
        self.tracker.log_samples(t, self.iteration_dir(t))
        log.info("M%d: %s | judge %s", t, {k: v for k, v in entry["eval"].items() if k != "per_family"},
                 {k: entry["judge"].get(k) for k in ("pairwise_acc", "parse_rate", "states_answer")})
