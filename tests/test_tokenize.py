"""Tokenization of chat examples with the world tokenizer: lossless round trips, PAD != EOS,
prompt tokens a prefix of prompt+response, response-only labels, and the checks that catch a
chat template whose prompt tokenizes differently alone than inside the full text."""
from __future__ import annotations

import random

import pytest
import torch

from srlm_exp.chat import IGNORE_INDEX, TemplatePrefixError, chat_example, prompt_ids
from srlm_exp.models.tokenizer import ASSISTANT, CHAT_TEMPLATE, USER, train_tokenizer
from srlm_exp.training.batching import collate_examples, length_grouped_batches
from srlm_exp.world.grader import JUDGMENT_PHRASES, canonical_response, judgment, response_with_score
from srlm_exp.world.judge_prompt import PAPER_JUDGE_PROMPT
from srlm_exp.world.tasks import sample_task


def n_response_tokens(example) -> int:
    return sum(1 for x in example.labels if x != IGNORE_INDEX)


def _world_texts(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(instruction, response, the judge's judgment of it)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        task = sample_task(rng)
        response = canonical_response(task) if rng.random() < 0.5 else response_with_score(task, rng.randrange(6), rng)
        out.append((task.instruction, response, judgment(task, response)))
    return out


TRAIN_PAIRS = _world_texts(300, seed=0)
HELD_OUT = _world_texts(40, seed=1)


@pytest.fixture(scope="module")
def tok():
    texts = [i + "\n" + r + "\n" + j for i, r, j in TRAIN_PAIRS]
    texts += list(JUDGMENT_PHRASES.values()) * 5 + [PAPER_JUDGE_PROMPT] * 5
    texts += ["Come up with a series of tasks and questions.\n<task>Add 2 and 3.</task>"] * 5
    return train_tokenizer(texts, vocab_size=640)


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _judge_instruction(instruction: str, response: str) -> str:
    return PAPER_JUDGE_PROMPT.replace("<INSTRUCTION_HERE>", instruction).replace("<RESPONSE_HERE>", response)


def _samples() -> list[tuple[str, str]]:
    """Held-out (instruction, response) pairs: plain tasks, judge prompts with judgments, odd spacing."""
    out = [(i, r) for i, r, _ in HELD_OUT[:20]]
    out += [(_judge_instruction(i, r), j) for i, r, j in HELD_OUT[20:26]]
    out += [("Reverse the word c a t.", "t a c"), ("Add 7 and 35.", "The answer is 42.\nDone."),
            ("Sort 9 1 4.", "  The answer is 1 4 9.  ")]
    return out


# ------------------------------------------------------------------------------ the tokenizer

@pytest.mark.parametrize("text", [
    *[i + "\n" + r for i, r, _ in HELD_OUT[:10]],
    _judge_instruction(*HELD_OUT[0][:2]),
    "Come up with a series of tasks and questions.\n<task>Add 2 and 3.</task>\n<task>",
    "The answer is 1 0 0 7.",
    "  two  leading spaces, and trailing ones  ",
    "\n\nnew lines first\n\n",
    "Score: 4",
    "",
])
def test_decode_encode_round_trip(tok, text):
    assert tok.decode(_ids(tok, text)) == text


def test_digits_are_single_tokens(tok):
    tokens = tok.convert_ids_to_tokens(_ids(tok, "Add 56 and 4107."))
    assert sum(c.isdigit() for t in tokens for c in t) == 6
    assert all(sum(c.isdigit() for c in t) <= 1 for t in tokens), tokens


def test_pad_differs_from_eos_and_specials_are_single_tokens(tok):
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.bos_token_id not in (tok.pad_token_id, tok.eos_token_id)
    for special in (USER, ASSISTANT, tok.eos_token, "<task>", "</task>"):
        assert len(_ids(tok, special)) == 1, special
    assert tok.chat_template == CHAT_TEMPLATE


# ------------------------------------------------------------------------------ chat examples

@pytest.mark.parametrize("k", range(len(_samples())))
def test_prompt_is_a_token_prefix_of_prompt_plus_response(tok, k):
    instruction, response = _samples()[k]
    p = prompt_ids(tok, instruction)
    full_text = tok.apply_chat_template(
        [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}], tokenize=False)
    full = _ids(tok, full_text)
    assert full[: len(p)] == p
    assert p[-1] == tok.convert_tokens_to_ids(ASSISTANT)
    assert tok.decode(full[len(p):]) == response + tok.eos_token


@pytest.mark.parametrize("k", range(len(_samples())))
def test_chat_example_labels_only_the_response_and_eos(tok, k):
    instruction, response = _samples()[k]
    p = prompt_ids(tok, instruction)
    ex = chat_example(tok, instruction, response, max_len=2048)
    assert len(ex.input_ids) == len(ex.labels)
    assert ex.input_ids[: len(p)] == p
    # IGNORE_INDEX exactly on the prompt tokens, the token itself everywhere else.
    assert ex.labels[: len(p)] == [IGNORE_INDEX] * len(p)
    assert ex.labels[len(p):] == ex.input_ids[len(p):]
    assert IGNORE_INDEX not in ex.labels[len(p):]
    assert ex.labels[-1] == ex.input_ids[-1] == tok.eos_token_id
    assert ex.input_ids.count(tok.eos_token_id) == 1
    assert tok.pad_token_id not in ex.input_ids
    assert n_response_tokens(ex) == len(ex.input_ids) - len(p)
    assert tok.decode(ex.input_ids[len(p):], skip_special_tokens=True) == response


def test_chat_example_truncates_the_response_not_the_prompt(tok):
    instruction, response = "Reverse the word c a t.", "The answer is t a c. " * 20
    p = prompt_ids(tok, instruction)
    ex = chat_example(tok, instruction, response, max_len=len(p) + 5)
    assert len(ex.input_ids) == len(p) + 5 and n_response_tokens(ex) == 5
    assert ex.labels[: len(p)] == [IGNORE_INDEX] * len(p)
    with pytest.raises(ValueError, match="max_len"):
        chat_example(tok, instruction, response, max_len=len(p))


def test_template_without_eos_gets_eos_appended(tok):
    original = tok.chat_template
    try:
        tok.chat_template = CHAT_TEMPLATE.replace("{{ eos_token }}", "")
        ex = chat_example(tok, "Add 2 and 3.", "The answer is 5.", 512)
        assert ex.labels[-1] == ex.input_ids[-1] == tok.eos_token_id
    finally:
        tok.chat_template = original


# ------------------------------------------------------------------------------ broken templates

# Role markers followed by a space: the prompt then ends in a lone "▁" token, which the
# Metaspace pre-tokenizer merges with the first word of the response ("▁the") in the full text.
SPACE_TEMPLATE = (CHAT_TEMPLATE.replace("'<|' + message['role'] + '|>'", "'<|' + message['role'] + '|> '")
                  .replace("{{ '<|assistant|>' }}", "{{ '<|assistant|> ' }}"))
# The same with "\n": this tokenizer splits "\n" off before anything else, so it stays a prefix.
NEWLINE_TEMPLATE = (CHAT_TEMPLATE.replace("'<|' + message['role'] + '|>'", "'<|' + message['role'] + '|>\\n'")
                    .replace("{{ '<|assistant|>' }}", "{{ '<|assistant|>\\n' }}"))


@pytest.fixture
def with_template(tok):
    original = tok.chat_template

    def use(template: str):
        tok.chat_template = template
        return tok

    yield use
    tok.chat_template = original


def test_template_whose_prompt_merges_with_the_response_is_rejected(tok, with_template):
    instruction, response = "Pick the largest number in 3 9 4.", "the answer is 9."
    with_template(SPACE_TEMPLATE)
    prompt_text = tok.apply_chat_template([{"role": "user", "content": instruction}], add_generation_prompt=True,
                                          tokenize=False)
    full_text = tok.apply_chat_template([{"role": "user", "content": instruction},
                                         {"role": "assistant", "content": response}], tokenize=False)
    # The template is consistent as text ...
    assert full_text.startswith(prompt_text) and prompt_text.endswith(" ")
    # ... but not as tokens: this is the break chat_example must catch.
    p, full = _ids(tok, prompt_text), _ids(tok, full_text)
    assert full[: len(p)] != p
    with pytest.raises(TemplatePrefixError, match="prefix"):
        chat_example(tok, instruction, response, 512)


def test_newline_after_the_role_marker_keeps_the_prefix_with_this_tokenizer(tok, with_template):
    with_template(NEWLINE_TEMPLATE)
    instruction, response = "Pick the largest number in 3 9 4.", "the answer is 9."
    ex = chat_example(tok, instruction, response, 512)
    assert ex.labels[-1] == tok.eos_token_id
    assert tok.decode([x for x in ex.labels if x != IGNORE_INDEX], skip_special_tokens=True) == response


# ------------------------------------------------------------------------------ batches

def test_collate_masks_padding_in_labels_and_attention(tok):
    examples = [chat_example(tok, i, r, 512) for i, r, _ in HELD_OUT[:6]]
    lengths = [len(e.input_ids) for e in examples]
    assert len(set(lengths)) > 1, "need examples of different lengths"
    batch = collate_examples(examples, tok.pad_token_id)
    width = max(lengths)
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    for key in batch:
        assert batch[key].shape == (len(examples), width) and batch[key].dtype == torch.long
    for row, (e, n) in enumerate(zip(examples, lengths)):
        assert batch["input_ids"][row, :n].tolist() == e.input_ids
        assert batch["labels"][row, :n].tolist() == e.labels
        assert batch["attention_mask"][row, :n].tolist() == [1] * n
        # Right padding: PAD ids, no attention, no loss.
        assert batch["input_ids"][row, n:].tolist() == [tok.pad_token_id] * (width - n)
        assert batch["labels"][row, n:].tolist() == [IGNORE_INDEX] * (width - n)
        assert batch["attention_mask"][row, n:].tolist() == [0] * (width - n)
    assert int(batch["attention_mask"].sum()) == sum(lengths)
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == sum(n_response_tokens(e) for e in examples)


def test_length_grouped_batches_keep_buckets_apart_mix_within_and_cover_everything():
    lengths = [5, 400, 7, 420, 6, 410, 8, 430, 9, 440, 11]
    batches = length_grouped_batches(lengths, batch_size=2, seed=0, bucket=128)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [len(b) for b in batches[:-2]] == [2] * (len(batches) - 2) and sorted(map(len, batches[-2:])) == [1, 2]
    for b in batches[:-1]:  # no batch mixes a short instruction row with a long judge prompt
        assert max(lengths[i] for i in b) // 128 == min(lengths[i] for i in b) // 128
    assert batches == length_grouped_batches(lengths, batch_size=2, seed=0, bucket=128)  # deterministic
    # Within a bucket the order is random, not sorted by length (batches would otherwise be one family).
    many = list(range(20, 120)) * 3
    order = [i for b in length_grouped_batches(many, batch_size=10, seed=1) for i in b]
    assert [many[i] for i in order] != sorted(many[i] for i in order)
