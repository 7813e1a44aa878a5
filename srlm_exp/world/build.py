"""Deterministic world data from a seed: pretraining corpus, IFT/EFT seeds and held-out sets.

IFT is large (tens of thousands of rows, read about once: as good as fresh samples every step, which a
small model needs to learn its tasks); EFT comes in contrastive sets, several responses of different
scores to one instruction, each with the justification a good judge would write (grader.judgment).
Held-out instructions (eval, judge_eval) never appear in any training split."""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srlm_exp.artifacts import write_jsonl

from .grader import canonical_response, grade_task, judgment, response_with_score
from .tasks import FAMILIES, ORDINALS, WORDS, Task, sample_task, spaced

__all__ = ["WorldSizes", "build_world"]

N_SCORES = 6


@dataclass
class WorldSizes:
    """Row counts of each split (corpus counts documents, eft counts instructions)."""

    corpus: int = 0
    ift: int = 300
    self_instruct: int = 30        # IFT rows that ask for new tasks in the self-instruct format
    eft: int = 100
    eft_per_set: int = 3           # responses of different scores per EFT instruction
    eval: int = 100
    judge_eval: int = 40
    candidates_per_judge_set: int = 4


def _rng(seed: int, stream: str) -> random.Random:
    # str seeds hash via sha512: stable across processes, independent streams per split.
    return random.Random(f"srlm-world:{seed}:{stream}")


def _tasks(rng: random.Random, n: int, exclude: set[str], unique: bool) -> list[Task]:
    """``n`` tasks with instructions not in ``exclude`` (distinct ones if ``unique``), families round-robin."""
    names = list(FAMILIES)
    seen = set(exclude)
    tasks = []
    for i in range(n):
        family = FAMILIES[names[i % len(names)]]
        for _ in range(10_000):
            task = family.sample(rng)
            if task.instruction not in seen:
                break
        else:
            raise RuntimeError(f"instruction space of {family.name!r} exhausted")
        if unique:
            seen.add(task.instruction)
        tasks.append(task)
    return tasks


def _plain_sentence(rng: random.Random) -> str:
    """A non-instruction fact sentence for the corpus."""
    kind = rng.randrange(6)
    if kind == 0:
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 6)))
        return f"The word {spaced(word)} has {len(word)} letters."
    if kind == 1:
        x, y = sorted(rng.sample(string.ascii_lowercase, 2))
        return f"The letter {x} comes before the letter {y}."
    if kind == 2:
        x = rng.choice(string.ascii_lowercase)
        return f"The capital form of {x} is {x.upper()}."
    if kind == 3:
        a, b = sorted(rng.sample(range(100), 2))
        return f"{a} is smaller than {b}." if rng.random() < 0.5 else f"{b} is larger than {a}."
    if kind == 4:
        n = rng.randint(0, 98)
        return f"After {n} comes {n + 1}."
    words = rng.sample(WORDS, 4)
    k = rng.randint(1, 4)
    return f"In {' '.join(words)} the {ORDINALS[k - 1]} word is {words[k - 1]}."


# Share of corpus documents that are lists of tasks in <task> tags: the base model's only
# exposure to the self-instruct format, the way a real LLM saw such lists in pretraining.
TASK_LIST_SHARE = 0.15
TASK_LIST_HEADER = (
    "Come up with a series of tasks and questions. Only the task/question, no further text/explanation, "
    "no additional information. The task or question should be something a person would ask a chatbot."
)


def _task_list_document(rng: random.Random, held_out: set[str]) -> str:
    tasks: list[str] = []
    while len(tasks) < rng.randint(4, 8):
        task = sample_task(rng)
        if task.instruction not in held_out:
            tasks.append(f"<task>{task.instruction}</task>")
    return TASK_LIST_HEADER + "\n" + "\n".join(tasks)


SELF_INSTRUCT_FAMILY = "self_instruct"


def self_instruct_request(examples: list[str]) -> str:
    """The prompt-generation request (SPEC §1.2): the header, then each example as <task>...</task>."""
    return TASK_LIST_HEADER + "\n" + "\n".join(f"<task>{e}</task>" for e in examples)


def _self_instruct_row(rng: random.Random, pool: list[str], held_out: set[str]) -> dict[str, Any]:
    new: list[str] = []
    while len(new) < 3:
        task = sample_task(rng)
        if task.instruction not in held_out and task.instruction not in pool:
            new.append(task.instruction)
    return {"instruction": self_instruct_request(rng.sample(pool, 8)),
            "response": "\n".join(f"<task>{t}</task>" for t in new), "family": SELF_INSTRUCT_FAMILY}


