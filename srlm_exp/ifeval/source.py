"""The IFEval world as seed data (conf/data/ifeval.yaml, docs/ifeval_world.md).

Prompts: a base task plus one or two IFEval constraints (prompts.py); graded by IFEval's own checkers
(grader.py). The split (which topics are held out for the test and validation prompts) and the held-out prompts
are a function of `split_seed` alone, so every training seed is measured on the same test set; the training
prompts (EFT, IFT, the loop's pool draws) are a function of `seed`. `eval_split` chooses which held-out split
eval.jsonl holds: `test` for reported runs, `validation` (topics of their own) for choosing recipes.

  build() writes, with no model:
    eval.jsonl                held-out prompts for the policy ({"instruction", "family", "base_task", "constraints"})
    judge_eval_prompts.jsonl  held-out prompts whose M0 responses become the judge's ranked sets
    eft_prompts.jsonl         training prompts M0 answers for EFT (and IFT)
  build_judge_eval(tools), before M0 is evaluated (the loop calls it: ModelMadeJudgeEval):
    judge_eval_candidates.jsonl  M0's sampled responses to every judge_eval prompt, graded
    judge_eval.jsonl             the first `sizes.judge_eval` sets whose responses differ in score
  build_eft(tools), before M1 is trained (ModelJudgedEFT, the paper's place):
    eft_sets.jsonl            M0's sampled responses to every EFT prompt, graded
    eft_graded.jsonl          EFT rows: contrastive, balanced over scores, each with its target judgment
    ift.jsonl                 IFT rows: M0's own checker-passing responses (data.ift=own_passing), or none

Held-out and training prompts come from disjoint base tasks (split by topic: tasks.py), so no held-out prompt
shares a base task with an EFT, IFT or loop prompt. Each file is written once (atomically) and read back on a
resumed job; under DDP the responses are sampled across ranks and rank 0 writes.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from srlm_exp import distributed
from srlm_exp.artifacts import read_jsonl, write_jsonl
from srlm_exp.chat import prompt_ids
from srlm_exp.checks import Problem, at_least, check, require, sampling_problems
from srlm_exp.data.seed_data import EFTJudgingTools, SeedData
from srlm_exp.inference.sampler import Sampling, sample, seed_sampling

from .eft import eft_rows, graded_set, ift_rows, ranked_sets
from .grader import IFGrade, grade, ifeval_metrics, judgment
from .parsing import parse_instruction
from .prompts import PromptGenerator, unique_prompts
from .tasks import split_base_tasks

__all__ = ["IFEvalSizes", "IFEvalSeedData", "IFT_SOURCES"]

log = logging.getLogger(__name__)

IFT_SOURCES = ("own_passing", "none")
EVAL_SPLITS = ("test", "validation")
BUILT = ("eval", "judge_eval_prompts", "eft_prompts")
# Sizes every data source is handed by debug=smoke and model=smollm2 (conf/debug/smoke.yaml,
# conf/model_defaults/smollm2.yaml) that mean nothing here: there is no corpus and no instruction-writing rows.
IGNORED_SIZES = ("corpus", "self_instruct")


@dataclass
class IFEvalSizes:
    eft: int = 1000               # training prompts M0 answers (EFT sets and IFT rows come from the answers)
    eft_samples: int = 4          # responses M0 samples per EFT prompt
    ift: int = 1000               # at most this many IFT rows
    eval: int = 200               # held-out prompts for the policy
    judge_eval: int = 60          # held-out ranked sets for the judge (Table 4)
    judge_eval_samples: int = 4   # responses M0 samples per judge_eval prompt
    judge_eval_draws: int = 3     # held-out prompts answered per wanted ranked set (sets of one score are dropped)


class IFEvalSeedData(SeedData):
    """IFEval-style verifiable instruction following (module docstring). Capabilities: GroundTruth (grade),
    InstructionPool (sample_instruction), RankedResponses (ranked_sets, after build_eft), ModelJudgedEFT
    (build_eft) and ModelMadeJudgeEval (build_judge_eval)."""

    def __init__(self, name: str, seed: int, eft: bool = True, ift: str = "own_passing",
                 two_constraints: float = 0.5, held_out_topics: float = 0.25, max_required_words: int | None = 150,
                 split_seed: int = 0, validation_topics: float = 0.1, eval_split: str = "test",
                 max_new_tokens: int = 256, temperature: float = 0.7, top_p: float = 0.9,
                 sizes: DictConfig | dict | None = None):
        s = cast(dict, OmegaConf.to_container(sizes, resolve=True)) if isinstance(sizes, DictConfig) else dict(sizes or {})
        known = set(IFEvalSizes.__dataclass_fields__)
        unknown = [k for k in s if k not in known and k not in IGNORED_SIZES]
        check(*[Problem(f"sizes.{k}", "is not a size of data=ifeval", f"use one of {', '.join(sorted(known))}")
                for k in unknown])
        z = IFEvalSizes(**{k: v for k, v in s.items() if k in known})
        self.name, self.seed, self.use_eft, self.ift_source = name, int(seed), bool(eft), ift
        check(at_least(z.eft, 1, "sizes.eft", "set sizes.eft >= 1: M0 answers these training prompts for EFT and IFT"),
              require(isinstance(z.eft_samples, int) and z.eft_samples >= 2, "sizes.eft_samples",
                      f"is {z.eft_samples!r}, must be a whole number >= 2",
                      "set sizes.eft_samples=4 (an EFT set needs two responses of different scores)"),
              at_least(z.ift, 0, "sizes.ift", "set sizes.ift >= 0 (the most IFT rows kept)"),
              at_least(z.eval, 1, "sizes.eval", "set sizes.eval >= 1: the policy is evaluated on these"),
              at_least(z.judge_eval, 1, "sizes.judge_eval", "set sizes.judge_eval >= 1: the judge is evaluated on these"),
              require(isinstance(z.judge_eval_samples, int) and z.judge_eval_samples >= 2, "sizes.judge_eval_samples",
                      f"is {z.judge_eval_samples!r}, must be a whole number >= 2",
                      "set sizes.judge_eval_samples=4 (a ranked set needs two responses of different scores)"),
              at_least(z.judge_eval_draws, 1, "sizes.judge_eval_draws",
                       "set sizes.judge_eval_draws=3 (held-out prompts answered per wanted ranked set)"),
              require(ift in IFT_SOURCES, "ift", f"is {ift!r}, must be one of {', '.join(IFT_SOURCES)}",
                      "set ift=own_passing (M0's checker-passing answers) or ift=none (no IFT rows)"),
              require(self.use_eft or ift != "none", "ift", "is none and eft is false: M1 would be trained on nothing",
                      "set ift=own_passing, or eft=true"),
              require(isinstance(two_constraints, (int, float)) and 0 <= two_constraints <= 1, "two_constraints",
                      f"is {two_constraints!r}, must be in [0, 1]",
                      "set two_constraints=0.5 (the share of prompts with a second constraint)"),
              require(isinstance(held_out_topics, (int, float)) and 0 < held_out_topics < 1, "held_out_topics",
                      f"is {held_out_topics!r}, must be in (0, 1)",
                      "set held_out_topics=0.25 (the share of topics held out for eval and judge_eval)"),
              require(isinstance(validation_topics, (int, float)) and 0 <= validation_topics
                      and held_out_topics + validation_topics < 1, "validation_topics",
                      f"is {validation_topics!r}: must be >= 0 and leave training topics beside held_out_topics",
                      "set validation_topics=0.1 (the share of topics held out for the validation split)"),
              require(eval_split in EVAL_SPLITS, "eval_split", f"is {eval_split!r}, must be one of {', '.join(EVAL_SPLITS)}",
                      "set eval_split=test (reported runs) or eval_split=validation (choosing a recipe)"),
              require(eval_split != "validation" or validation_topics > 0, "eval_split",
                      "is validation, but validation_topics is 0: there is no validation split",
                      "set validation_topics=0.1"),
              require(isinstance(split_seed, int), "split_seed", f"is {split_seed!r}, must be a whole number",
                      "set split_seed=0 (the test set; keep it fixed across the seeds of an experiment)"),
              require(max_required_words is None or (isinstance(max_required_words, int) and max_required_words >= 100),
                      "max_required_words", f"is {max_required_words!r}, must be null or a whole number >= 100",
                      "set max_required_words=150 (IFEval's 'at least N words' starts at 100), or null for IFEval's 100-500"),
              *sampling_problems(temperature, top_p, max_new_tokens))
        self.sizes = z
        self.two_constraints, self.held_out_topics, self.max_required_words = two_constraints, held_out_topics, max_required_words
        self.split_seed, self.validation_topics, self.eval_split = split_seed, validation_topics, eval_split
        self.sampling = Sampling(max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_p=float(top_p))
        self.files: dict[str, Path] = {}
        self._generators: tuple[PromptGenerator, PromptGenerator, PromptGenerator | None] | None = None

    # --- prompts ------------------------------------------------------------------------------------
    def generators(self) -> tuple[PromptGenerator, PromptGenerator, PromptGenerator | None]:
        """(training, held-out (test), validation or None) generators over disjoint base tasks
        (tasks.split_base_tasks), chosen by `split_seed`."""
        if self._generators is None:
            train, held, val = split_base_tasks(self.split_seed, self.held_out_topics, self.validation_topics)
            make = lambda b: PromptGenerator(b, self.two_constraints, self.max_required_words)  # noqa: E731
            self._generators = (make(train), make(held), make(val) if val else None)
        return self._generators

    def build(self, out_dir: str | Path) -> "IFEvalSeedData":
        out_dir = Path(out_dir)
        names = BUILT + ("judge_eval", "judge_eval_candidates", "eft_sets", "eft_graded", "ift")
        self.files = {n: out_dir / f"{n}.jsonl" for n in names}
        if all(self.files[n].exists() for n in BUILT):  # resume: the prompts are a function of the seed
            return self
        train, held, val = self.generators()
        z = self.sizes
        # The held-out draws follow split_seed, never the training seed: every seed is measured on one test set.
        test = unique_prompts(held, random.Random(f"ifeval-eval:{self.split_seed}"), z.eval)
        judge = unique_prompts(held, random.Random(f"ifeval-judge-eval:{self.split_seed}"), z.judge_eval * z.judge_eval_draws,
                               exclude=[p.instruction for p in test])
        evals = test if self.eval_split == "test" else \
            unique_prompts(val, random.Random(f"ifeval-validation:{self.split_seed}"), z.eval)  # type: ignore[arg-type]
        eft = unique_prompts(train, random.Random(f"ifeval-eft:{self.seed}"), z.eft)
        for n, prompts in (("eval", evals), ("judge_eval_prompts", judge), ("eft_prompts", eft)):
            write_jsonl(self.files[n], [p.to_row() for p in prompts])
        return self

    def seed_instructions(self) -> list[str]:
        """The EFT prompts (training base tasks): few-shot examples and the novelty reference of prompt sources."""
        return [r["instruction"] for r in read_jsonl(self.files["eft_prompts"])]

    def sample_instruction(self, rng: random.Random) -> str:
        """A fresh prompt from the training base tasks (never a held-out one: InstructionPool)."""
        return self.generators()[0].sample(rng).instruction

    # --- ground truth -------------------------------------------------------------------------------
    def grade(self, instruction: str, response: str) -> IFGrade | None:
        return grade(instruction, response)

    def accuracies(self, grades: list[IFGrade]) -> dict[str, float | None]:
        """IFEval's four accuracies (GradeAccuracies): prompt_strict (= gt_exact), prompt_loose,
        instruction_strict, instruction_loose."""
        return ifeval_metrics(grades)

    def judgment(self, instruction: str, response: str) -> str:
        """The EFT target judgment of `response` (grader.judgment); the instruction must be gradable."""
        constraints = parse_instruction(instruction)
        if constraints is None:
            raise ValueError(f"not a gradable instruction: {instruction!r}")
        return judgment(constraints, grade(instruction, response))  # type: ignore[arg-type]

    # --- model-made data ----------------------------------------------------------------------------
    def _sample_graded(self, model, tools: EFTJudgingTools, prompts: list[str], n: int, desc: str) -> list[dict[str, Any]]:
        tok = tools.tokenizer
        texts = distributed.split_map(lambda part: sample(model, tok, [prompt_ids(tok, p) for p in part], self.sampling,
                                                          n=n, batch_size=tools.batch_size, desc=desc), prompts)
        return [graded_set(p, rs, [self._grade(p, r) for r in rs]) for p, rs in zip(prompts, texts)]

    def _grade(self, instruction: str, response: str) -> IFGrade:
        g = grade(instruction, response)
        if g is None:
            raise ValueError(f"a generated prompt is not gradable: {instruction!r}")
        return g

    @staticmethod
    def _m0(tools: EFTJudgingTools):
        if tools.load_m0 is None:
            raise ValueError("data=ifeval samples M0's own responses: the loop's EFTJudgingTools must set load_m0")
        return tools.load_m0()

    def build_judge_eval(self, tools: EFTJudgingTools) -> None:
        """judge_eval.jsonl from M0's sampled responses to the held-out judge_eval prompts (once: a resumed job
        finds it). Runs before M0 is evaluated, since every model's judge metrics are taken on these sets."""
        target = self.files["judge_eval"]
        if distributed.share_from_main(target.exists):
            return
        z = self.sizes
        prompts = [r["instruction"] for r in read_jsonl(self.files["judge_eval_prompts"])]
        model = self._m0(tools)
        seed_sampling("ifeval-judge-eval", self.seed)
        sets = self._sample_graded(model, tools, prompts, z.judge_eval_samples, "ifeval judge-eval responses")
        tools.release(model)
        chosen = ranked_sets(sets, z.judge_eval)
        if not chosen:
            raise RuntimeError(f"none of the {len(prompts)} held-out judge_eval prompts got responses of different "
                               f"scores from M0 ({z.judge_eval_samples} samples each); raise data.sizes.judge_eval_draws "
                               f"or data.sizes.judge_eval_samples")
        if len(chosen) < z.judge_eval:
            log.warning("judge_eval: %d ranked sets of the %d wanted (%d prompts answered); raise "
                        "data.sizes.judge_eval_draws for more", len(chosen), z.judge_eval, len(prompts))
        if distributed.is_main():
            write_jsonl(self.files["judge_eval_candidates"], sets)
            write_jsonl(target, chosen)
        distributed.barrier()
        log.info("judge_eval: %d ranked sets from M0's responses to %d held-out prompts", len(chosen), len(prompts))

    def build_eft(self, tools: EFTJudgingTools) -> None:
        """eft_sets.jsonl, eft_graded.jsonl and ift.jsonl from M0's sampled responses to the EFT prompts, graded
        by the checkers (once: a resumed job finds them). The paper's EFT judgments come from a model; here the
        checker is the ground truth, so every target judgment is right."""
        made = (self.files["eft_sets"], self.files["eft_graded"], self.files["ift"])
        if distributed.share_from_main(lambda: all(f.exists() for f in made)):
            return
        z = self.sizes
        prompts = self.seed_instructions()
        model = self._m0(tools)
        seed_sampling("ifeval-eft", self.seed)
        sets = self._sample_graded(model, tools, prompts, z.eft_samples, "ifeval EFT responses")
        tools.release(model)
        eft = eft_rows(sets, self.judgment, random.Random(f"ifeval-eft-balance:{self.seed}"))
        ift = ift_rows(sets, z.ift) if self.ift_source == "own_passing" else []
        if self.use_eft and not eft:
            raise RuntimeError(f"no EFT row: M0's {z.eft_samples} samples of each of the {len(prompts)} EFT prompts "
                               "all scored alike; raise data.sizes.eft or data.sizes.eft_samples (or data.eft=false)")
        if not self.use_eft and not ift:
            raise RuntimeError(f"M1 has nothing to train on: data.eft=false and no response of M0 to the {len(prompts)} "
                               "EFT prompts passes its constraints; raise data.sizes.eft or use data.eft=true")
        self._check_judgment_length(tools, eft)
        if distributed.is_main():
            write_jsonl(self.files["eft_sets"], sets)
            write_jsonl(self.files["eft_graded"], eft)
            write_jsonl(self.files["ift"], ift)
        distributed.barrier()
        hist = {k: sum(r["score"] == k for r in eft) for k in range(6)}
        log.info("EFT: %d rows (scores %s) from %d contrastive sets of %d prompts; IFT: %d own passing responses (%s)",
                 len(eft), hist, len(ranked_sets(sets)), len(prompts), len(ift), self.ift_source)

    @staticmethod
    def _check_judgment_length(tools: EFTJudgingTools, rows: list[dict[str, Any]]) -> None:
        budget = getattr(getattr(tools.judge, "sampling", None), "max_new_tokens", None)
        if not rows or budget is None:
            return
        lengths = [len(tools.tokenizer(r["judgment"], add_special_tokens=False)["input_ids"]) for r in rows]
        over = sum(n > budget for n in lengths)
        if over:
            log.warning("%d of %d EFT judgments are longer than judge.max_new_tokens=%d tokens (longest %d): the "
                        "model's own judgments would be cut before their score; raise judge.max_new_tokens",
                        over, len(rows), budget, max(lengths))

    # --- the seed-data interface --------------------------------------------------------------------
    def _model_made(self, name: str, stage: str) -> Path:
        path = self.files[name]
        if not path.exists():
            raise FileNotFoundError(f"{path} is made from M0's responses by {stage}, which the loop runs first")
        return path

    def ift(self) -> list[dict[str, Any]]:
        if self.ift_source == "none":
            return []
        return read_jsonl(self._model_made("ift", "build_eft (before M1)"))

    def eft_graded(self) -> list[dict[str, Any]]:
        if not self.use_eft:
            return []
        return read_jsonl(self._model_made("eft_graded", "build_eft (before M1)"))

    def eft_preference_pairs(self) -> list[dict[str, Any]]:
        """Per contrastive EFT set, its best response against its worst (pairwise judges)."""
        if not self.use_eft:
            return []
        pairs = []
        for s in self.ranked_sets():
            sc = s["scores"]
            pairs.append({"instruction": s["instruction"], "chosen": s["responses"][sc.index(max(sc))],
                          "rejected": s["responses"][sc.index(min(sc))]})
        return pairs

    def ranked_sets(self) -> list[dict[str, Any]]:
        """M0's contrastive EFT sets, every sampled response with its checker score (RankedResponses); the
        held-out judge_eval sets are never among them."""
        return ranked_sets(read_jsonl(self._model_made("eft_sets", "build_eft (before M1)")))

    def judge_eval_sets(self) -> list[dict[str, Any]]:
        return read_jsonl(self._model_made("judge_eval", "build_judge_eval (before M0's evaluation)"))
