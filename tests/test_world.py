"""Tests of the embedded instruction world: tasks, ground-truth grader and seed data."""
from __future__ import annotations

import json
import random
import re
from collections import Counter

import datasets
import pytest

from srlm_exp.world.grader import (Grade, canonical_response, extract_answer, grade, grade_task, judgment, read_judgment,
                                   response_with_score)
from srlm_exp.world.build import SELF_INSTRUCT_FAMILY, WorldSizes, build_world
from srlm_exp.world.tasks import FAMILIES, parse_instruction, sample_task


# ------------------------------------------------------------------------------ tasks

def test_ten_families_with_several_templates():
    assert len(FAMILIES) == 10
    for fam in FAMILIES.values():
        assert len(fam.templates) == 3


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
    ("How many letters are in c a t?", "length", "3"),
    ("What is the first letter of d o g?", "first_letter", "d"),
    ("Which letter does d o g end with?", "last_letter", "g"),
    ("What is the capital form of q?", "capital", "Q"),
    ("What number comes after 41?", "next_number", "42"),
    ("Reverse the word c a t.", "reverse", "t a c"),
    ("Which is larger, 17 or 71?", "larger", "71"),
    ("Write c a t in upper case.", "upper", "C A T"),
    ("What is the third word in cat dog moon?", "kth_word", "moon"),
    ("Find the smallest number among 40 7 13.", "smallest", "7"),
    # tolerant of case, spacing and a missing final mark
    ("  reverse   the word c a t ", "reverse", "t a c"),
])
def test_hand_examples(instruction, family, answer):
    task = parse_instruction(instruction)
    assert task is not None and task.family == family and task.answer == answer


@pytest.mark.parametrize("text", [
    "Tell me a joke.", "", "Reverse the word cat.", "Reverse the word C A T.",
    "What is the fifth word in cat dog moon?",            # k beyond the list
    "What is the first word in cat zebra moon?",          # word outside the vocabulary
    "What number comes after 07?", "Which is larger, 5 or 5?", "What is the smallest of 5?",
])
def test_ungradable_instructions(text):
    assert parse_instruction(text) is None
    assert grade(text, "The answer is 3.") is None


def test_sample_task_restricts_families():
    rng = random.Random(0)
    assert {sample_task(rng, ["length", "larger"]).family for _ in range(50)} == {"length", "larger"}
    assert {sample_task(rng).family for _ in range(300)} == set(FAMILIES)


# ----------------------------------------------------------------------------- grader

def test_extract_answer():
    assert extract_answer("The answer is t a c.") == "t a c"
    assert extract_answer("Sure. The answer is 5. The answer is 6.") == "5"
    assert extract_answer("The answer is 12") == "12"
    assert extract_answer("  t a c. ") == "t a c"
    assert extract_answer("   ") is None
    assert extract_answer("The answer is .") is None


REV = parse_instruction("Reverse the word c a t.")


