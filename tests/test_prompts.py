"""Prompt sources: parsing generated tasks, the length/novelty filter, few-shot requests."""
from __future__ import annotations

import random

import pytest

from srlm_exp.checks import ConfigError
from srlm_exp.generation.prompts import (DatasetPrompts, InstructionPoolPrompts, NotEnoughPromptsError, PromptFilter,
                                         SelfInstructPrompts, parse_tasks)
from srlm_exp.world.build import TASK_LIST_HEADER, self_instruct_request
from srlm_exp.world.tasks import sample_task

SEED = [f"Reverse the word {' '.join(w)}." for w in ("cat", "dog", "sun", "pen", "cup", "hat", "bed", "map")]


class Seed:
    """Seed data as prompt sources see it: seed instructions and, for the pool, fresh world tasks."""

    def seed_instructions(self):
        return SEED

    def sample_instruction(self, rng):
        return sample_task(rng).instruction


def test_parse_tasks_chat_and_raw_completion():
    assert parse_tasks("<task>Add 2 and 3.</task>\n<task>Sort 5 1 3.</task>") == ["Add 2 and 3.", "Sort 5 1 3."]
    # Raw completion continues an opened tag; an item cut by the token budget is dropped, not kept half.
    assert parse_tasks("Add 2 and 3.</task>\n<task>Sort 5 1", opened=True) == ["Add 2 and 3."]
    assert parse_tasks("The answer is 5.") == []
    assert parse_tasks("<task>  What is\n 4 plus 4? </task>") == ["What is 4 plus 4?"]


def test_filter_rejects_short_long_tagged_and_near_duplicates_of_seed_and_earlier():
    f = PromptFilter(SEED, min_words=3, max_words=10, rouge_threshold=0.7)
    assert not f.offer("Add.")                                   # too short
    assert not f.offer(" ".join(["word"] * 11))                  # too long
    assert not f.offer("Reverse the word c a t.")                # a few-shot example coming back
    assert f.offer("What is 12 plus 30?")
    assert not f.offer("What is 12 plus 30?")                    # a duplicate within the batch
    assert not f.offer("<task>What is 1 plus 1?")
    assert f.rejected == {"length": 2, "similar": 2, "format": 1}


def test_self_instruct_request_uses_seed_and_earlier_prompts_in_the_world_format():
    si = SelfInstructPrompts(header="Come up with a series of tasks and questions.")
    rng = random.Random(0)
    first = si.request(SEED, [], rng)
    assert first.count("<task>") == 8 and not first.endswith("<task>")
    earlier = ["What is 12 plus 30?", "Sort 9 4 7 in ascending order."]
    later = si.request(SEED, earlier, rng)
    assert all(f"<task>{e}</task>" in later for e in earlier)  # 6 seed + 2 earlier generated
    assert sum(f"<task>{s}</task>" in later for s in SEED) == 6
    # With the configured header, the chat request is exactly the format the world's IFT data teaches.
    req = SelfInstructPrompts(header=TASK_LIST_HEADER).request(SEED, [], random.Random(0))
    shots = [line[len("<task>"):-len("</task>")] for line in req.split("\n")[1:]]
    assert req == self_instruct_request(shots)
    raw = SelfInstructPrompts(chat=False).request(SEED, [], random.Random(0))
    assert raw.endswith("\n<task>")


def test_world_pool_prompts_are_new_gradable_and_deterministic():
    from srlm_exp.world.tasks import parse_instruction

    a = InstructionPoolPrompts(n_prompts=10).produce(None, None, Seed(), [], random.Random(1))
    assert a == InstructionPoolPrompts(n_prompts=10).produce(None, None, Seed(), [], random.Random(1))
    assert len(set(a)) == 10 and not set(a) & set(SEED)
    assert all(parse_instruction(p) is not None for p in a)


