"""Experience replay (seed 004): a share of earlier iterations' training rows (DPO pairs, or judged
candidates for the trainers that learn from them) mixed into the current iteration's.

`train.replay_share` is the share of the mixed set that comes from earlier iterations: with n current
rows and share s, round(n * s / (1 - s)) earlier rows are drawn uniformly, without replacement, from all
earlier iterations together (all of them when there are fewer). 0 turns replay off; M2, whose data is
the first the loop made, has nothing to replay.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

from srlm_exp import layout
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import Problem, require
from srlm_exp.records import PromptCandidates


def replay_share_problem(share: Any) -> Problem | None:
    ok = isinstance(share, (int, float)) and not isinstance(share, bool) and 0 <= share < 1
    return require(ok, "replay_share", f"is {share!r}, must be in [0, 1)",
                   "set replay_share=0 (no replay) or the share of earlier rows in the mix, e.g. 0.25")


def replay_count(n_current: int, share: float) -> int:
    """How many earlier rows make `share` of a mix with `n_current` current rows."""
    return round(n_current * share / (1 - share)) if share > 0 else 0


def replay_mix(current: Sequence[dict], earlier: Sequence[dict], share: float, rng: random.Random) -> tuple[list[dict], int]:
    """The current rows followed by the sampled earlier ones, and how many were replayed."""
    k = min(len(earlier), replay_count(len(current), share))
    return list(current) + rng.sample(list(earlier), k), k


def training_candidates(data_dir: Path) -> list[dict]:
    """candidates.jsonl rows of the prompts the iteration's curriculum selected (all without one)."""
    rows = read_jsonl(Path(data_dir) / layout.CANDIDATES)
    chosen = Path(data_dir) / layout.CURRICULUM
    if not chosen.exists():
        return rows
    ids = set(json.loads(chosen.read_text())["selected_prompt_ids"])
    return [r for r in rows if r["prompt_id"] in ids]


def training_rows(iteration_dir: Path, filename: str) -> list[dict]:
    """What an iteration trains on from `filename`: its candidates as its curriculum selected them, or
    every row of any other file (pairs.jsonl: the pairs already come from the selected prompts)."""
    if filename == layout.CANDIDATES:
        return training_candidates(iteration_dir)
    return read_jsonl(Path(iteration_dir) / filename)


def earlier_rows(data_dir: Path, iteration: int, filename: str) -> list[dict]:
    """The training rows of `filename` in every earlier iteration's directory that has one (iterations 2..t-1)."""
    job = layout.job_dir_of(data_dir)
    return [row for k in range(2, iteration) if (layout.iteration_dir(job, k) / filename).exists()
            for row in training_rows(layout.iteration_dir(job, k), filename)]


def with_replay(data_dir: Path, iteration: int, filename: str, share: float, seed: int) -> tuple[list[dict], int]:
    """This iteration's training rows of `filename` mixed with earlier iterations' at `share`, and how many
    were replayed."""
    rows = training_rows(data_dir, filename)
    if share <= 0:
        return rows, 0
    return replay_mix(rows, earlier_rows(data_dir, iteration, filename), share, random.Random(f"replay:{seed}:{iteration}"))


def candidates_to_train_on(data_dir: Path, iteration: int, share: float, seed: int) -> tuple[list[PromptCandidates], int]:
    """The judged candidates the trainers that learn from them (sft, reinforce, ppo) train on: this
    iteration's selected prompts plus the replayed share of earlier ones; and how many were replayed."""
    rows, replayed = with_replay(data_dir, iteration, layout.CANDIDATES, share, seed)
    return [PromptCandidates.from_json(r) for r in rows], replayed
