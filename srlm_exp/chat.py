"""Chats as token ids: the prompt a model generates from, the (prompt, response) example it is trained on
with a response-only label mask, and padding. Generation and training both tokenize through here, so
the prompt a model sees at generation time is exactly the prefix training masks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

IGNORE_INDEX = -100


class TemplatePrefixError(ValueError):
    """The chat template tokenizes the prompt differently alone than inside prompt+response."""


@dataclass
class ChatExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens: the loss is on the response (and EOS) only


def prompt_ids(tokenizer, instruction: str) -> list[int]:
    """Token ids of a user turn followed by the generation prompt of the chat template."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def raw_prompt_ids(tokenizer, text: str) -> list[int]:
    """Token ids of plain text to be continued (few-shot completion, no chat template)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def chat_example(tokenizer, instruction: str, response: str, max_len: int, max_len_key: str = "max_len",
                 ended: bool = True) -> ChatExample:
    """Tokenize a user/assistant exchange; the labels mask the prompt and keep the EOS. A response that did
    not end (`ended=False`: cut off by its new-token budget) gets no EOS: it is not taught as finished.

    Raises TemplatePrefixError when the tokenized prompt is not a prefix of the tokenized
    prompt+response (labels would then be shifted against the text the model sees at
    generation time), and ValueError when nothing of the response fits in `max_len`.
    """
    p_ids = prompt_ids(tokenizer, instruction)
    full_text = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}],
        tokenize=False,
    )
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    if full_ids[: len(p_ids)] != p_ids:
        raise TemplatePrefixError(
            "the chat template's prompt is not a token prefix of prompt+response; "
            f"first {min(len(p_ids), 12)} prompt ids {p_ids[:12]} vs {full_ids[:12]}. "
            "Fix the template (e.g. do not end the generation prompt with whitespace that "
            "merges with the response) or set model.chat_template."
        )
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token: set one so the model learns to stop")
    eos_at = [i for i in range(len(p_ids), len(full_ids)) if full_ids[i] == tokenizer.eos_token_id]
    if not ended:
        # What the model wrote and nothing after it: no end of turn it never produced.
        full_ids = full_ids[: eos_at[0]] if eos_at else full_ids
    elif eos_at:
        # The turn ends at its EOS; what a template writes after it (ChatML's "\n") is never generated:
        # generation stops at EOS, so training on it would only teach a token the model never emits.
        full_ids = full_ids[: eos_at[0] + 1]
    else:
        # Templates that do not append EOS after the assistant turn: add it, or the model never stops.
        full_ids = full_ids + [tokenizer.eos_token_id]
    if len(p_ids) >= max_len:
        raise ValueError(f"a prompt of {len(p_ids)} tokens does not fit the {max_len} tokens of {max_len_key}: set "
                         f"{max_len_key}=auto (the model's whole context), use a model with a longer context (model=tiny: "
                         f"model.architecture.max_position_embeddings), or shorten the prompt ({instruction[:60]!r}...)")
    full_ids = full_ids[:max_len]
    labels = [IGNORE_INDEX] * len(p_ids) + full_ids[len(p_ids):]
    return ChatExample(full_ids, labels)


def pad_batch(seqs: Sequence[Sequence[int]], pad_value: int, left: bool = False) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if left:
            out[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        else:
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out
