"""The job directory: where each artifact of a run lives, named once.

    <job>/data/                    the seed data (its own files: the source's `files`)
    <job>/iteration_0/             M0's evaluation (M0 itself is in the cache)
    <job>/iteration_t/model/       M(t), a plain model directory (t >= 1)
    <job>/iteration_t/...          M(t)'s evaluation and what it trained on; for t >= 2 also AIFT(M(t-1)):
                                   the data M(t) was trained on (prompts, candidates, pairs, stats)

Every stage gets an iteration directory, never a path it builds itself; files are written through
`artifacts.py` (atomic).
"""
from __future__ import annotations

from pathlib import Path

DATA = "data"
MODEL = "model"

# The job's own files, in <job>/
SUMMARY = "summary.json"                # one entry per model: what reports read (summary.py)
RESOLVED_CONFIG = "resolved_config.yaml"  # the settings that made the job: a rerun compares against them (resume.py)
BRANCHED_FROM = "branched_from.json"    # a branched job's source and the model it branched after (branch.py)

# AIFT(M(t-1)), in iteration_t/: what M(t) trains on
PROMPTS = "prompts.jsonl"
CANDIDATES = "candidates.jsonl"
PAIRS = "pairs.jsonl"
STATS = "stats.json"
AIFT_FILES = (PROMPTS, CANDIDATES, PAIRS, STATS)   # all four: AIFT is done
CURRICULUM = "curriculum.json"          # which judged prompts were kept (curriculum=...)
JUDGE_PAIRS = "judge_pairs.jsonl"       # Meta-Rewarding's judge pairs (meta_judge=...), for DPO
META_JUDGE_STATS = "meta_judge.json"
META_JUDGMENTS = "meta_judgments.jsonl"  # every battle's raw meta-judgment and verdict
JUDGE_REPORT = "judge_report.json"      # the judge's own figures for the iteration (e.g. the reward model's quality)
REWARD_MODEL = "reward_model"           # judge=reward_model retrained on AIFT(M(t-1))'s candidates

# M(t) itself, in iteration_t/
TRAINING = "training.json"              # what M(t) was trained on (counts)
VALUE_HEAD = "value_head.pt"            # train=ppo: the value head beside M(t)
EVAL_RESPONSES = "eval_responses.jsonl"
EVAL_SAMPLED_RESPONSES = "eval_sampled_responses.jsonl"


def iteration_dir(job_dir: str | Path, t: int) -> Path:
    """<job>/iteration_t: M(t), its evaluation and (t >= 2) the AIFT data it was trained on."""
    return Path(job_dir) / f"iteration_{t}"


def job_dir_of(iteration: str | Path) -> Path:
    """The job directory an iteration directory belongs to."""
    return Path(iteration).parent