def test_world_pool_with_exact_novelty_refuses_repeats_and_never_draws_held_out(tmp_path):
    """The default world pool: ROUGE-L would call every fresh templated task a near-duplicate of one of
    the ~38k seed tasks, so only exact repeats of earlier prompts are refused; and no prompt is ever one
    of the held-out instructions (DPO on an evaluation prompt would leak it)."""
    from srlm_exp.artifacts import read_jsonl
    from srlm_exp.world.source import WorldSeedData

    world = WorldSeedData("world", 3, True, dict(corpus=0, ift=400, self_instruct=2, eft=10, eft_per_set=3,
                                                 eval=150, judge_eval=60)).build(tmp_path)
    held = {r["instruction"] for n in ("eval", "judge_eval") for r in read_jsonl(world.files[n])}
    earlier = InstructionPoolPrompts(n_prompts=300, rouge_threshold=None).produce(None, None, world, [], random.Random(0))
    later = InstructionPoolPrompts(n_prompts=300, rouge_threshold=None).produce(None, None, world, earlier, random.Random(1))
    assert len(set(earlier)) == len(earlier) == 300 and not set(later) & set(earlier)
    assert not (set(earlier) | set(later)) & held
    assert set(earlier) & set(world.seed_instructions())  # seed tasks may come again: only earlier prompts are refused


def test_dataset_prompts_file_is_checked_when_configured(tmp_path):
    """Every problem with the file is found when the source is built, before M1 trains."""
    with pytest.raises(ConfigError, match="nope.jsonl does not exist"):
        DatasetPrompts(path=str(tmp_path / "nope.jsonl"))
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "What is 12 plus 30?"}\n{"text": "x"}\n')
    with pytest.raises(ConfigError, match="line 2 has no non-empty 'instruction' or 'prompt'"):
        DatasetPrompts(path=str(f))
    f.write_text('{"prompt": "What is 12 plus 30?"}\n{"instruction": "Reverse the word c a t."}\n')
    assert DatasetPrompts(path=str(f)).produce(None, None, Seed(), [], random.Random(0)) == ["What is 12 plus 30?"]
    f.write_text('{"prompt": "Reverse the word c a t."}\n')
    with pytest.raises(NotEnoughPromptsError):
        DatasetPrompts(path=str(f)).produce(None, None, Seed(), [], random.Random(0))


def test_configured_header_is_the_one_the_world_teaches():
    import yaml
    from pathlib import Path

    conf = yaml.safe_load((Path(__file__).parents[1] / "conf" / "prompts" / "self_instruct.yaml").read_text())
    assert conf["header"] == TASK_LIST_HEADER and conf["chat"] is True


def test_seed_004_instruction_generator_request_and_reply():
    from srlm_exp.generation.prompts import InstructionGeneratorPrompts

    gen = InstructionGeneratorPrompts(shots_from_seed=3, shots_from_generated=1)
    seed = [f"Seed task number {i}." for i in range(10)]
    text = gen.request(seed, ["An earlier generated task."], random.Random(0))
    assert text.startswith("You are an intelligent instruction generator.")
    examples = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    assert (len(examples) == 4 and "An earlier generated task." in examples
            and set(examples) - {"An earlier generated task."} <= set(seed))
    assert text.endswith("Now, please generate one new instruction:")
    assert gen.parse("\n  - Write the word c a t backwards.  \nmore text") == ["Write the word c a t backwards."]
    assert gen.parse("   \n") == []
    with pytest.raises(ConfigError, match="template"):
        InstructionGeneratorPrompts(template="no examples slot")


def test_smoke_loop_reaches_m3_with_the_seed_004_instruction_generator(tmp_path):
    import json

    from conftest import run_job
    from movement import assert_trained_after_m1

    # The world's M(t) never learned this request (its IFT teaches the paper's <task> format), so its
    # "instructions" are not world tasks: the oracle cannot grade them, the model's own judge still scores them.
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", "prompts=instruction_generator"], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    assert_trained_after_m1(out)
