"""Tests of the IFEval world (srlm_exp/ifeval, data=ifeval): base tasks and their split, prompts and their
constraints, reading prompts back, IFEval's strict/loose grading and the 0-5 rubric, EFT judgments, the
seed-data source's files and checks, and EFT made with a model (a canned sampler, then a random model)."""
from __future__ import annotations

import json
import random

import pytest
from hydra.utils import instantiate

from conftest import compose
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.data.seed_data import (EFTJudgingTools, GroundTruth, InstructionPool, ModelJudgedEFT, ModelMadeJudgeEval,
                                     PretrainingCorpus, RankedResponses)
from srlm_exp.ifeval import source as source_module
from srlm_exp.ifeval.constraints import (CONFLICTS, CONSTRAINED_RESPONSE, EXCLUDED, INSTRUCTION_DICT, NTH_PARAGRAPH,
                                         NUMBER_WORDS, REPEAT_PROMPT, USABLE, asked, build_constraint, clash,
                                         compatible, make_constraint)
from srlm_exp.ifeval.eft import balance_scores, eft_rows, graded_set, ift_rows, ranked_sets
from srlm_exp.ifeval.grader import grade, ifeval_metrics, judgment, rubric_score
from srlm_exp.ifeval.parsing import parse_instruction
from srlm_exp.ifeval.prompts import PromptGenerator, join_parts, unique_prompts
from srlm_exp.ifeval.source import IFEvalSeedData
from srlm_exp.ifeval.tasks import FORMS, TOPICS, YES_NO_FORMS, all_base_tasks, split_base_tasks

SMOKE_SIZES = dict(eft=24, eft_samples=4, ift=24, eval=8, judge_eval=4, judge_eval_samples=4, judge_eval_draws=3)


def _source(seed: int = 0, **kw) -> IFEvalSeedData:
    return IFEvalSeedData("ifeval", seed, sizes=kw.pop("sizes", SMOKE_SIZES), **kw)


def _prompt(base: str, *constraints) -> str:
    """A prompt of the base task and the constraints (type id, kwargs), as the generator writes one."""
    text = base
    for type_id, kwargs in constraints:
        if type_id == REPEAT_PROMPT:
            kwargs = {"prompt_to_repeat": text}
        text = join_parts(text, make_constraint(type_id, kwargs).description)
    return text


@pytest.fixture(scope="module")
def additive5():
    return instantiate(compose(["data=ifeval"]).judge)


# ------------------------------------------------------------------------------ base tasks and the split

def test_many_base_tasks_without_commas():
    tasks = all_base_tasks()
    texts = [t.text for t in tasks]
    assert len(texts) == len(set(texts)) == len(TOPICS) * (len(FORMS) + len(YES_NO_FORMS)) >= 150
    assert len(set(TOPICS)) == len(TOPICS) == 90
    assert not [t for t in texts if "," in t or "\n" in t]  # repeat_prompt + no_comma must stay satisfiable


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_held_out_base_tasks_share_nothing_with_training(seed):
    train, held, val = split_base_tasks(seed, 0.25, 0.1)
    topics = [{t.topic for t in part} for part in (train, held, val)]
    assert all(a.isdisjoint(b) for i, a in enumerate(topics) for b in topics[i + 1:])
    assert {t.text for t in train}.isdisjoint({t.text for t in held} | {t.text for t in val})
    assert len(topics[1]) == 22 and len(topics[2]) == 9 and len(train) + len(held) + len(val) == len(all_base_tasks())
    assert split_base_tasks(seed, 0.25)[2] == []  # no validation split unless asked


def test_held_out_prompts_share_no_base_task_with_training_prompts(tmp_path):
    data = _source(3).build(tmp_path)
    train, held, _ = split_base_tasks(0, 0.25, 0.1)  # the split follows split_seed (0), not the seed
    train_texts, held_texts = {t.text for t in train}, {t.text for t in held}
    for name, allowed in (("eval", held_texts), ("judge_eval_prompts", held_texts), ("eft_prompts", train_texts)):
        rows = read_jsonl(tmp_path / f"{name}.jsonl")
        assert rows and all(r["base_task"] in allowed and r["instruction"].startswith(r["base_task"]) for r in rows)
    rng = random.Random(0)
    drawn = [data.sample_instruction(rng) for _ in range(300)]  # the loop's prompt pool
    assert all(any(d.startswith(b) for b in train_texts) and not any(d.startswith(b) for b in held_texts)
               for d in drawn)
    held_out = {r["instruction"] for n in ("eval", "judge_eval_prompts") for r in read_jsonl(tmp_path / f"{n}.jsonl")}
    assert held_out.isdisjoint(drawn) and held_out.isdisjoint(data.seed_instructions())
    evals = {r["instruction"] for r in read_jsonl(tmp_path / "eval.jsonl")}
    assert evals.isdisjoint(r["instruction"] for r in read_jsonl(tmp_path / "judge_eval_prompts.jsonl"))


# ------------------------------------------------------------------------------ constraint types