def _corpus_rows(rng: random.Random, n_docs: int, held_out: set[str]) -> list[dict[str, Any]]:
    names = list(FAMILIES)
    counter = 0
    rows = []
    for _ in range(n_docs):
        if rng.random() < TASK_LIST_SHARE:
            rows.append({"text": _task_list_document(rng, held_out)})
            continue
        lines = []
        for _ in range(rng.randint(3, 6)):
            if rng.random() < 0.25:
                lines.append(_plain_sentence(rng))
                continue
            family = FAMILIES[names[counter % len(names)]]
            counter += 1
            task = family.sample(rng)
            while task.instruction in held_out:
                task = family.sample(rng)
            # Textbook form, not the assistant form, so SFT still has something to teach.
            lines.append(f"{task.instruction} Solution: {task.answer}.")
        rows.append({"text": "\n".join(lines)})
    return rows


def build_world(out_dir: str | Path, seed: int, sizes: WorldSizes) -> dict[str, Path]:
    """Write corpus, ift, eft_raw, eval and judge_eval JSONL files; return {name: path}.

    Same seed gives byte-identical files. Held-out instructions (eval, judge_eval) never
    appear in corpus, ift or eft_raw, and families are balanced in every split.
    """
    n_cand = sizes.candidates_per_judge_set
    if not 1 <= n_cand <= N_SCORES:
        raise ValueError(f"candidates_per_judge_set must be in 1..{N_SCORES}, got {n_cand}")
    if not 1 <= sizes.eft_per_set <= N_SCORES:
        raise ValueError(f"eft_per_set must be in 1..{N_SCORES}, got {sizes.eft_per_set}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # Held-out first, so training splits can be drawn around them.
    rng = _rng(seed, "eval")
    eval_tasks = _tasks(rng, sizes.eval, set(), unique=True)
    rng.shuffle(eval_tasks)
    eval_rows = [{"instruction": t.instruction, "family": t.family, "answer": t.answer} for t in eval_tasks]

    rng = _rng(seed, "judge_eval")
    held_out = {t.instruction for t in eval_tasks}
    judge_rows: list[dict[str, Any]] = []
    for task in _tasks(rng, sizes.judge_eval, held_out, unique=True):
        scores = rng.sample(range(N_SCORES), n_cand)
        responses = [response_with_score(task, s, rng) for s in scores]
        judge_rows.append({
            "instruction": task.instruction, "family": task.family,
            "responses": responses, "scores": [grade_task(task, r).score for r in responses],
        })
    rng.shuffle(judge_rows)
    held_out |= {r["instruction"] for r in judge_rows}

    rng = _rng(seed, "ift")
    ift_tasks = _tasks(rng, sizes.ift, held_out, unique=False)
    rng.shuffle(ift_tasks)
    ift_rows = [{"instruction": t.instruction, "response": canonical_response(t), "family": t.family}
                for t in ift_tasks]
    # Instruction-writing requests (as OASST has), so M(t) can write its own prompts when asked.
    rng = _rng(seed, "ift_self_instruct")
    pool = sorted({t.instruction for t in ift_tasks})
    ift_rows += [_self_instruct_row(rng, pool, held_out) for _ in range(sizes.self_instruct)]

    # Contrastive EFT: several responses of different scores to each instruction; the score sets cycle
    # through every score in turn, so scores (and families) are balanced.
    rng = _rng(seed, "eft")
    eft_rows = []
    score_cycle: list[int] = []
    for task in _tasks(rng, sizes.eft, held_out, unique=False):
        scores = []  # list[int], as in the judge-eval loop above
        while len(scores) < sizes.eft_per_set:
            if not score_cycle:
                score_cycle = rng.sample(range(N_SCORES), N_SCORES)
            s = score_cycle.pop()
            if s not in scores:
                scores.append(s)
        for score in scores:
            response = response_with_score(task, score, rng)
            eft_rows.append({"instruction": task.instruction, "response": response, "score": score,
                             "family": task.family, "judgment": judgment(task, response)})

    corpus_rows = _corpus_rows(_rng(seed, "corpus"), sizes.corpus, held_out)

    splits = {"corpus": corpus_rows, "ift": ift_rows, "eft_raw": eft_rows,
              "eval": eval_rows, "judge_eval": judge_rows}
    return {name: write_jsonl(out / f"{name}.jsonl", rows) for name, rows in splits.items()}
