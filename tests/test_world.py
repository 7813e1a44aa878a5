"""Tests of the embedded instruction world: tasks, ground-truth grader and seed data."""
from __future__ import annotations

import json
import random
import re
from collections import Counter

import datasets
import pytest

from srlm_exp.world.grader import (
    Grade, canonical_response, extract_answer, grade, grade_task, justification,
    response_with_score, similarity,
)
from srlm_exp.world.seed_data import SELF_INSTRUCT_FAMILY, SELF_INSTRUCT_SHARE, WorldSizes, build_world
from srlm_exp.world.tasks import FAMILIES, Task, parse_instruction, sample_task


# ------------------------------------------------------------------------------ tasks

def test_at_least_seven_families_with_several_templates():
    assert len(FAMILIES) >= 7
    for fam in FAMILIES.values():
        assert 3 <= len(fam.templates) <= 4


@pytest.mark.parametrize("name", list(FAMILIES))
def test_sampled_tasks_parse_back(name):
    fam = FAMILIES[name]
    rng = random.Random(name)
    for _ in range(200):
        task = fam.sample(rng)
        assert fam.parse(task.instruction) == task
        assert parse_instruction(task.instruction) == task
        assert fam.answer_type_ok(task.answer)
        assert grade_task(task, canonical_response(task)).score == 5


@pytest.mark.parametrize("instruction,family,answer", [
    ("Reverse the word c a t.", "reverse", "t a c"),
    ("Write d o g backwards.", "reverse", "g o d"),
    ("Sort 9 2 5 in ascending order.", "sort", "2 5 9"),
    ("Put 40 7 13 7 in increasing order.", "sort", "7 7 13 40"),
    ("What is 23 plus 45?", "add", "68"),
    ("Find 99 + 99.", "add", "198"),
    ("How many times does the letter a appear in b a n a n a?", "count", "3"),
    ("In x y z w, how many times does the letter q appear?", "count", "0"),
    ("Change c a t to capital letters.", "upper", "C A T"),
    ("What is the third word in cat dog moon tree?", "kth_word", "moon"),
    ("Pick the first word from fish box sun pen six.", "kth_word", "fish"),
    ("What is the largest of 3 81 17?", "max", "81"),
    # tolerant of case, spacing and a missing final mark
    ("  reverse   the word c a t ", "reverse", "t a c"),
])
def test_hand_examples(instruction, family, answer):
    task = parse_instruction(instruction)
    assert task is not None and task.family == family and task.answer == answer


@pytest.mark.parametrize("text", [
    "Tell me a joke.", "", "Reverse the word cat.", "Reverse the word C A T.",
    "What is the fifth word in cat dog moon tree?",       # k beyond the list
    "What is the first word in cat zebra moon tree?",     # word outside the vocabulary
    "What is 07 plus 5?", "What is the largest of 5?", "Sort the numbers please.",
])
def test_ungradable_instructions(text):
    assert parse_instruction(text) is None
    assert grade(text, "The answer is 3.") is None


def test_sample_task_restricts_families():
    rng = random.Random(0)
    assert {sample_task(rng, ["add", "max"]).family for _ in range(50)} == {"add", "max"}
    assert {sample_task(rng).family for _ in range(300)} == set(FAMILIES)


# ----------------------------------------------------------------------------- grader

def test_extract_answer():
    assert extract_answer("The answer is t a c.") == "t a c"
    assert extract_answer("Sure. The answer is 5. The answer is 6.") == "5"
    assert extract_answer("The answer is 12") == "12"
    assert extract_answer("  t a c. ") == "t a c"
    assert extract_answer("   ") is None
    assert extract_answer("The answer is .") is None


def test_similarity():
    assert similarity("t a c", "t a c") == 1.0
    assert similarity("68", "69") == 0.5
    assert similarity("abc", "xyz") == 0.0
    assert similarity("2 5 9", "259") == 1.0


REV = Task("reverse", "Reverse the word c a t.", "t a c")


@pytest.mark.parametrize("response,score", [
    ("The answer is t a c.", 5),
    ("  The answer is  t a c. ", 5),
    ("The answer is t a c. I hope this helps.", 4),
    ("The answer is t a c", 4),
    ("t a c", 3),
    ("t a c.", 3),
    ("The answer is t a c. The answer is t a c.", 3),          # right answer, stated twice
    ("The answer is t a c. " + "blah " * 20, 3),              # right answer, rambling
    ("The answer is t a x.", 2),
    ("The answer is c a t.", 1),                               # sim(cat, tac) = 1/3
    ("The answer is q r s.", 1),
    ("The answer is 42.", 0),
    ("The answer is T A C.", 0),
    ("I do not know.", 0),
    ("", 0),
])
def test_grade_levels(response, score):
    g = grade_task(REV, response)
    assert g.score == score
    assert g.correct == (score >= 3)
    assert g.criteria == tuple(i < score for i in range(5))