def test_excluded_types_are_the_punkt_ones_and_the_rest_check_without_nltk_data():
    """Every usable type builds and checks here (no NLTK data); the excluded ones are exactly those whose check
    needs punkt, found by calling them."""
    assert set(USABLE) | set(EXCLUDED) == set(INSTRUCTION_DICT) and not set(USABLE) & set(EXCLUDED)
    texts = ["", "Hello world. This is a test, with SOME words.\n\n* a point\n***\nP.S. bye", '"quoted"', "{\"a\": 1}"]
    rng = random.Random(0)
    for type_id in USABLE:
        c = build_constraint(type_id, rng, prompt_to_repeat="Write a poem about owls.")
        checker = INSTRUCTION_DICT[type_id](type_id)
        checker.build_description(**c.kwargs)
        for t in texts:
            checker.check_following(t)  # raises LookupError where punkt would be needed
    needs_punkt = []
    for type_id in EXCLUDED:
        checker = INSTRUCTION_DICT[type_id](type_id)
        checker.build_description()
        try:
            checker.check_following("One sentence. Two SENTENCES here.")
        except LookupError:
            needs_punkt.append(type_id)
    if len(needs_punkt) < len(EXCLUDED):
        pytest.skip(f"NLTK's punkt data is installed here: {sorted(set(EXCLUDED) - set(needs_punkt))} checked")
    assert sorted(needs_punkt) == sorted(EXCLUDED)


def test_conflicts_are_symmetric_and_include_the_registrys():
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_CONFLICTS

    for a, others in INSTRUCTION_CONFLICTS.items():
        for b in others:
            assert not compatible(a, b) and not compatible(b, a)
    for a in CONFLICTS:
        assert not compatible(a, a)
    assert not compatible("change_case:english_lowercase", "detectable_format:multiple_sections")
    assert compatible("punctuation:no_comma", "detectable_format:title")
    assert not any(compatible(CONSTRAINED_RESPONSE, t) for t in USABLE)


def test_building_is_deterministic_and_leaves_the_global_random_alone():
    state = random.getstate()
    a = [build_constraint(t, random.Random(5), prompt_to_repeat="Write x.") for t in USABLE]
    random.seed(12345)  # whatever the process's global generator holds, the draws are the caller's
    b = [build_constraint(t, random.Random(5), prompt_to_repeat="Write x.") for t in USABLE]
    random.setstate(state)
    assert a == b
    state = random.getstate()
    build_constraint("keywords:existence", random.Random(1))
    make_constraint("keywords:existence", {"keywords": ["fish", "give"]})
    assert random.getstate() == state


def test_parameter_repairs():
    rng = random.Random(0)
    for _ in range(300):
        k = build_constraint(NTH_PARAGRAPH, rng).kwargs
        assert 1 <= k["nth_paragraph"] <= k["num_paragraphs"]
        k = build_constraint(NUMBER_WORDS, rng, max_required_words=150).kwargs
        assert k["relation"] == "less than" or 100 <= k["num_words"] <= 150
    assert any(build_constraint(NUMBER_WORDS, rng).kwargs["num_words"] > 150 for _ in range(100))  # IFEval's own range


def test_clash_refuses_a_keyword_that_is_also_forbidden():
    a = make_constraint("keywords:existence", {"keywords": ["fish", "give"]})
    assert clash(a, make_constraint("keywords:forbidden_words", {"forbidden_words": ["Fish", "soup"]}))
    assert not clash(a, make_constraint("keywords:forbidden_words", {"forbidden_words": ["soup"]}))


# ------------------------------------------------------------------------------ prompts

@pytest.mark.parametrize("held", [False, True], ids=["training", "held_out"])
def test_every_generated_prompt_parses_back_and_its_constraints_combine(held):
    train, held_out, _ = split_base_tasks(0, 0.25)
    gen = PromptGenerator(held_out if held else train, two_constraints=0.5, max_required_words=150)
    rng = random.Random(1)
    seen_types, n_two = set(), 0
    for _ in range(1500):
        p = gen.sample(rng)
        assert parse_instruction(p.instruction) == p.constraints
        ids = [c.id for c in p.constraints]
        assert 1 <= len(ids) <= 2 and all(t in USABLE for t in ids)
        n_two += len(ids) == 2
        if len(ids) == 2:
            assert compatible(*ids) and not clash(*p.constraints)
        if CONSTRAINED_RESPONSE in ids:
            assert p.base_task.yes_no and ids == [CONSTRAINED_RESPONSE]
        if REPEAT_PROMPT in ids:
            assert ids[-1] == REPEAT_PROMPT and p.constraints[-1].kwargs["prompt_to_repeat"] == \
                p.instruction[: p.instruction.index("First repeat the request")].strip()
        assert p.family == ids[0] and p.instruction.startswith(p.base_task.text)
        g = grade(p.instruction, "A short answer.")
        assert g is not None and g.ids == tuple(ids) and g.family == ids[0]
        seen_types.update(ids)
    assert seen_types == set(USABLE)
    assert 0.35 < n_two / 1500 < 0.55  # half draw a second type; constrained_response takes none


def test_prompts_are_a_function_of_the_seed_only():
    train, _, _ = split_base_tasks(0, 0.25)
    gen = PromptGenerator(train, 0.5, 150)
    random.seed(1)
    a = [p.instruction for p in unique_prompts(gen, random.Random("x"), 50)]
    random.seed(2)
    b = [p.instruction for p in unique_prompts(gen, random.Random("x"), 50)]
    assert a == b and len(set(a)) == 50
    assert a != [p.instruction for p in unique_prompts(gen, random.Random("y"), 50)]


