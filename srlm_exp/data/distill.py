"""Distilled seed data (Zephyr's dSFT, conf/data/distill.yaml): a teacher model writes the responses to
the seed instructions, and M1 is SFT on those instead of the seed data's own responses.

With `refine_instructions`, each instruction is first refined once from the teacher's own response
(Zephyr's data came from such self-prompting): the teacher answers, is asked for a clearer and more
specific version of the instruction given that answer, and then answers the refined instruction. Each
row keeps the instruction it came from. Everything else (EFT, evaluation, the grader) is the underlying
seed data's. The teacher's rows are written once to `ift_distilled.jsonl` in the data directory and read
back on a resumed job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from srlm_exp.artifacts import read_jsonl, write_jsonl
from srlm_exp.chat import prompt_ids
from srlm_exp.checks import at_least, check, model_path_problem, sampling_problems
from srlm_exp.inference.sampler import Sampling, sample

log = logging.getLogger(__name__)
DISTILLED_FILE = "ift_distilled.jsonl"
REFINE_REQUEST = ("Here is an instruction and a response to it.\nInstruction: {instruction}\nResponse: {response}\n"
                  "Rewrite the instruction so that it is clearer and more specific. Reply with the new instruction only.")


@dataclass
class DistillTools:
    """What distillation needs from the loop: the teacher, loaded with its own tokenizer, and freeing it."""

    load_checkpoint: Callable[[str], tuple[Any, Any]]
    release: Callable[[Any], None]


class Distilled:
    """Mixin over a seed-data class: its IFT responses written by a teacher once `distill` has run
    (the world's: DistilledWorld in world/source.py)."""

    files: dict[str, Path]  # the seed-data class's (SeedData.files)

    def _init_distill(self, teacher_path: str, refine_instructions: bool, max_new_tokens: int, temperature: float,
                      top_p: float, batch_size: int) -> None:
        check(model_path_problem(teacher_path, "teacher_path"), *sampling_problems(temperature, top_p, max_new_tokens),
              at_least(batch_size, 1, "batch_size"))
        self.teacher_path, self.refine_instructions, self.batch_size = str(teacher_path), bool(refine_instructions), batch_size
        self.teacher_sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)

    @property
    def distilled_file(self) -> Path:
        return Path(self.files["ift"]).parent / DISTILLED_FILE

    def ift(self) -> list[dict[str, Any]]:
        if self.distilled_file.exists():
            return read_jsonl(self.distilled_file)
        return super().ift()  # type: ignore[misc]

    def distill(self, tools: DistillTools) -> int:
        """Write the teacher's IFT rows (once per job); return how many."""
        if self.distilled_file.exists():
            return len(read_jsonl(self.distilled_file))
        rows = super().ift()  # type: ignore[misc]
        teacher, tok = tools.load_checkpoint(self.teacher_path)
        try:
            def answer(instructions: list[str], desc: str) -> list[str]:
                outs = sample(teacher, tok, [prompt_ids(tok, i) for i in instructions], self.teacher_sampling,
                              batch_size=self.batch_size, desc=desc)
                return [o.strip() for (o,) in outs]

            instructions = [r["instruction"] for r in rows]
            responses = answer(instructions, "distill")
            refined = instructions
            if self.refine_instructions:
                requests = [REFINE_REQUEST.format(instruction=i, response=r) for i, r in zip(instructions, responses)]
                refined = [(text.splitlines() or [""])[0].strip() or i for text, i in
                           zip(answer(requests, "refine instructions"), instructions)]
                responses = answer(refined, "distill refined")
        finally:
            tools.release(teacher)
        out = [{**r, "instruction": new, "response": resp, "teacher": self.teacher_path,
                **({"original_instruction": r["instruction"]} if self.refine_instructions else {})}
               for r, new, resp in zip(rows, refined, responses)]
        write_jsonl(self.distilled_file, out)
        changed = sum(o["response"] != r["response"] for o, r in zip(out, rows))
        log.info("dSFT: %s wrote %d IFT responses (%d differ from the seed data's)%s", self.teacher_path, len(out), changed,
                 ", each instruction refined once" if self.refine_instructions else "")
        return len(out)
