"""Prompts of the IFEval world: a base task plus one or two compatible IFEval constraints.

`PromptGenerator.sample(rng)` draws, from the caller's `random.Random` only:
  1. the first constraint's type, uniformly over the usable types (constraints.USABLE);
  2. a base task: a yes/no question for `detectable_format:constrained_response`, any base task otherwise;
  3. with probability `two_constraints`, a second type, uniformly over the types compatible with the first
     (constraints.compatible: the registry's conflicts, symmetric, plus EXTRA_CONFLICTS);
  4. each constraint's parameters (constraints.build_constraint), redrawn (at most 100 times) while the two
     constraints name a common word.
The text is the base task followed by the constraints' descriptions, verbatim from the library, as IFEval's
own prompts are written. `combination:repeat_prompt` always comes last: the request it asks to repeat is
everything before it. parsing.parse_instruction reads every generated prompt back to the same constraints.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .constraints import (CONSTRAINED_RESPONSE, REPEAT_PROMPT, USABLE, Constraint, build_constraint, clash,
                          compatible)
from .tasks import BaseTask

__all__ = ["IFPrompt", "PromptGenerator", "join_parts", "unique_prompts"]


@dataclass(frozen=True)
class IFPrompt:
    instruction: str
    base_task: BaseTask
    constraints: tuple[Constraint, ...]

    @property
    def family(self) -> str:
        """The first constraint's type id (groups per-family metrics)."""
        return self.constraints[0].id

    def to_row(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "family": self.family, "base_task": self.base_task.text,
                "constraints": [c.to_json() for c in self.constraints]}


def join_parts(text: str, description: str) -> str:
    """`description` appended to `text`: after a space, or after a newline where the text holds a multi-line
    description already (the bullet-list and sections examples end on a line of their own)."""
    return f"{text}{chr(10) if chr(10) in text else ' '}{description}" if text else description


class PromptGenerator:
    def __init__(self, base_tasks: Sequence[BaseTask], two_constraints: float = 0.5,
                 max_required_words: int | None = None, types: Sequence[str] = USABLE):
        if not base_tasks:
            raise ValueError("no base task to draw prompts from")
        self.base_tasks = list(base_tasks)
        self.yes_no = [b for b in self.base_tasks if b.yes_no]
        self.two_constraints = float(two_constraints)
        self.max_required_words = max_required_words
        self.types = [t for t in types if t != CONSTRAINED_RESPONSE or self.yes_no]

    def _build(self, type_id: str, text: str, rng: random.Random) -> Constraint:
        return build_constraint(type_id, rng, prompt_to_repeat=text if type_id == REPEAT_PROMPT else None,
                                max_required_words=self.max_required_words)

    def sample(self, rng: random.Random) -> IFPrompt:
        first = rng.choice(self.types)
        base = rng.choice(self.yes_no if first == CONSTRAINED_RESPONSE else self.base_tasks)
        ids = [first]
        if rng.random() < self.two_constraints:
            options = [t for t in self.types if t != first and compatible(first, t)]
            if options:
                ids.append(rng.choice(options))
        ids.sort(key=lambda t: t == REPEAT_PROMPT)  # stable: repeat_prompt last, the other order kept
        for _ in range(100):
            text, built = base.text, []
            for t in ids:
                c = self._build(t, text, rng)
                built.append(c)
                text = join_parts(text, c.description)
            if not any(clash(a, b) for i, a in enumerate(built) for b in built[i + 1:]):
                return IFPrompt(text, base, tuple(built))
        raise RuntimeError(f"100 draws of {ids} in a row named a common word")  # (1 in ~700 per draw)


def unique_prompts(generator: PromptGenerator, rng: random.Random, n: int, exclude: Iterable[str] = (),
                   max_tries_per_prompt: int = 100) -> list[IFPrompt]:
    """`n` prompts with distinct texts, none in `exclude`."""
    seen = set(exclude)
    out: list[IFPrompt] = []
    for _ in range(max(1, n) * max_tries_per_prompt):
        if len(out) == n:
            break
        p = generator.sample(rng)
        if p.instruction not in seen:
            seen.add(p.instruction)
            out.append(p)
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} distinct prompts of {n} in {n * max_tries_per_prompt} draws")
    return out