@pytest.mark.parametrize("text", [
    "Write a poem about owls.",                                             # no constraint
    "Write a poem about owls. Your response should contain less than 3 sentences.",  # an excluded (punkt) type
    "Write a poem about owls. Answer with at least 0100 words.",            # matches, does not render back
    "Write a poem. In your entire response, refrain from the use of any commas. "
    "In your entire response, refrain from the use of any commas.",        # the same type twice
    "First repeat the request word for word without change, then give your answer (1. do not say any words or "
    "characters before repeating the request; 2. the request you need to repeat does not include this sentence)",
])
def test_ungradable_texts(text):
    assert parse_instruction(text) is None
    assert grade(text, "anything") is None


def test_a_hand_written_prompt_in_the_librarys_wording_is_gradable():
    text = "Tell me about clouds. Answer with less than 50 words. Wrap your entire response with double quotation marks."
    cs = parse_instruction(text)
    assert [c.id for c in cs] == [NUMBER_WORDS, "startend:quotation"]
    assert cs[0].kwargs == {"num_words": 50, "relation": "less than"}
    assert grade(text, '"Clouds are water."').correct


# ------------------------------------------------------------------------------ grading

BASE = "Write a poem about owls."


@pytest.mark.parametrize("constraint,response,strict,loose", [
    (("punctuation:no_comma", {}), "Owls hunt at night and sleep by day.", True, True),
    (("punctuation:no_comma", {}), "Owls hunt, and sleep.", False, False),
    (("detectable_format:title", {}), "<<Night Owls>>\nThey hunt at night.", True, True),
    (("detectable_format:title", {}), "Night Owls\nThey hunt at night.", False, False),
    (("detectable_format:json_format", {}), '{"poem": "owls"}', True, True),
    (("detectable_format:json_format", {}), 'Here is the JSON:\n{"poem": "owls"}', False, True),  # first line dropped
    (("startend:quotation", {}), '"Owls hunt at night."', True, True),
    (("startend:quotation", {}), 'Sure!\n"Owls hunt at night."', False, True),
    (("startend:end_checker", {"end_phrase": "Any other questions?"}), "Owls hunt. Any other questions?", True, True),
    (("startend:end_checker", {"end_phrase": "Any other questions?"}), "Owls hunt. Any other questions?\n(end)",
     False, True),                                                                               # last line dropped
    (("startend:end_checker", {"end_phrase": "Any other questions?"}), "Owls hunt.", False, False),
    (("detectable_format:number_highlighted_sections", {"num_highlights": 2}), "*Owls* hunt at *night*.", True, True),
    (("detectable_format:number_highlighted_sections", {"num_highlights": 2}), "*Owls* hunt at night.", False, False),
    (("detectable_format:number_bullet_lists", {"num_bullets": 2}), "Owls:\n* hunt\n* sleep", True, True),
    (("detectable_format:number_bullet_lists", {"num_bullets": 2}), "* hunt\n* sleep\n* fly", False, True),
    (("keywords:existence", {"keywords": ["fish", "give"]}), "I give the owl a fish.", True, True),
    (("keywords:existence", {"keywords": ["fish", "give"]}), "I give the owl a mouse.", False, False),
    (("keywords:forbidden_words", {"forbidden_words": ["mouse"]}), "The owl ate a mouse.", False, False),
    (("length_constraints:number_words", {"num_words": 5, "relation": "less than"}), "Owls hunt at night.", True, True),
    (("length_constraints:number_words", {"num_words": 5, "relation": "at least"}), "Owls hunt.", False, False),
    (("detectable_content:postscript", {"postscript_marker": "P.S."}), "Owls hunt.\nP.S. They sleep by day.", True, True),
    (("change_case:english_lowercase", {}), "owls hunt at night and they sleep through the whole day in the old barn.",
     True, True),
    (("change_case:english_lowercase", {}), "Owls hunt at night and they sleep through the day in the old barn.",
     False, False),
    ((REPEAT_PROMPT, None), f"{BASE} Owls hunt at night.", True, True),
    ((REPEAT_PROMPT, None), "Owls hunt at night.", False, False),
])
def test_strict_and_loose_on_hand_written_responses(constraint, response, strict, loose):
    g = grade(_prompt(BASE, constraint), response)
    assert (g.strict, g.loose) == ((strict,), (loose,))
    assert g.correct is strict and g.score == (5 if strict else 4 if loose else 1)


def test_two_constraints_and_the_empty_response():
    text = _prompt(BASE, ("detectable_format:title", {}), ("punctuation:no_comma", {}))
    assert grade(text, "<<Owls>>\nThey hunt at night.").score == 5
    g = grade(text, "<<Owls>> They hunt, at night.")
    assert (g.strict, g.loose, g.score, g.correct) == ((True, False), (True, False), 3, False)
    g = grade(text, "<<Owls>>\nThey hunt, at night.")  # the comma-free variant: the last line dropped
    assert (g.strict, g.loose, g.score) == ((True, False), (True, True), 4)
    assert grade(text, "They hunt, at night.").score == 1
    text2 = _prompt(BASE, ("startend:quotation", {}), ("punctuation:no_comma", {}))
    g = grade(text2, 'Sure!\n"Owls, hunt\nat night"')  # quotation only once the first line is dropped; a comma in every variant
    assert (g.strict, g.loose, g.score) == ((False, False), (True, False), 2)
    assert grade(text2, 'Sure here:\n"Owls hunt"').score == 4       # no comma strictly, quotation loosely
    empty = grade(text, "")
    assert (empty.score, empty.correct, empty.strict, empty.loose) == (0, False, (False, False), (False, False))


