"""Turning (prompt, response) chat pairs into token ids with a response-only label mask."""
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

    @property
    def n_response_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def prompt_ids(tokenizer, instruction: str) -> list[int]:
    """Token ids of a user turn followed by the generation prompt of the chat template."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def chat_example(tokenizer, instruction: str, response: str, max_len: int) -> ChatExample:
    """Tokenize a user/assistant exchange; the labels mask the prompt and keep the EOS.

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
    if not full_ids or full_ids[-1] != tokenizer.eos_token_id:
        # Templates that do not append EOS after the assistant turn: add it, or the model never stops.
        full_ids = full_ids + [tokenizer.eos_token_id]
    if len(p_ids) >= max_len:
        raise ValueError(f"prompt of {len(p_ids)} tokens does not fit max_len={max_len}")
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


def collate_examples(examples: Sequence[ChatExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked in attention and ignored in the loss."""
    input_ids = pad_batch([e.input_ids for e in examples], pad_id)
    labels = pad_batch([e.labels for e in examples], IGNORE_INDEX)
    attention_mask = pad_batch([[1] * len(e.input_ids) for e in examples], 0)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, mega: int = 8) -> list[list[int]]:
    """Shuffled batches of similar length: short IFT examples are not padded to the ~450-token
    judge prompts of EFT examples (most of an SFT step's cost on CPU would be padding)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    batches = []
    for s in range(0, len(order), batch_size * mega):
        chunk = sorted(order[s : s + batch_size * mega], key=lambda i: lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    # A short (last) batch goes last, so re-batching the flattened order keeps the groups intact.
    return [b for b in batches if len(b) == batch_size] + [b for b in batches if len(b) < batch_size]
