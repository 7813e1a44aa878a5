"""Sampling a prompt's N candidate responses (conf/callbacks/self_reward.yaml: the paper's N=4, T=0.7,
top-p 0.9), and optionally more from other models (Zephyr's multi-model candidates), each tagged with
its source."""
from __future__ import annotations

from typing import Sequence

from srlm_exp.chat import prompt_ids
from srlm_exp.checks import at_least, check, model_path_problem, require, sampling_problems
from srlm_exp.inference.sampler import Completion, Sampling, sample
from srlm_exp.records import CUT_OFF_RULES, CutOffRule


POLICY = "policy"  # the source of the candidates M(t) samples itself


class CandidateSampler:
    def __init__(self, n_candidates: int = 4, temperature: float = 0.7, top_p: float = 0.9,
                 max_new_tokens: int = 32, batch_size: int = 64, candidate_models: Sequence[str] = (),
                 candidates_per_model: int = 1, cut_off: str = "drop", cut_off_penalty: float = 1.0):
        check(require(n_candidates >= 2, "n_candidates", f"is {n_candidates}: pairs need at least 2 candidates per prompt",
                      "set n_candidates to 2 or more (the paper: 4)"),
              *sampling_problems(temperature, top_p, max_new_tokens), at_least(batch_size, 1, "batch_size"),
              at_least(candidates_per_model, 1, "candidates_per_model"),
              *(model_path_problem(p, f"candidate_models[{i}]") for i, p in enumerate(candidate_models)),
              require(cut_off in CUT_OFF_RULES, "cut_off", f"is {cut_off!r}, must be one of {', '.join(CUT_OFF_RULES)}",
                      "set cut_off=drop (cut-off candidates are not trained on), penalty (their score lowered by "
                      "cut_off_penalty) or keep (trained on like finished ones)"),
              require(isinstance(cut_off_penalty, (int, float)) and cut_off_penalty >= 0, "cut_off_penalty",
                      f"is {cut_off_penalty!r}, must be a number >= 0", "set cut_off_penalty=1.0 (score points)"))
        # Stored with every judged row (candidates.jsonl), so whatever trains on the row applies the same rule.
        self.cut_off = CutOffRule(cut_off, float(cut_off_penalty) if cut_off == "penalty" else 0.0)
        self.candidate_models = [str(p) for p in candidate_models]
        self.candidates_per_model = candidates_per_model
        self.n_candidates = n_candidates
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        self.batch_size = batch_size

    def sample(self, model, tokenizer, prompts: Sequence[str]) -> list[list[Completion]]:
        """N sampled responses (new text only) to each prompt (each prompt read once for its N samples)."""
        return sample(model, tokenizer, [prompt_ids(tokenizer, p) for p in prompts], self.sampling, n=self.n_candidates,
                      batch_size=self.batch_size, desc="candidates")

    def sample_in_loop(self, policy, tokenizer, prompts: Sequence[str], models) -> tuple[list[list[Completion]], list[list[str]]]:
        """Each prompt's candidates and their sources: the policy's N, then `candidates_per_model` from each
        of `candidate_models` (a frozen model with its own tokenizer, loaded through the run's ModelStore
        one at a time), in that order."""
        texts = self.sample(policy, tokenizer, prompts)
        sources = [[POLICY] * len(row) for row in texts]
        for path in self.candidate_models:
            model, own_tokenizer = models.load_checkpoint(path)
            try:
                extra = sample(model, own_tokenizer, [prompt_ids(own_tokenizer, p) for p in prompts], self.sampling,
                               n=self.candidates_per_model, batch_size=self.batch_size, desc=f"candidates ({path})")
            finally:
                models.release(model)
            for row, row_sources, more in zip(texts, sources, extra):
                row += more
                row_sources += [path] * len(more)
        return texts, sources