def test_rubric_is_ordered_by_how_much_of_the_request_is_met():
    assert rubric_score([True], [True], False) == 5
    assert rubric_score([False], [True], False) == 4
    assert rubric_score([False], [False], False) == 1
    assert rubric_score([True, False], [True, False], False) == 3
    assert rubric_score([False, False], [True, False], False) == 2
    assert rubric_score([True, False], [True, True], False) == 4
    assert rubric_score([False, False], [False, False], True) == 0
    levels = [(False, False), (False, True), (True, True)]  # (strict, loose) of one constraint, worst first
    combos = [(a, b) for a in levels for b in levels]
    for x in combos:
        for y in combos:
            if all(levels.index(p) >= levels.index(q) for p, q in zip(x, y)):  # x meets at least what y meets
                sx = rubric_score([p[0] for p in x], [p[1] for p in x], False)
                sy = rubric_score([q[0] for q in y], [q[1] for q in y], False)
                assert sx >= sy, (x, y)


def test_ifeval_metrics():
    text = _prompt(BASE, ("detectable_format:title", {}), ("punctuation:no_comma", {}))
    grades = [grade(text, "<<Owls>>\nThey hunt at night."), grade(text, "<<Owls>> They hunt, at night."),
              grade(_prompt(BASE, ("startend:quotation", {})), 'Sure!\n"Owls"')]
    m = ifeval_metrics(grades)
    assert m == {"prompt_strict": 1 / 3, "prompt_loose": 2 / 3, "instruction_strict": 3 / 5, "instruction_loose": 4 / 5}
    assert ifeval_metrics([])["prompt_strict"] is None


def test_policy_eval_reports_ifevals_four_accuracies(tmp_path):
    """grade_responses (the loop's policy evaluation) adds the source's accuracies: IFEval's four, computed
    from the same grades, prompt_strict being gt_exact."""
    from srlm_exp.evaluation.policy import grade_responses

    data = _source(0).build(tmp_path)
    rows = data.eval_rows()
    responses = ["owls hunt at night.", "<<Owls>>\n\nOwls hunt at night. P.S. They are quiet.", "", "OWLS HUNT AT NIGHT"]
    responses = [responses[i % len(responses)] for i in range(len(rows))]
    metrics, graded = grade_responses(data, rows, responses)
    expected = ifeval_metrics([data.grade(r["instruction"], x) for r, x in zip(rows, responses)])
    assert {k: metrics[k] for k in expected} == expected
    assert metrics["prompt_strict"] == metrics["gt_exact"] and metrics["instruction_strict"] is not None
    assert len(graded) == len(rows)


def test_headroom_per_constraint_type_from_a_jobs_files(tmp_path, capsys):
    """python -m srlm_exp.ifeval.headroom: greedy (M0's eval responses), sampled and best-of-N (M0's graded
    samples) strict pass shares per constraint type, hand-computed on a two-prompt job."""
    from srlm_exp.artifacts import write_jsonl
    from srlm_exp.ifeval.eft import graded_set
    from srlm_exp.ifeval.headroom import main as headroom_main

    title_comma = _prompt(BASE, ("detectable_format:title", {}), ("punctuation:no_comma", {}))
    lower = _prompt(BASE, ("change_case:english_lowercase", {}))
    write_jsonl(tmp_path / "iteration_0" / "eval_responses.jsonl",
                [{"instruction": title_comma, "response": "<<Owls>> They hunt, at night."},   # title yes, comma no
                 {"instruction": lower, "response": "Owls hunt."}])                           # lowercase no
    samples = {title_comma: ["<<Owls>> They hunt at night.", "Owls, hunt."],
               lower: ["owls hunt.", "owls hunt at night and sleep during the day."]}
    write_jsonl(tmp_path / "data" / "eft_sets.jsonl",
                [graded_set(p, rs, [grade(p, r) for r in rs]) for p, rs in samples.items()])
    assert headroom_main([str(tmp_path), "--json", str(tmp_path / "h.json")]) == 0
    rows = json.loads((tmp_path / "h.json").read_text())
    assert rows["detectable_format:title"] == {"greedy": 1.0, "sampled": 0.5, "best_of_n": 1.0, "greedy_n": 1,
                                               "sampled_prompts": 1}
    assert rows["punctuation:no_comma"] == {"greedy": 0.0, "sampled": 0.5, "best_of_n": 1.0, "greedy_n": 1, "sampled_prompts": 1}
    assert rows["change_case:english_lowercase"]["greedy"] == 0.0 and rows["change_case:english_lowercase"]["sampled"] == 1.0
    assert rows["all"] == {"greedy": 1 / 3, "sampled": 4 / 6, "best_of_n": 1.0, "greedy_n": 3, "sampled_prompts": 3}
    assert "| punctuation:no_comma | 0.00 | 0.50 | 1.00 | 1.00 | 1 | 1 |" in capsys.readouterr().out
    assert headroom_main([str(tmp_path / "nowhere")]) == 2


