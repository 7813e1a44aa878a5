"""Prompt sources for a self-rewarding iteration (conf/prompts/*.yaml).

Generated prompts are parsed from the new tokens only, length-filtered and de-duplicated by
ROUGE-L against the seed instructions and every earlier prompt, so the few-shot examples a
request showed can never come back as "new" prompts.
"""
from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence

from srlm_exp.chat import prompt_ids, raw_prompt_ids
from srlm_exp.checks import ConfigError, Problem, at_least, check, model_path_problem, require, sampling_problems
from srlm_exp.data.seed_data import InstructionPool, SeedData
from srlm_exp.generation.rouge import NoveltyFilter
from srlm_exp.inference.sampler import Sampling, sample
from srlm_exp.models.loading import load_model, load_tokenizer

log = logging.getLogger(__name__)
_TASK_RE = re.compile(r"<task>(.*?)</task>", re.S)


class PromptSource(Protocol):
    """What AIFT asks of `prompts` (conf/prompts/*.yaml): one iteration's new prompts."""

    def produce(self, model: Any, tokenizer: Any, seed_data: Any, earlier: Sequence[str], rng: random.Random) -> list[str]:
        """New prompts, none of them in `earlier` (the prompts of former iterations)."""
        ...


class NotEnoughPromptsError(RuntimeError):
    pass


def parse_tasks(new_text: str, opened: bool = False) -> list[str]:
    """The `<task>...</task>` items of generated text; with `opened`, the text continues a `<task>`
    tag the request already opened (raw completion). Unclosed items were cut by the budget: dropped."""
    found = []
    if opened:
        head, sep, new_text = new_text.partition("</task>")
        found = [head] if sep else []
    found += _TASK_RE.findall(new_text)
    return [" ".join(t.split()) for t in found]


class PromptFilter:
    """Length filter + ROUGE-L novelty against the seed and all earlier prompts."""

    def __init__(self, existing: Sequence[str], min_words: int, max_words: int, rouge_threshold: float):
        self.min_words, self.max_words = min_words, max_words
        self.novelty = NoveltyFilter(threshold=rouge_threshold, existing=existing)
        self.rejected = {"length": 0, "similar": 0, "format": 0}

    def offer(self, text: str) -> bool:
        if not text or "<task>" in text or "</task>" in text:
            self.rejected["format"] += 1
            return False
        if not self.min_words <= len(text.split()) <= self.max_words:
            self.rejected["length"] += 1
            return False
        if not self.novelty.is_novel(text):
            self.rejected["similar"] += 1
            return False
        self.novelty.add(text)
        return True


class ExactNoveltyFilter:
    """Refuses only exact repeats (of the given prompts and of what it accepted)."""

    def __init__(self, existing: Sequence[str]):
        self.seen = set(existing)
        self.rejected = {"repeat": 0}

    def offer(self, text: str) -> bool:
        if text in self.seen:
            self.rejected["repeat"] += 1
            return False
        self.seen.add(text)
        return True


