"""Seed-data sources (conf/data/*.yaml): where IFT/EFT seed data, evaluation instructions and
ranked judge-evaluation sets come from, and whether a ground-truth grader exists."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from srlm_exp.artifacts import read_jsonl
from srlm_exp.world.grader import grade, justification, response_with_score
from srlm_exp.world.seed_data import WorldSizes, build_world
from srlm_exp.world.tasks import parse_instruction


class SeedData:
    """Interface of a seed-data source; files live in the job's `data/` directory."""

    has_ground_truth = False
    files: dict[str, Path]

    def ift(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files["ift"])

    def eval_rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files["eval"])

    def judge_eval_sets(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files["judge_eval"])

    def seed_instructions(self) -> list[str]:
        return [r["instruction"] for r in self.ift()]

    def grade(self, instruction: str, response: str):
        raise NotImplementedError(f"{type(self).__name__} has no ground-truth grader")


class WorldSeedData(SeedData):
    """The embedded instruction world: deterministic from `seed`, graded by a program."""

    has_ground_truth = True

    def __init__(self, name: str, seed: int, eft: bool, sizes: DictConfig | dict):
        self.name = name
        self.seed = int(seed)
        self.use_eft = bool(eft)
        s = OmegaConf.to_container(sizes, resolve=True) if isinstance(sizes, DictConfig) else dict(sizes)
        self.sizes = WorldSizes(**s)
        self.files: dict[str, Path] = {}

    def build(self, out_dir: str | Path) -> "WorldSeedData":
        out_dir = Path(out_dir)
        names = ("corpus", "ift", "eft_raw", "eval", "judge_eval")
        if all((out_dir / f"{n}.jsonl").exists() for n in names):  # resume: data is deterministic
            self.files = {n: out_dir / f"{n}.jsonl" for n in names}
        else:
            self.files = build_world(out_dir, self.seed, self.sizes)
        return self

    def eft_graded(self) -> list[dict[str, Any]]:
        """EFT rows: instruction, response, grader score and the short justification ending `Score: k`."""
        if not self.use_eft:
            return []
        return [dict(r, judgment=justification(r["score"])) for r in read_jsonl(self.files["eft_raw"])]

    def eft_preference_pairs(self) -> list[dict[str, Any]]:
        """EFT for pairwise judges: each EFT instruction with a better and a worse response."""
        if not self.use_eft:
            return []
        rng = random.Random(f"eft-pairs:{self.seed}")
        rows = []
        for r in read_jsonl(self.files["eft_raw"]):
            task = parse_instruction(r["instruction"])
            other = rng.choice([s for s in range(6) if s != r["score"]])
            alt = response_with_score(task, other, rng)
            chosen, rejected = (r["response"], alt) if r["score"] > other else (alt, r["response"])
            rows.append({"instruction": r["instruction"], "chosen": chosen, "rejected": rejected})
        return rows

    def grade(self, instruction: str, response: str):
        return grade(instruction, response)