def test_grading_is_deterministic_and_leaves_the_global_random_alone():
    text = _prompt(BASE, ("change_case:english_lowercase", {}))
    state = random.getstate()
    grades = {grade(text, "owls hunt at night and sleep by day") for _ in range(5)}
    assert len(grades) == 1 and random.getstate() == state


# ------------------------------------------------------------------------------ EFT judgments

def test_judgments_name_what_was_asked_and_parse_back_to_their_score(additive5):
    one = _prompt(BASE, ("startend:end_checker", {"end_phrase": "Any other questions?"}))
    two = _prompt(BASE, ("detectable_format:title", {}), ("punctuation:no_comma", {}))
    cases = [(one, "Owls. Any other questions?"), (one, "Owls. Any other questions?\n(end)"), (one, "Owls."),
             (one, ""), (two, "<<Owls>>\nThey hunt."), (two, "<<Owls>> They hunt, at night."),
             (two, "They hunt, at night."), (_prompt(BASE, ("startend:quotation", {}), ("punctuation:no_comma", {})),
                                             'Sure!\n"Owls, hunt\nat night"')]
    scores = set()
    for text, response in cases:
        g = grade(text, response)
        j = judgment(parse_instruction(text), g)
        assert j.endswith(f"Score: {g.score}") and j.startswith("The request asks for ")
        for c in parse_instruction(text):
            assert asked(c) in j.split(". The response")[0]
        assert additive5.parse(j) == g.score
        assert additive5.parse(additive5.target(j, g.score)) == g.score
        scores.add(g.score)
    assert scores == {0, 1, 2, 3, 4, 5}
    assert judgment(parse_instruction(two), grade(two, "<<Owls>> They hunt, at night.")) == (
        "The request asks for a title in double angular brackets and no commas. "
        "The response meets the first but misses the second. Score: 3")
    assert judgment(parse_instruction(one), grade(one, "Owls.")) == (
        'The request asks for the exact ending "Any other questions?". The response misses it. Score: 1')


def test_every_type_has_a_phrase():
    rng = random.Random(0)
    for t in USABLE:
        c = build_constraint(t, rng, prompt_to_repeat="Write x.")
        assert asked(c) != t and "{" not in asked(c)


# ------------------------------------------------------------------------------ EFT selection (pure)

def _set(instruction: str, responses: list[str]) -> dict:
    return graded_set(instruction, responses, [grade(instruction, r) for r in responses])


def test_eft_rows_are_contrastive_one_per_score_and_balanced():
    text = _prompt(BASE, ("punctuation:no_comma", {}))
    sets = [_set(text, ["a, b", "a b", "a, c", "a d"]),     # scores 1, 5, 1, 5: two rows
            _set(text, ["a b", "c d", "e f", "g h"]),       # all 5: not contrastive
            _set(text, ["", "a, b", "a b", "x"])]           # 0, 1, 5, 5
    rows = eft_rows(sets, lambda i, r: judgment(parse_instruction(i), grade(i, r)), random.Random(0))
    assert sorted(r["score"] for r in rows) == [0, 1, 1, 5, 5]
    assert all(r["judgment"].endswith(f"Score: {r['score']}") for r in rows)
    assert ranked_sets(sets) == [{k: s[k] for k in ("instruction", "family", "responses", "scores")}
                                 for s in (sets[0], sets[2])]
    assert [r["response"] for r in ift_rows(sets, 10)] == ["a b", "a b", "a b"]
    assert len(ift_rows(sets, 2)) == 2


def test_a_cut_off_passing_response_is_never_an_ift_row():
    """Seed SFT teaches IFT rows as finished answers: a passing response cut by the budget is skipped for the
    next passing one that ended, and an instruction whose passing responses were all cut gives no row."""
    from srlm_exp.inference.sampler import Completion

    text = _prompt(BASE, ("punctuation:no_comma", {}))
    cut_then_ended = _set(text, [Completion("a b c", False), Completion("a, b", True), Completion("a d", True)])
    only_cut = _set(text, [Completion("a b", False), Completion("a, b", True)])
    assert cut_then_ended["finished"] == [False, True, True] and cut_then_ended["correct"] == [True, False, True]
    assert [r["response"] for r in ift_rows([cut_then_ended, only_cut], 10)] == ["a d"]
    assert all(type(r) is str for r in cut_then_ended["responses"])  # plain texts in eft_sets.jsonl
    assert "finished" not in _set(text, ["a b"])  # a sampler that records no ending: every passing one counts


def test_balance_thins_the_most_common_score_to_the_next():
    rows = [{"score": s, "k": i} for i, s in enumerate([1] * 10 + [5] * 4 + [4] * 2)]
    out = balance_scores(rows, random.Random(0))
    assert sorted(r["score"] for r in out) == [1] * 4 + [4] * 2 + [5] * 4
    assert [r["k"] for r in out] == sorted(r["k"] for r in out)  # order kept
    assert balance_scores(rows[:8], random.Random(0)) == rows[:8]  # one score only: nothing to balance