class SelfInstructPrompts:
    """The current model writes new prompts few-shot: `shots_from_seed` IFT examples plus
    `shots_from_generated` earlier generated prompts, each as <task>...</task>.

    `chat=True` sends the request as a user turn (instruction-tuned models, and M(t) of the
    embedded world, whose IFT data holds such requests); `chat=False` continues the raw text after
    an opened `<task>` tag, the way public replications prompt a base model."""

    def __init__(self, n_prompts: int = 64, shots_from_seed: int = 6, shots_from_generated: int = 2,
                 requests_per_batch: int = 32, max_requests: int = 512, temperature: float = 0.6, top_p: float = 0.9,
                 max_new_tokens: int = 48, min_words: int = 3, max_words: int = 40, rouge_threshold: float = 0.7,
                 header: str = "Come up with a series of tasks and questions.", batch_size: int = 32, chat: bool = True):
        check(at_least(n_prompts, 1, "n_prompts"), at_least(shots_from_seed, 1, "shots_from_seed"),
              at_least(shots_from_generated, 0, "shots_from_generated"), at_least(requests_per_batch, 1, "requests_per_batch"),
              at_least(max_requests, 1, "max_requests"), *sampling_problems(temperature, top_p, max_new_tokens),
              *_filter_problems(min_words, max_words, rouge_threshold), at_least(batch_size, 1, "batch_size"))
        self.chat = chat
        self.n_prompts = n_prompts
        self.shots_from_seed, self.shots_from_generated = shots_from_seed, shots_from_generated
        self.requests_per_batch, self.max_requests = requests_per_batch, max_requests
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        self.min_words, self.max_words, self.rouge_threshold = min_words, max_words, rouge_threshold
        self.header = header
        self.batch_size = batch_size

    def shots(self, seed: Sequence[str], generated: Sequence[str], rng: random.Random) -> list[str]:
        """The request's examples: earlier generated prompts where there are some, the rest from the seed."""
        k_gen = min(self.shots_from_generated, len(generated))
        shots = rng.sample(list(seed), min(len(seed), self.shots_from_seed + self.shots_from_generated - k_gen))
        shots += rng.sample(list(generated), k_gen)
        rng.shuffle(shots)
        return shots

    def request(self, seed: Sequence[str], generated: Sequence[str], rng: random.Random) -> str:
        shots = self.shots(seed, generated, rng)
        text = self.header + "\n" + "\n".join(f"<task>{s}</task>" for s in shots)
        return text if self.chat else text + "\n<task>"

    def generator(self, model, tokenizer):
        """The model that writes prompts (the current model for self-instruct)."""
        return model, tokenizer

    def produce(self, model, tokenizer, seed_data: SeedData, earlier: Sequence[str], rng: random.Random) -> list[str]:
        seed = seed_data.seed_instructions()
        model, tokenizer = self.generator(model, tokenizer)
        filt = PromptFilter(list(seed) + list(earlier), self.min_words, self.max_words, self.rouge_threshold)
        new: list[str] = []
        requests = 0
        while len(new) < self.n_prompts and requests < self.max_requests:
            n = min(self.requests_per_batch, self.max_requests - requests)
            texts = [self.request(seed, list(earlier) + new, rng) for _ in range(n)]
            encode = prompt_ids if self.chat else raw_prompt_ids
            outs = [o for (o,) in sample(model, tokenizer, [encode(tokenizer, t) for t in texts], self.sampling,
                                         batch_size=self.batch_size, desc="prompts")]
            requests += n
            for out in outs:
                for task in self.parse(out):
                    if len(new) < self.n_prompts and filt.offer(task):
                        new.append(task)
        log.info("prompts: %d new from %d requests (rejected %s)", len(new), requests, filt.rejected)
        if not new:
            raise NotEnoughPromptsError(
                f"no usable prompt after {requests} few-shot requests (rejected: {filt.rejected}); "
                f"the generator may not follow the {self.reply_format} format: try prompts=fixed with a stronger "
                "generator, prompts=dataset, or raise prompts.max_requests"
            )
        return new

    reply_format = "<task>"

    def parse(self, new_text: str) -> list[str]:
        """The prompts one reply holds."""
        return parse_tasks(new_text, opened=not self.chat)


SEED_004_TEMPLATE = ("You are an intelligent instruction generator. Your task is to generate new, challenging instructions for "
                     "training a large language model. The instructions should be as diverse as possible, covering different "
                     "domains and difficulties.\n"
                     "Here are some examples of instructions:\n"
                     "<EXAMPLES_HERE>\n"
                     "Now, please generate one new instruction:")


class InstructionGeneratorPrompts(SelfInstructPrompts):
    """Seed 004's instruction-generation prompt: the current model is asked, as a user turn, for one new
    instruction after a few examples drawn from the seed instructions (and earlier generated prompts);
    its reply's first non-empty line is the instruction. Same length and novelty filters as self-instruct."""

    reply_format = "one-instruction reply"

    def __init__(self, template: str = SEED_004_TEMPLATE, **kwargs):
        check(require("<EXAMPLES_HERE>" in template, "template", "lacks <EXAMPLES_HERE>",
                      "put <EXAMPLES_HERE> where the example instructions go"))
        super().__init__(chat=True, **kwargs)
        self.template = template

    def request(self, seed: Sequence[str], generated: Sequence[str], rng: random.Random) -> str:
        shots = self.shots(seed, generated, rng)
        return self.template.replace("<EXAMPLES_HERE>", "\n".join(f"- {s}" for s in shots))

    def parse(self, new_text: str) -> list[str]:
        for line in new_text.splitlines():
            line = " ".join(line.strip().removeprefix("- ").split())
            if line:
                return [line]
        return []


class FixedGeneratorPrompts(SelfInstructPrompts):
    """Self-instruct with a separate, fixed generator model (the paper used Llama 2-Chat 70B)."""

    def __init__(self, generator_path: str, **kwargs):
        check(model_path_problem(generator_path, "generator_path"))
        super().__init__(**kwargs)
        self.generator_path = generator_path

    def generator(self, model, tokenizer):
        tok = load_tokenizer(self.generator_path)
        gen = load_model(self.generator_path, tok).to(next(model.parameters()).device)
        return gen, tok


