"""The embedded world as seed data (conf/data/world.yaml): deterministic from `seed`, graded by a program.

Besides the seed-data interface it offers every optional capability: a ground-truth grader, a pool of
fresh instructions, and a corpus to pretrain the tiny M0 on.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import Problem, at_least, check, require
from srlm_exp.data.distill import Distilled
from srlm_exp.data.seed_data import JudgmentReading, SeedData
from srlm_exp.world.grader import JUDGMENT_PHRASES, Grade, grade, read_judgment
from srlm_exp.world.judge_prompt import PAPER_JUDGE_PROMPT
from srlm_exp.world.build import N_SCORES, SELF_INSTRUCT_FAMILY, WorldSizes, build_world
from srlm_exp.world.tasks import parse_instruction, sample_task

FILES = ("corpus", "ift", "eft_raw", "eval", "judge_eval")


class WorldSeedData(SeedData):
    def __init__(self, name: str, seed: int, eft: bool, sizes: DictConfig | dict):
        self.name = name
        self.seed = int(seed)
        self.use_eft = bool(eft)
        s = cast(dict, OmegaConf.to_container(sizes, resolve=True)) if isinstance(sizes, DictConfig) else dict(sizes)
        known = set(WorldSizes.__dataclass_fields__)
        check(*[Problem(f"sizes.{k}", "is not a size of the world", f"use one of {', '.join(sorted(known))}")
                for k in s if k not in known])
        self.sizes = WorldSizes(**s)
        z = self.sizes
        check(at_least(z.ift, 1, "sizes.ift", "set sizes.ift >= 1: M1 learns its tasks from these rows (default 25600)"),
              at_least(z.eval, 1, "sizes.eval", "set sizes.eval >= 1: the policy is evaluated on these"),
              at_least(z.judge_eval, 1, "sizes.judge_eval", "set sizes.judge_eval >= 1: the judge is evaluated on these"),
              at_least(z.eft, 1 if self.use_eft else 0, "sizes.eft",
                       "set sizes.eft >= 1, or data.eft=false for the paper's no-EFT ablation"),
              at_least(z.corpus, 0, "sizes.corpus"), at_least(z.self_instruct, 0, "sizes.self_instruct"),
              require(1 <= z.eft_per_set <= N_SCORES, "sizes.eft_per_set", f"is {z.eft_per_set}, must be in 1..{N_SCORES}",
                      "set sizes.eft_per_set=3 (one score per response; scores are 0..5)"),
              require(2 <= z.candidates_per_judge_set <= N_SCORES, "sizes.candidates_per_judge_set",
                      f"is {z.candidates_per_judge_set}, must be in 2..{N_SCORES}",
                      "set sizes.candidates_per_judge_set=4 (ranked sets need 2+ responses of distinct scores)"))
        self.files: dict[str, Path] = {}
        self._held_out: frozenset[str] | None = None

    def build(self, out_dir: str | Path) -> "WorldSeedData":
        out_dir = Path(out_dir)
        if all((out_dir / f"{n}.jsonl").exists() for n in FILES):  # resume: the data is deterministic
            self.files = {n: out_dir / f"{n}.jsonl" for n in FILES}
        else:
            self.files = build_world(out_dir, self.seed, self.sizes)
        return self

    def seed_instructions(self) -> list[str]:
        # The instruction-writing requests of the IFT data are not tasks to imitate.
        return [r["instruction"] for r in self.ift() if r.get("family") != SELF_INSTRUCT_FAMILY]

    def eft_graded(self) -> list[dict[str, Any]]:
        """EFT rows: instruction, response, grader score and the justification a good judge would write
        (the correct answer, what the response did, `Score: k`)."""
        if not self.use_eft:
            return []
        return read_jsonl(self.files["eft_raw"])

    def ranked_sets(self) -> list[dict[str, Any]]:
        """The EFT sets (several responses to one instruction, grader-scored) as ranked sets, whether or not
        EFT is used; the held-out judge sets are never among them."""
        sets: list[dict[str, Any]] = []
        for r in read_jsonl(self.files["eft_raw"]):
            if not sets or sets[-1]["instruction"] != r["instruction"]:
                sets.append({"instruction": r["instruction"], "responses": [], "scores": []})
            sets[-1]["responses"].append(r["response"])
            sets[-1]["scores"].append(r["score"])
        return sets

    def eft_preference_pairs(self) -> list[dict[str, Any]]:
        """EFT for pairwise judges: within each EFT set, each response against the next one of another score."""
        if not self.use_eft:
            return []
        rows = read_jsonl(self.files["eft_raw"])
        pairs = []
        for a, b in zip(rows, rows[1:]):
            if a["instruction"] == b["instruction"] and a["score"] != b["score"]:
                chosen, rejected = (a, b) if a["score"] > b["score"] else (b, a)
                pairs.append({"instruction": a["instruction"], "chosen": chosen["response"], "rejected": rejected["response"]})
        return pairs

    # --- capabilities ------------------------------------------------------------------------------
    def grade(self, instruction: str, response: str) -> Grade | None:
        return grade(instruction, response)

    def read_judgment(self, instruction: str, response: str, judgment: str) -> JudgmentReading | None:
        task = parse_instruction(instruction)
        return None if task is None else read_judgment(task, response, judgment)

    def sample_instruction(self, rng: random.Random) -> str:
        """A fresh task, never one of the held-out instructions (eval, judge_eval): training on an
        evaluation prompt would leak it. Small families (26 capital letters x 3 templates) make a
        held-out draw common, so draws repeat until one is not held out."""
        if self._held_out is None:
            self._held_out = frozenset(r["instruction"] for n in ("eval", "judge_eval") for r in read_jsonl(self.files[n]))
        for _ in range(1000):
            text = sample_task(rng).instruction
            if text not in self._held_out:
                return text
        raise RuntimeError("1000 draws in a row were held-out instructions: data.sizes.eval/judge_eval cover the task space")

    def corpus_texts(self) -> list[str]:
        return [r["text"] for r in read_jsonl(self.files["corpus"])]

    def tokenizer_texts(self) -> list[str]:
        """What the tiny model's tokenizer learns its vocabulary from: the world's text and the paper's
        judge prompt (a real base model has read such text; every judge option shares this vocabulary)."""
        texts = self.corpus_texts()
        texts += [r["instruction"] + "\n" + r["response"] for r in self.ift()]
        texts += [r["response"] + "\n" + r["judgment"] for r in read_jsonl(self.files["eft_raw"])]
        texts += list(JUDGMENT_PHRASES.values()) * 20
        texts += [PAPER_JUDGE_PROMPT] * 20
        return texts


class DistilledWorld(Distilled, WorldSeedData):
    """The embedded world with its IFT responses written by a teacher (data=distill, Zephyr's dSFT)."""

    def __init__(self, *args, teacher_path: str, refine_instructions: bool = False, max_new_tokens: int = 32,
                 temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 64, **kwargs):
        WorldSeedData.__init__(self, *args, **kwargs)
        self._init_distill(teacher_path, refine_instructions, max_new_tokens, temperature, top_p, batch_size)