# ------------------------------------------------------------------------------ the seed-data source

def test_source_capabilities_and_files(tmp_path):
    data = _source(0).build(tmp_path)
    for cap in (GroundTruth, InstructionPool, RankedResponses, ModelJudgedEFT, ModelMadeJudgeEval):
        assert isinstance(data, cap), cap
    assert not isinstance(data, PretrainingCorpus)
    evals = data.eval_rows()
    assert len(evals) == 8 and len(read_jsonl(tmp_path / "judge_eval_prompts.jsonl")) == 12
    assert len(data.seed_instructions()) == 24
    for r in evals:
        assert r["family"] == r["constraints"][0]["id"] == data.grade(r["instruction"], "x").family
    with pytest.raises(FileNotFoundError, match="build_judge_eval"):
        data.judge_eval_sets()
    with pytest.raises(FileNotFoundError, match="build_eft"):
        data.ift()
    assert _source(0, eft=False, ift="own_passing").build(tmp_path / "b").eft_graded() == []
    assert _source(0, ift="none").build(tmp_path / "c").ift() == []


def test_build_is_deterministic_and_resumes(tmp_path):
    _source(4).build(tmp_path / "a")
    _source(4).build(tmp_path / "b")
    _source(5, split_seed=5).build(tmp_path / "c")  # another training seed and another split
    for name in ("eval", "judge_eval_prompts", "eft_prompts"):
        a = (tmp_path / "a" / f"{name}.jsonl").read_text()
        assert a == (tmp_path / "b" / f"{name}.jsonl").read_text() != (tmp_path / "c" / f"{name}.jsonl").read_text()
    before = (tmp_path / "a" / "eval.jsonl").stat().st_mtime_ns
    _source(4).build(tmp_path / "a")
    assert (tmp_path / "a" / "eval.jsonl").stat().st_mtime_ns == before  # read back, not rewritten


@pytest.mark.parametrize("kwargs,key", [
    (dict(sizes={**SMOKE_SIZES, "eft_samples": 1}), "sizes.eft_samples"),
    (dict(sizes={**SMOKE_SIZES, "judge_eval_samples": 1}), "sizes.judge_eval_samples"),
    (dict(sizes={**SMOKE_SIZES, "eval": 0}), "sizes.eval"),
    (dict(sizes={**SMOKE_SIZES, "eft": 0}), "sizes.eft"),
    (dict(sizes={**SMOKE_SIZES, "judge_eval_draws": 0}), "sizes.judge_eval_draws"),
    (dict(sizes={**SMOKE_SIZES, "candidates": 3}), "sizes.candidates"),
    (dict(ift="teacher"), "ift"),
    (dict(eft=False, ift="none"), "ift"),
    (dict(two_constraints=1.5), "two_constraints"),
    (dict(held_out_topics=0.0), "held_out_topics"),
    (dict(max_required_words=50), "max_required_words"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(max_new_tokens=0), "max_new_tokens"),
])
def test_bad_settings_name_the_key_and_the_fix(kwargs, key):
    with pytest.raises(ConfigError) as err:
        _source(0, **kwargs)
    assert [p.key for p in err.value.problems] == [key]
    assert err.value.problems[0].fix


def test_the_config_composes_validates_by_key_and_shrinks_with_smoke():
    cfg = compose(["data=ifeval"])
    assert cfg.data.name == "ifeval" and cfg.data.sizes.eft == 1000
    smoke = compose(["data=ifeval", "debug=smoke"])
    data = instantiate(smoke.data)  # the smoke sizes every source gets (corpus, self_instruct) are accepted
    assert data.sizes.eft == 24 and data.sizes.eval == 8 and data.sizes.judge_eval == 4
    with pytest.raises(ConfigError) as err:
        validate(compose(["data=ifeval", "data.sizes.eft_samples=1"]))
    assert "data.sizes.eft_samples" in str(err.value)
    with pytest.raises(ConfigError, match="PretrainingCorpus"):  # the tiny model learns from a corpus it lacks
        validate(compose(["data=ifeval"]))


def test_the_cpu_preset_composes_and_validates():
    """experiment=ifeval_cpu: SmolLM2 in this world, generated by vLLM, answers of IFEval's length everywhere
    the policy or M0 writes one (candidates are what the policy is trained towards, so they match the eval)."""
    cfg = compose(["experiment=ifeval_cpu", "logger=none"])
    validate(cfg)
    assert cfg.model.name == "smollm2" and cfg.data.name == "ifeval" and cfg.generation.backend == "vllm"
    assert cfg.data.max_new_tokens == cfg.eval.max_new_tokens == cfg.callbacks.self_reward.max_new_tokens == 256
    # The preset's, not model=smollm2's world sizes: 320 test prompts, fixed whatever the seed (issue 39)
    assert cfg.data.sizes.eft == 48 and cfg.data.sizes.eval == 320 and cfg.data.eval_split == "test"
    oracle = compose(["experiment=ifeval_cpu", "judge=oracle"])
    assert oracle.judge.name == "oracle" and oracle.data.sizes.eval == 320
    gpu = compose(["experiment=ifeval_gpu"])  # validated on a GPU box only (trainer=gpu needs one)
    assert gpu.trainer.accelerator == "gpu" and gpu.data.sizes.eft == 1000 and gpu.prompts.n_prompts == 4000
    assert gpu.train.lr == 1.0e-6 and gpu.judge.num_judgments == 3 and gpu.generation.backend == "vllm"