def _filter_problems(min_words, max_words, rouge_threshold) -> list[Problem | None]:
    return [at_least(min_words, 1, "min_words"),
            require(isinstance(max_words, int) and isinstance(min_words, int) and max_words >= min_words, "max_words",
                    f"is {max_words!r}, below min_words={min_words!r}", "set max_words >= min_words"),
            require(rouge_threshold is None or (isinstance(rouge_threshold, (int, float)) and 0 < rouge_threshold <= 1),
                    "rouge_threshold", f"is {rouge_threshold!r}, must be in (0, 1] or null",
                    "set rouge_threshold=0.7 (the paper's novelty filter) or null (exact repeats only)")]


def read_prompt_file(path: Path) -> list[str]:
    """The prompts of a JSONL file (`instruction` or `prompt` field per row), checked whole: every problem
    with the file is a ConfigError on `path` naming the line, found before anything is trained."""
    def bad(message: str, fix: str = "give a JSONL file, one {\"instruction\": ...} (or \"prompt\") object per line"):
        return ConfigError([Problem("path", message, fix)])

    if not path.is_file():
        raise bad(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise bad(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    texts = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise bad(f"{path} line {i} is not JSON ({exc.msg})") from None
        text = row.get("instruction", row.get("prompt")) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise bad(f"{path} line {i} has no non-empty 'instruction' or 'prompt' string")
        texts.append(" ".join(text.split()))
    if not texts:
        raise bad(f"{path} holds no prompt (empty file)")
    return texts


class DatasetPrompts:
    """Prompts read in order from a JSONL file (`instruction` or `prompt` field), read and checked when
    the run is configured, not when AIFT(M1) starts."""

    def __init__(self, path: str, n_prompts: int = 64, min_words: int = 3, max_words: int = 200,
                 rouge_threshold: float = 0.7):
        check(at_least(n_prompts, 1, "n_prompts"), *_filter_problems(min_words, max_words, rouge_threshold))
        self.path = Path(path)
        self.texts = read_prompt_file(self.path)
        self.n_prompts, self.min_words, self.max_words, self.rouge_threshold = n_prompts, min_words, max_words, rouge_threshold

    def produce(self, model, tokenizer, seed_data: SeedData, earlier: Sequence[str], rng: random.Random) -> list[str]:
        seed = seed_data.seed_instructions()
        filt = PromptFilter(list(seed) + list(earlier), self.min_words, self.max_words, self.rouge_threshold)
        new = []
        for text in self.texts:
            if filt.offer(text):
                new.append(text)
            if len(new) == self.n_prompts:
                break
        if not new:
            raise NotEnoughPromptsError(f"{self.path}: no prompt left after filtering (rejected: {filt.rejected})")
        return new


class _PoolSeedData(InstructionPool, Protocol):
    """Seed data (a SeedData) that is an InstructionPool: what InstructionPoolPrompts draws from."""

    def seed_instructions(self) -> list[str]: ...


class InstructionPoolPrompts:
    """Fresh instructions drawn from the seed data's own tasks (an InstructionPool, e.g. the embedded
    world): a stand-in for a user's unlabeled prompt set, or for the paper's prompts written by a separate
    fixed model. With `rouge_threshold` set, prompts are ROUGE-L-novel against the seed and every earlier
    prompt; with None, only exact repeats of an earlier prompt of the run are refused: templated tasks that
    differ in one slot are different tasks, and ROUGE-L would call every fresh one a near-duplicate."""

    requires: ClassVar[tuple[type, ...]] = (InstructionPool,)

    def __init__(self, n_prompts: int = 64, rouge_threshold: float | None = 0.7, max_tries: int = 10_000):
        check(at_least(n_prompts, 1, "n_prompts"), *_filter_problems(1, 1, rouge_threshold), at_least(max_tries, 1, "max_tries"))
        self.n_prompts, self.rouge_threshold, self.max_tries = n_prompts, rouge_threshold, max_tries

    def produce(self, model, tokenizer, seed_data: _PoolSeedData, earlier: Sequence[str], rng: random.Random) -> list[str]:
        filt: ExactNoveltyFilter | PromptFilter
        if self.rouge_threshold is None:
            filt = ExactNoveltyFilter(earlier)
        else:
            filt = PromptFilter(list(seed_data.seed_instructions()) + list(earlier), 1, 10_000, self.rouge_threshold)
        new: list[str] = []
        for _ in range(self.max_tries):
            if len(new) == self.n_prompts:
                break
            text = seed_data.sample_instruction(rng)
            if filt.offer(text):
                new.append(text)
        if not new:
            raise NotEnoughPromptsError(f"no novel instruction in {self.max_tries} draws from the seed data's pool "
                                        f"(rejected: {filt.rejected}); with ROUGE-L novelty on templated tasks, "
                                        f"set prompts.rouge_threshold=null (exact repeats only)")
        return new
