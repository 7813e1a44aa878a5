"""Sampling a prompt's N candidate responses (conf/callbacks/self_reward.yaml: the paper's N=4, T=0.7,
top-p 0.9)."""
from __future__ import annotations

from typing import Sequence

from srlm_exp.chat import prompt_ids
from srlm_exp.config import at_least, check, require, sampling_problems
from srlm_exp.generation.sampler import Sampling, sample


class CandidateSampler:
    def __init__(self, n_candidates: int = 4, temperature: float = 0.7, top_p: float = 0.9,
                 max_new_tokens: int = 32, batch_size: int = 64):
        check(require(n_candidates >= 2, "n_candidates", f"is {n_candidates}: pairs need at least 2 candidates per prompt",
                      "set n_candidates to 2 or more (the paper: 4)"),
              *sampling_problems(temperature, top_p, max_new_tokens), at_least(batch_size, 1, "batch_size"))
        self.n_candidates = n_candidates
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        self.batch_size = batch_size

    def sample(self, model, tokenizer, prompts: Sequence[str]) -> list[list[str]]:
        """N sampled responses (new text only) to each prompt (each prompt read once for its N samples)."""
        return sample(model, tokenizer, [prompt_ids(tokenizer, p) for p in prompts], self.sampling, n=self.n_candidates,
                      batch_size=self.batch_size, desc="candidates")