# ------------------------------------------------------------------------------ EFT and judge_eval with a model

class _Tok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


def _canned_tools(additive5, calls: list) -> EFTJudgingTools:
    def no(*_a):
        raise AssertionError("data=ifeval never trains an IFT-only model")

    return EFTJudgingTools(train_ift_only=no, load=no, release=lambda m: calls.append("release"), tokenizer=_Tok(),
                           judge=additive5, batch_size=4, load_m0=lambda: calls.append("load_m0") or "M0")


def test_build_eft_and_judge_eval_from_canned_responses(tmp_path, monkeypatch, additive5):
    """M0's samples replaced by canned ones (an empty answer, a sentence with commas, one without):
    every set of a prompt that the comma-free sentence passes is contrastive."""
    calls: list = []
    answers = ["", "Owls, hunt at night.", "Owls hunt at night.", "Owls hunt at night."]

    def fake_sample(model, tok, prompts, sampling, n=1, batch_size=32, desc=""):
        assert model == "M0" and n == 4 and sampling.max_new_tokens == 256 and sampling.temperature == 0.7
        calls.append(desc)
        return [list(answers) for _ in prompts]

    monkeypatch.setattr(source_module, "sample", fake_sample)
    monkeypatch.setattr(source_module, "prompt_ids", lambda tok, text: text)
    data = _source(0).build(tmp_path)
    tools = _canned_tools(additive5, calls)
    data.build_judge_eval(tools)
    data.build_eft(tools)
    assert calls == ["load_m0", "ifeval judge-eval responses", "release", "load_m0", "ifeval EFT responses", "release"]

    sets = data.judge_eval_sets()
    held = {r["instruction"] for r in read_jsonl(tmp_path / "judge_eval_prompts.jsonl")}
    assert len(sets) == 4 and all(s["instruction"] in held and len(set(s["scores"])) >= 2 for s in sets)
    assert all(s["responses"] == answers for s in sets)
    assert len(read_jsonl(tmp_path / "judge_eval_candidates.jsonl")) == 12

    rows = data.eft_graded()
    assert rows and {r["instruction"] for r in rows} <= set(data.seed_instructions())
    counts = sorted((sum(r["score"] == s for r in rows) for s in {r["score"] for r in rows}), reverse=True)
    assert len(counts) >= 2 and counts[0] == counts[1]  # the most common score thinned to the next
    for r in rows:
        assert r["score"] == data.grade(r["instruction"], r["response"]).score
        assert additive5.parse(r["judgment"]) == r["score"]
    judge_rows = additive5.eft_rows(data)  # what seed SFT trains on
    assert len(judge_rows) == len(rows) and all(additive5.parse(r["response"]) in range(6) for r in judge_rows)
    ift = data.ift()
    assert ift and all(data.grade(r["instruction"], r["response"]).correct for r in ift)
    assert all(p["chosen"] != p["rejected"] for p in data.eft_preference_pairs())
    assert all(len(set(s["scores"])) >= 2 for s in data.ranked_sets())

    # A resumed job finds the files and samples nothing.
    monkeypatch.setattr(source_module, "sample", lambda *a, **k: pytest.fail("sampled again"))
    again = _source(0).build(tmp_path)
    again.build_judge_eval(tools)
    again.build_eft(tools)
    assert again.eft_graded() == rows


def test_build_eft_refuses_when_no_set_is_contrastive(tmp_path, monkeypatch, additive5):
    monkeypatch.setattr(source_module, "sample", lambda m, t, prompts, s, n=1, **k: [["same"] * n for _ in prompts])
    monkeypatch.setattr(source_module, "prompt_ids", lambda tok, text: text)
    data = _source(0).build(tmp_path)
    with pytest.raises(RuntimeError, match="data.sizes.eft_samples"):
        data.build_eft(_canned_tools(additive5, []))
    with pytest.raises(RuntimeError, match="judge_eval_draws"):
        data.build_judge_eval(_canned_tools(additive5, []))
    assert not (tmp_path / "eft_graded.jsonl").exists() and not (tmp_path / "judge_eval.jsonl").exists()