@pytest.mark.parametrize("response,score", [
    ("The answer is t a c.", 5),
    ("  The answer is  t a c. ", 5),
    ("The answer is t a c. I hope this helps.", 4),
    ("The answer is t a c", 4),
    ("t a c", 3),
    ("t a c.", 3),
    ("The answer is t a c. The answer is t a c.", 3),          # right answer, stated twice
    ("The answer is t a c. " + "blah " * 20, 3),              # right answer, rambling
    ("The answer is t a x.", 2),                               # 2 of 3 letters right: close
    ("The answer is c a t.", 1),                               # edit similarity 1/3: not close
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


def test_close_answers_by_family():
    length = parse_instruction("How many letters are in c a t?")
    assert grade_task(length, "3").score == 3
    assert grade_task(length, "The answer is 4.").score == 2     # off by one
    assert grade_task(length, "The answer is 5.").score == 1
    assert grade_task(length, "The answer is c.").score == 0     # not a number
    larger = parse_instruction("Which is larger, 17 or 71?")
    assert grade_task(larger, "The answer is 17.").score == 2    # the other number of the question
    assert grade_task(larger, "The answer is 70.").score == 1
    kth = parse_instruction("What is the third word in cat dog moon?")
    assert grade_task(kth, "The answer is dog.").score == 2      # another word of the list
    assert grade_task(kth, "The answer is moan.").score == 1
    cap = parse_instruction("What is the capital form of q?")
    assert grade_task(cap, "The answer is R.").score == 2        # a neighbouring letter
    assert grade_task(cap, "The answer is r.").score == 0        # not a capital
    assert grade("What is the smallest of 3 81 17?", "The answer is 3.") == Grade(5, True, (True,) * 5, "smallest")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_response_with_score_every_family(name):
    for seed in range(40):
        rng = random.Random(seed)
        task = FAMILIES[name].sample(rng)
        for score in range(6):
            response = response_with_score(task, score, rng)
            assert grade_task(task, response).score == score, (task, score, response)


def test_judgment_gives_the_correct_answer_what_the_response_did_and_the_score():
    rng = random.Random(0)
    for fam in FAMILIES.values():
        task = fam.sample(rng)
        for score in range(6):
            response = response_with_score(task, score, rng)
            text = judgment(task, response)
            assert text.startswith(f"The correct answer is {task.answer}. ") and text.endswith(f"Score: {score}")
            if score in (1, 2):
                assert f"The response says {extract_answer(response)}," in text
            assert len(text.split()) <= 40


def test_read_judgment_checks_the_stated_answer_and_the_quoted_response():
    rng = random.Random(1)
    for fam in FAMILIES.values():
        task = fam.sample(rng)
        for score in range(6):
            response = response_with_score(task, score, rng)
            # The target judgment is right on both counts; it quotes the response only where it calls it wrong.
            assert read_judgment(task, response, judgment(task, response)) == {
                "states_answer": True, "quotes_response": True if score in (1, 2) else None}
    task = parse_instruction("Which is larger, 36 or 63?")
    response = "The answer is 36."
    assert read_judgment(task, response, "The correct answer is 36. The response says 36, which is close but wrong. "
                                         "Score: 2") == {"states_answer": False, "quotes_response": True}
    assert read_judgment(task, response, "The correct answer is 63. The response says 63, which is wrong. Score: 1") \
        == {"states_answer": True, "quotes_response": False}
    # States no answer at all (a truncated or off-format judgment): not a right one.
    assert read_judgment(task, response, "The response is correct and exact. Score: 5") \
        == {"states_answer": False, "quotes_response": None}


def test_judge_eval_reads_the_judgments_back(tmp_path):
    from srlm_exp.evaluation.judge_eval import judgment_reading
    from srlm_exp.records import CandidateJudgments
    from srlm_exp.world.source import WorldSeedData

    world = WorldSeedData("world", 3, True, dict(SMALL.__dict__)).build(tmp_path)
    sets = world.judge_eval_sets()[:2]
    task = parse_instruction(sets[0]["instruction"])
    right = [CandidateJudgments([judgment(task, r)], [0.0]) for r in sets[0]["responses"]]
    wrong = [CandidateJudgments(["The correct answer is zzz. The response says zzz, which is wrong. Score: 1"], [1.0])
             for _ in sets[1]["responses"]]
    quoted_right = sum(grade_task(task, r).score in (1, 2) for r in sets[0]["responses"])
    read = judgment_reading(world, sets, [right, wrong])
    n = len(right) + len(wrong)
    assert read["states_answer"] == pytest.approx(len(right) / n)
    assert read["quotes_response"] == pytest.approx(quoted_right / (quoted_right + len(wrong)))
    assert judgment_reading(world, [], []) == {"states_answer": None, "quotes_response": None}


# ------------------------------------------------------------------------- seed data

SMALL = WorldSizes(corpus=50, ift=40, self_instruct=4, eft=20, eft_per_set=3, eval=20, judge_eval=20,
                   candidates_per_judge_set=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("w1"), 3, SMALL)


def _rows(path):
    return [json.loads(line) for line in open(path)]


def test_build_world_files(world):
    assert set(world) == {"corpus", "ift", "eft_raw", "eval", "judge_eval"}
    lengths = {"corpus": SMALL.corpus, "ift": SMALL.ift + SMALL.self_instruct, "eft_raw": SMALL.eft * SMALL.eft_per_set,
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
    # Sets of eft_per_set responses of different scores to one instruction, scores balanced overall.
    sets = [eft[k : k + SMALL.eft_per_set] for k in range(0, len(eft), SMALL.eft_per_set)]
    assert all(len({r["instruction"] for r in s}) == 1 and len({r["score"] for r in s}) == len(s) for s in sets)
    counts = Counter(r["score"] for r in eft)
    assert set(counts) == set(range(6)) and max(counts.values()) - min(counts.values()) <= 1
    for r in eft:
        assert grade(r["instruction"], r["response"]).score == r["score"]
        assert r["judgment"] == judgment(parse_instruction(r["instruction"]), r["response"])
    for r in _rows(world["eval"]):
        assert parse_instruction(r["instruction"]).answer == r["answer"]
    for r in _rows(world["judge_eval"]):
        assert len(r["responses"]) == len(r["scores"]) == SMALL.candidates_per_judge_set
        assert len(set(r["scores"])) == len(r["scores"])
        assert [grade(r["instruction"], x).score for x in r["responses"]] == r["scores"]
    # families balanced in every split
    for name in ("ift", "eft_raw", "eval", "judge_eval"):
        counts = Counter(r["family"] for r in _rows(world[name]) if r["family"] != SELF_INSTRUCT_FAMILY)
        per = SMALL.eft_per_set if name == "eft_raw" else 1
        assert set(counts) == set(FAMILIES) and max(counts.values()) - min(counts.values()) <= per


def test_held_out_disjoint(world):
    held = {r["instruction"] for n in ("eval", "judge_eval") for r in _rows(world[n])}
    assert len(held) == SMALL.eval + SMALL.judge_eval  # distinct held-out instructions
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
