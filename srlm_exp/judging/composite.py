"""A composite reward (Sparrow): a weighted sum of components, each itself a configured reward.

Components (conf/judge/composite.yaml): a preference judge (any judge option), rule-compliance judges
(one judge prompt per rule, scoring the probability that the rule holds: P(Yes) against P(No) for the
answer's first token, read from the model's next-token distribution, no sampling), the response length in
tokens (a penalty with a negative weight), and a format-validity check (1 when the whole response
matches a regex, else 0). The weights name the components one to one.

A candidate that any component could not score has no composite score (missing, never a default). Each
candidate's judgment text keeps every component's score; every iteration logs and reports (stats.json and
the summary: `judge_report`) each component's mean and its share of the final score (mean |weight x score|
over the sum of those means).
"""
from __future__ import annotations

import logging
import math
import re
from typing import Mapping, Sequence

import torch

from srlm_exp.chat import prompt_ids
from srlm_exp.checks import check, require
from srlm_exp.judging.judge import Judge, ScorerWithJudgePrompt
from srlm_exp.judging.scorer import Scorer, flat_candidates, regrouped
from srlm_exp.records import CandidateJudgments, mean_of_valid

log = logging.getLogger(__name__)

RULE_TEMPLATE = """Rule: <RULE_HERE>

User: <INSTRUCTION_HERE>
<response><RESPONSE_HERE></response>

Does the response follow the rule? Answer Yes or No."""


class RuleJudge(Judge):
    """P(the rule holds) for each candidate, from the judge model's next-token probabilities of Yes and No."""

    pointwise_judgments = False  # next-token probabilities, no judgment text

    def __init__(self, name: str, rule: str, template: str = RULE_TEMPLATE, yes: str = "Yes", no: str = "No",
                 model_path: str | None = None):
        check(require(bool(rule and rule.strip()), "rule", "is empty", "write the rule the response must follow"),
              require("<RULE_HERE>" in template, "template", "lacks <RULE_HERE>", "put <RULE_HERE> where the rule goes"))
        super().__init__(name, template.replace("<RULE_HERE>", rule.strip()), score_range=(0, 1), num_judgments=1,
                         max_new_tokens=1, model_path=model_path)
        self.rule, self.yes, self.no = rule.strip(), yes, no

    @torch.no_grad()
    def judge(self, model, tokenizer, instructions, candidates, batch_size: int = 32, desc: str = "judge"):
        yes = tokenizer(self.yes, add_special_tokens=False)["input_ids"]
        no = tokenizer(self.no, add_special_tokens=False)["input_ids"]
        if not yes or not no or yes[0] == no[0]:
            raise ValueError(f"rule judge {self.name}: {self.yes!r} and {self.no!r} must start with different tokens "
                             "in this tokenizer; set the component's yes/no words")
        prompts = [prompt_ids(tokenizer, self.render(i, c)) for i, c in flat_candidates(instructions, candidates)]
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        probs: list[float] = []
        for s in range(0, len(prompts), batch_size):
            part = prompts[s : s + batch_size]
            width = max(len(x) for x in part)
            ids = torch.full((len(part), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, x in enumerate(part):  # left-padded: every prompt's last token is the last column
                ids[i, width - len(x):] = torch.tensor(x)
                mask[i, width - len(x):] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, -1].float()
            two = torch.softmax(logits[:, [yes[0], no[0]]], dim=-1)
            probs += two[:, 0].cpu().tolist()
        model.train(was_training)
        return regrouped(candidates, [[(f"P(rule holds) = {prob:.3f}", prob)] for prob in probs])


class ResponseLength(Scorer):
    """The response's length in the policy's tokens (give it a negative weight: a length penalty)."""

    def judge_in_loop(self, policy, tokenizer, instructions, candidates, models, iteration, batch_size=32):
        lengths = [[len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in cands] for cands in candidates]
        return [[CandidateJudgments([f"{n} tokens"], [float(n)]) for n in row] for row in lengths]


class FormatCheck(Scorer):
    """1 when the whole response (stripped) matches `pattern`, else 0."""

    def __init__(self, pattern: str):
        try:
            self.pattern = re.compile(pattern)
        except re.error as exc:
            check(require(False, "pattern", f"is not a regular expression ({exc})", "write a Python regex"))

    def judge_in_loop(self, policy, tokenizer, instructions, candidates, models, iteration, batch_size=32):
        return [[CandidateJudgments([f"format {'valid' if ok else 'invalid'}"], [1.0 if ok else 0.0])
                 for ok in (self.pattern.fullmatch(c.strip()) is not None for c in cands)] for cands in candidates]


def weighted_sum(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """sum_k weight_k * score_k; NaN when any component is NaN."""
    if any(math.isnan(s) for s in scores.values()):
        return math.nan
    return sum(weights[k] * scores[k] for k in scores)


def component_report(per_candidate: Sequence[Mapping[str, float]], weights: Mapping[str, float]) -> dict[str, dict]:
    """Each component's mean score and its share of the final score (mean |w x s| / sum of those)."""
    names = list(weights)
    means = {k: mean_of_valid([c[k] for c in per_candidate]) for k in names}
    contributions = {k: mean_of_valid([abs(weights[k] * c[k]) for c in per_candidate]) for k in names}
    total = sum(v for v in contributions.values() if not math.isnan(v))
    return {k: {"mean": means[k], "share": contributions[k] / total if total else math.nan} for k in names}


class CompositeJudge(ScorerWithJudgePrompt):
    """Its components score; the model is trained and evaluated with the prompt this extends."""

    def __init__(self, *args, components: Mapping[str, Scorer], weights: Mapping[str, float], **kwargs):
        super().__init__(*args, **kwargs)
        missing, extra = sorted(set(components) - set(weights)), sorted(set(weights) - set(components))
        check(require(not missing and not extra, "weights",
                      f"do not match the components ({', '.join(f'no weight for {k}' for k in missing)}"
                      f"{'; ' if missing and extra else ''}{', '.join(f'{k} is no component' for k in extra)})",
                      f"give one weight per component: {', '.join(sorted(components))}"),
              require(len(components) >= 1, "components", "is empty", "configure at least one component"),
              *(require(isinstance(w, (int, float)) and math.isfinite(w), f"weights.{k}", f"is {w!r}", "set a finite number")
                for k, w in weights.items()))
        self.components, self.weights = dict(components), {k: float(weights[k]) for k in components}
        self.last_report: dict[str, dict] = {}

    def loop_report(self) -> dict | None:
        return {"components": self.last_report} if self.last_report else None

    def judge_in_loop(self, policy, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
                      models, iteration: int, batch_size: int = 32) -> list[list[CandidateJudgments]]:
        judged = {k: c.judge_in_loop(policy, tokenizer, instructions, candidates, models, iteration, batch_size=batch_size)
                  for k, c in self.components.items()}
        out, flat = [], []
        for p, cands in enumerate(candidates):
            row = []
            for c in range(len(cands)):
                scores = {k: judged[k][p][c].score for k in self.components}
                flat.append(scores)
                value = weighted_sum(scores, self.weights)
                parts = " ".join(f"[{k}: {s:.3f} x {self.weights[k]:g}]" for k, s in scores.items())
                row.append(CandidateJudgments([f"{parts} {self.score_marker} {value:.4f}"], [value]))
            out.append(row)
        self.last_report = component_report(flat, self.weights)
        log.info("composite reward, AIFT(M%d): %s", iteration,
                 ", ".join(f"{k} mean {v['mean']:.3f} share {v['share']:.2f}" for k, v in self.last_report.items()))
        return out