def test_build_with_a_random_model_through_the_runs_model_store(tmp_path):
    """The real path: M0 (a randomly initialised GPT-2 of 64 hidden units with a byte-level tokenizer) loaded by
    the run's ModelStore, its responses sampled by the project's sampler. A random model's samples rarely differ
    in score, so this asserts the mechanics: every sample graded, and EFT rows only where a set is contrastive."""
    from srlm_exp.world import random_model
    from srlm_exp.models.loading import ModelStore, load_tokenizer

    m0 = random_model.save_random_model("gpt2", random_model.world_texts(), tmp_path / "m0")
    cfg = compose(["model=hf", f"model.name_or_path={m0}", "data=ifeval", "debug=smoke"])
    tok = load_tokenizer(m0, cfg.model.chat_template)
    import torch

    store = ModelStore(cfg.model, tok, torch.device("cpu"), lambda t: m0)
    judge = instantiate(cfg.judge)
    tools = EFTJudgingTools(train_ift_only=lambda: None, load=store.load_path, release=store.release, tokenizer=tok,
                            judge=judge, batch_size=16, load_m0=lambda: store.load(0))
    data = IFEvalSeedData("ifeval", 0, max_new_tokens=12, sizes=dict(SMOKE_SIZES, eft=8, judge_eval=2)).build(tmp_path / "d")
    try:
        data.build_eft(tools)
    except RuntimeError as e:  # no contrastive set among a random model's samples
        assert "no EFT row" in str(e)
        sets = None
    else:
        sets = read_jsonl(tmp_path / "d" / "eft_sets.jsonl")
        assert len(sets) == 8 and all(len(s["responses"]) == 4 == len(s["scores"]) for s in sets)
        for s in sets:
            assert s["scores"] == [data.grade(s["instruction"], r).score for r in s["responses"]]
        assert len({r["instruction"] for r in data.eft_graded()}) == len(ranked_sets(sets))
    try:
        data.build_judge_eval(tools)
    except RuntimeError as e:
        assert "judge_eval_draws" in str(e)
    else:
        assert 1 <= len(data.judge_eval_sets()) <= 2


@pytest.mark.slow
def test_the_loop_makes_judge_eval_before_m0_is_evaluated_and_eft_before_m1(tmp_path, monkeypatch):
    """The whole job in-process (M0 -> M1) on a random GPT-2, with M0's sampled seed responses canned (a random
    model's samples rarely differ in score): judge_eval is made before M0's evaluation, EFT and IFT before M1's
    SFT, which trains on the EFT rows alone here (data.ift=none: an empty IFT); every model is evaluated on the
    held-out prompts and ranked sets."""
    from srlm_exp.main import run
    from srlm_exp.world import random_model

    m0 = random_model.save_random_model("gpt2", random_model.world_texts(), tmp_path / "m0")
    job = tmp_path / "job"
    answers = ["", "Owls, hunt at night.", "Owls hunt at night.", "Owls hunt at night."]
    seen = []

    def fake_sample(model, tok, prompts, sampling, n=1, batch_size=32, desc=""):
        seen.append((desc, (job / "iteration_0" / "eval_responses.jsonl").exists(),
                     (job / "iteration_1" / "model").exists()))
        return [list(answers[:n]) for _ in prompts]

    monkeypatch.setattr(source_module, "sample", fake_sample)
    cfg = compose(["model=hf", f"model.name_or_path={m0}", "data=ifeval", "debug=smoke", "logger=none",
                   "data.ift=none", "loop.iterations=0", "seed_sft.max_steps=3", f"+output_dir={job}"])
    summary = run(cfg)
    assert summary["status"] == "finished"
    assert seen == [("ifeval judge-eval responses", False, False), ("ifeval EFT responses", True, False)]
    m0_entry, m1_entry = summary["iterations"]
    for entry in (m0_entry, m1_entry):
        assert entry["eval"]["n"] == 8 and 0 <= entry["eval"]["gt_score"] <= 5
        assert entry["judge"]["n_prompts"] == 4
    trained = m1_entry["training"]
    assert trained["eft"] == len(read_jsonl(job / "data" / "eft_graded.jsonl")) > 0
    assert trained["ift"] == 0 and read_jsonl(job / "data" / "ift.jsonl") == []
    assert "judge_eval_sets" in m0_entry["timings"]


def test_the_test_set_is_one_for_every_seed_and_the_validation_split_has_topics_of_its_own(tmp_path):
    """The seed changes training, never the test set; recipes are chosen on a split the test never sees."""
    built = {s: _source(s).build(tmp_path / f"s{s}") for s in (1, 2)}
    test = {s: read_jsonl(tmp_path / f"s{s}" / "eval.jsonl") for s in built}
    assert test[1] == test[2]
    assert read_jsonl(tmp_path / "s1" / "judge_eval_prompts.jsonl") == read_jsonl(tmp_path / "s2" / "judge_eval_prompts.jsonl")
    assert read_jsonl(tmp_path / "s1" / "eft_prompts.jsonl") != read_jsonl(tmp_path / "s2" / "eft_prompts.jsonl")
    _source(1, eval_split="validation").build(tmp_path / "val")
    val = read_jsonl(tmp_path / "val" / "eval.jsonl")
    train, held, val_tasks = split_base_tasks(0, 0.25, 0.1)
    assert val and all(r["base_task"] in {t.text for t in val_tasks} for r in val)
    assert {r["base_task"] for r in val}.isdisjoint({r["base_task"] for r in test[1]})
    assert read_jsonl(tmp_path / "val" / "judge_eval_prompts.jsonl") == read_jsonl(tmp_path / "s1" / "judge_eval_prompts.jsonl")
    other = _source(1, split_seed=5).build(tmp_path / "split5")
    assert read_jsonl(tmp_path / "split5" / "eval.jsonl") != test[1] and other.split_seed == 5


@pytest.mark.parametrize("kw, key", [(dict(eval_split="dev"), "eval_split"), (dict(validation_topics=0.8), "validation_topics"),
                                     (dict(eval_split="validation", validation_topics=0.0), "eval_split")])
def test_split_settings_are_checked(kw, key):
    with pytest.raises(ConfigError) as err:
        _source(0, **kw)
    assert key in str(err.value)
