"""LLM-as-a-Judge: one class renders and parses for every pointwise judge prompt.

A judge prompt (conf/judge/additive5.yaml, holistic5.yaml, ...) is data: its template, score range and score
marker. Scores are parsed from the judgment's new tokens only; an unparseable or out-of-range judgment is
missing (NaN), never a number, and a candidate's score is the mean of its valid judgments (records.py).
A judge prompt is one kind of scorer (scorer.py); the options that score otherwise extend one
(`ScorerWithJudgePrompt`): the model learns and is evaluated with that prompt.
"""
from __future__ import annotations

import re
from typing import ClassVar, Sequence

from srlm_exp.chat import prompt_ids
from srlm_exp.checks import at_least, check, model_path_problem, require, sampling_problems
from srlm_exp.inference.sampler import Sampling, sample
from srlm_exp.judging.parsing import parse_score
from srlm_exp.judging.scorer import Scorer, flat_candidates, regrouped
from srlm_exp.records import CandidateJudgments


class JudgeTemplateError(ValueError):
    pass


class Judge(Scorer):
    """A pointwise judge prompt: fills the template with (instruction, response), samples K judgments."""

    required_placeholders: ClassVar[tuple[str, ...]] = ("<INSTRUCTION_HERE>", "<RESPONSE_HERE>")
    # Its judgments follow the seed data's EFT judgments (what the seed data can read back: JudgmentReader).
    writes_seed_judgments: ClassVar[bool] = True
    pointwise_judgments = True

    def __init__(
        self,
        name: str,
        template: str,
        score_marker: str = "Score:",
        score_range: Sequence[float] = (0, 5),
        num_judgments: int = 3,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_new_tokens: int = 40,
        model_path: str | None = None,
    ):
        missing = [p for p in self.required_placeholders if p not in template]
        if missing:
            raise JudgeTemplateError(
                f"judge '{name}': template lacks the placeholder(s) {missing}; a judge template must contain "
                f"{list(self.required_placeholders)} where the instruction and response(s) go"
            )
        lo_hi = list(score_range) if isinstance(score_range, Sequence) and len(score_range) == 2 else None
        check(at_least(num_judgments, 1, "num_judgments", "set num_judgments to 1 or more (the paper: 3)"),
              require(lo_hi is not None and all(isinstance(v, (int, float)) for v in lo_hi) and lo_hi[0] < lo_hi[1],
                      "score_range", f"is {list(score_range)!r}, must be [low, high] with low < high",
                      "set score_range=[0,5] (the additive rubric)"),
              *sampling_problems(temperature, top_p, max_new_tokens),
              model_path_problem(model_path, "model_path") if model_path is not None else None)
        self.model_path = None if model_path is None else str(model_path)
        self.name = name
        self.template = template
        self.score_marker = score_marker
        self.low, self.high = float(score_range[0]), float(score_range[1])
        self.num_judgments = num_judgments
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)

    # --- rendering -------------------------------------------------------------------------
    def render(self, instruction: str, response: str) -> str:
        # Substitute the response last so text inside the instruction cannot inject a placeholder.
        return self.template.replace("<INSTRUCTION_HERE>", instruction).replace("<RESPONSE_HERE>", response)

    @property
    def score_pattern(self) -> str:
        """The regex that finds the marker the judge writes before its score."""
        return re.escape(self.score_marker) + r"\s*"

    def parse(self, judgment: str) -> float:
        return parse_score(judgment, pattern=self.score_pattern, low=self.low, high=self.high)

    def target(self, judgment: str, score: float) -> str:
        """An EFT target: the justification with its final score clipped into this judge's range."""
        k = int(min(self.high, max(self.low, round(score))))
        body = re.sub(self.score_pattern + r"\S+\s*$", "", judgment.strip()).rstrip()
        return f"{body} {self.score_marker} {k}"

    def eft_rows(self, seed_data) -> list[dict]:
        """Judge-format training rows (instruction = filled judge prompt, response = judgment)."""
        return [
            {"instruction": self.render(r["instruction"], r["response"]), "response": self.target(r["judgment"], r["score"])}
            for r in seed_data.eft_graded()
        ]

    # --- judging ---------------------------------------------------------------------------
    def judge(self, model, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
              batch_size: int = 32, desc: str = "judge") -> list[list[CandidateJudgments]]:
        """Judge every candidate of every instruction K times in batched generation (each judge prompt is
        read once for its K judgments, the rubric once for all)."""
        prompts = [prompt_ids(tokenizer, self.render(i, c)) for i, c in flat_candidates(instructions, candidates)]
        texts = sample(model, tokenizer, prompts, self.sampling, n=self.num_judgments, batch_size=batch_size, desc=desc)
        return regrouped(candidates, [[(t, self.parse(t)) for t in judgments] for judgments in texts])

    def judge_in_loop(self, policy, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
                      models, iteration: int, batch_size: int = 32) -> list[list[CandidateJudgments]]:
        """Judge AIFT(M(t)) candidates (t = `iteration`): with the policy itself, as the paper does, or with
        the frozen judge model at `model_path` and its own tokenizer (a teacher, as in Zephyr's AIF).
        `models` is the run's ModelStore (judges that need other models load them through it)."""
        if self.model_path is None:
            return self.judge(policy, tokenizer, instructions, candidates, batch_size=batch_size, desc="judging")
        teacher, teacher_tokenizer = models.load_checkpoint(self.model_path)
        try:
            return self.judge(teacher, teacher_tokenizer, instructions, candidates, batch_size=batch_size,
                              desc="judging (teacher)")
        finally:
            models.release(teacher)

    def model_judge(self) -> "Judge":
        """The judge prompt the model learns (EFT) and is evaluated with: this one."""
        return self


class ScorerWithJudgePrompt(Scorer):
    """A judge option that scores without being a judge prompt (oracle, self-consistency, implicit reward,
    reward model, ensemble, composite), extending one: the model is still trained (EFT) and evaluated as a
    judge with `prompt`, built from the option's prompt keys (template, score range, sampling). Its own
    scores use the prompt's range and marker."""

    def __init__(self, name: str, template: str, score_marker: str = "Score:", score_range: Sequence[float] = (0, 5),
                 num_judgments: int = 3, temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 40,
                 model_path: str | None = None):
        check(require(model_path is None, "model_path", f"is {model_path!r}, but {name} judges without a model",
                      "set model_path=null, or choose a judge prompt (e.g. judge=additive5)"))
        self.name = name
        self.prompt = Judge(name, template, score_marker, score_range, num_judgments, temperature, top_p, max_new_tokens)
        self.score_marker, self.low, self.high = self.prompt.score_marker, self.prompt.low, self.prompt.high

    def model_judge(self) -> Judge:
        return self.prompt