def test_criteria_in_order_for_other_families():
    add = parse_instruction("What is 23 plus 45?")
    assert grade_task(add, "68").score == 3
    assert grade_task(add, "The answer is 69.").score == 2
    assert grade_task(add, "The answer is 12.").score == 1
    assert grade_task(add, "The answer is sixty eight.").score == 0
    kth = parse_instruction("What is the third word in cat dog moon tree?")
    assert grade_task(kth, "The answer is moan.").score == 2
    assert grade_task(kth, "The answer is moonlight.").score == 0
    assert grade("What is the largest of 3 81 17?", "The answer is 81.") == Grade(5, True, (True,) * 5)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_response_with_score_every_family(name):
    for seed in range(40):
        rng = random.Random(seed)
        task = FAMILIES[name].sample(rng)
        for score in range(6):
            response = response_with_score(task, score, rng)
            assert grade_task(task, response).score == score, (task, score, response)


def test_justification():
    for k in range(6):
        text = justification(k)
        assert text.endswith(f"Score: {k}")
        assert len(text.split()) <= 14
        assert justification(k) == text


# ------------------------------------------------------------------------- seed data

SMALL = WorldSizes(corpus=50, ift=21, eft=42, eval=14, judge_eval=14, candidates_per_judge_set=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("w1"), 3, SMALL)


def _rows(path):
    return [json.loads(line) for line in open(path)]


def test_build_world_files(world):
    assert set(world) == {"corpus", "ift", "eft_raw", "eval", "judge_eval"}
    lengths = {"corpus": SMALL.corpus, "ift": SMALL.ift + round(SMALL.ift * SELF_INSTRUCT_SHARE), "eft_raw": SMALL.eft,
               "eval": SMALL.eval, "judge_eval": SMALL.judge_eval}
    for name, path in world.items():
        assert path.exists() and not path.with_name(path.name + ".tmp").exists()
        ds = datasets.load_dataset("json", data_files=str(path), split="train")
        assert len(ds) == lengths[name]
    ift = datasets.load_dataset("json", data_files=str(world["ift"]), split="train")
    assert ift.column_names == ["instruction", "response", "family"]
    assert "Solution:" in _rows(world["corpus"])[0]["text"]
    assert all("The answer is" not in r["text"] for r in _rows(world["corpus"]))


def test_build_world_contents(world):
    for r in _rows(world["ift"]):
        if r["family"] == SELF_INSTRUCT_FAMILY:  # asks for new tasks: each must be a gradable, new instruction
            tasks = re.findall(r"<task>(.*?)</task>", r["response"])
            assert r["instruction"].count("<task>") == 8 and len(tasks) == 3
            assert all(parse_instruction(t) is not None and t not in r["instruction"] for t in tasks)
            continue
        assert grade(r["instruction"], r["response"]).score == 5
    eft = _rows(world["eft_raw"])
    assert Counter(r["score"] for r in eft) == {k: SMALL.eft // 6 for k in range(6)}
    for r in eft:
        assert grade(r["instruction"], r["response"]).score == r["score"]
    for r in _rows(world["eval"]):
        assert parse_instruction(r["instruction"]).answer == r["answer"]
    for r in _rows(world["judge_eval"]):
        assert len(r["responses"]) == len(r["scores"]) == SMALL.candidates_per_judge_set
        assert len(set(r["scores"])) == len(r["scores"])
        assert [grade(r["instruction"], x).score for x in r["responses"]] == r["scores"]
    # families balanced in every split
    for name in ("ift", "eft_raw", "eval", "judge_eval"):
        counts = Counter(r["family"] for r in _rows(world[name]) if r["family"] != SELF_INSTRUCT_FAMILY)
        assert set(counts) == set(FAMILIES) and max(counts.values()) - min(counts.values()) <= 1


def test_held_out_disjoint(world):
    held = {r["instruction"] for n in ("eval", "judge_eval") for r in _rows(world[n])}
    assert len(held) == SMALL.eval + SMALL.judge_eval
    train = {r["instruction"] for n in ("ift", "eft_raw") for r in _rows(world[n])}
    assert not held & train
    corpus = "\n".join(r["text"] for r in _rows(world["corpus"]))
    assert not any(h in corpus for h in held)


def test_build_world_deterministic(world, tmp_path):
    same = build_world(tmp_path / "same", 3, SMALL)
    other = build_world(tmp_path / "other", 4, SMALL)
    for name, path in world.items():
        assert path.read_bytes() == same[name].read_bytes()
        assert path.read_bytes() != other[name].read_bytes()
