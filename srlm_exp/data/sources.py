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
        """The IFT instructions few-shot prompt generation draws its examples from."""
        return [r["instruction"] for r in self.ift() if r.get("family") != "self_instruct"]

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


class OasstSeedData(SeedData):
    """Open Assistant seed data (SPEC §1.1). IFT: first-turn English replies of human rank 0.
    EFT the paper's way: the IFT-only model judges ranked replies; only sets whose scores order
    the replies like the humans are kept (`needs_model_eft`: the pipeline runs that stage)."""

    has_ground_truth = False
    needs_model_eft = True

    def __init__(self, name: str, source: str, seed: int, eft: bool = True, lang: str = "en", n_eval: int = 253,
                 n_judge_eval: int = 100, max_ift: int | None = 3200, max_eft_sets: int | None = 1000,
                 downsample_score: int | None = 4, max_share: float = 0.3, sizes: dict | None = None):
        if sizes:  # debug=smoke shrinks every data source through data.sizes
            max_ift, n_eval, n_judge_eval = sizes.get("ift", max_ift), sizes.get("eval", n_eval), sizes.get("judge_eval", n_judge_eval)
            max_eft_sets = sizes.get("eft", max_eft_sets)
        self.name, self.source, self.seed, self.use_eft, self.lang = name, source, int(seed), bool(eft), lang
        self.n_eval, self.n_judge_eval, self.max_ift, self.max_eft_sets = n_eval, n_judge_eval, max_ift, max_eft_sets
        self.downsample_score, self.max_share = downsample_score, max_share
        self.files: dict[str, Path] = {}

    def build(self, out_dir: str | Path) -> "OasstSeedData":
        from srlm_exp.data.oasst import first_turn_threads, load_oasst_messages, split_seed_data, write_split

        out_dir = Path(out_dir)
        names = ("ift", "eft_candidates", "eval", "judge_eval")
        if all((out_dir / f"{n}.jsonl").exists() for n in names):
            self.files = {n: out_dir / f"{n}.jsonl" for n in names}
        else:
            threads = first_turn_threads(load_oasst_messages(self.source), lang=self.lang)
            splits = split_seed_data(threads, self.seed, self.n_eval, self.n_judge_eval, self.max_ift)
            if self.max_eft_sets is not None:
                splits["eft_candidates"] = splits["eft_candidates"][: self.max_eft_sets]
            self.files = write_split(splits, out_dir)
        self.files["eft_graded"] = out_dir / "eft_graded.jsonl"
        return self

    def eft_candidates(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files["eft_candidates"])

    def select_eft(self, judged_scores, judgments) -> list[dict[str, Any]]:
        from srlm_exp.data.oasst import select_eft

        return select_eft(self.eft_candidates(), judged_scores, judgments, random.Random(self.seed),
                          downsample_score=self.downsample_score, max_share=self.max_share)

    def eft_graded(self) -> list[dict[str, Any]]:
        if not self.use_eft:
            return []
        if not self.files["eft_graded"].exists():
            raise FileNotFoundError(f"{self.files['eft_graded']} is made by the IFT-only model's judging stage; "
                                    "run the pipeline (it builds it before M1)")
        return read_jsonl(self.files["eft_graded"])

    def eft_preference_pairs(self) -> list[dict[str, Any]]:
        """Best vs worst human-ranked reply of each EFT set (pairwise judges)."""
        if not self.use_eft:
            return []
        return [{"instruction": s["instruction"], "chosen": s["responses"][max(range(len(s["scores"])), key=s["scores"].__getitem__)],
                 "rejected": s["responses"][min(range(len(s["scores"])), key=s["scores"].__getitem__)]}
                for s in self.eft_candidates() if len(set(s["scores"])) > 1]
