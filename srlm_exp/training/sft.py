"""Supervised fine-tuning: next-token loss on response tokens only.

Used for M0 -> M1 (IFT + EFT seed data), for the paper's SFT ablation of the self-rewarding
step (top-scored candidates), for rejection-sampling fine-tuning (candidates scored at or above a threshold:
expert iteration / RFT when the judge is a checker), and for pretraining M0 (where every token is a label).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from srlm_exp.chat import IGNORE_INDEX, ChatExample, chat_example
from srlm_exp.checks import check, require
from srlm_exp.models.context import sequence_budget
from srlm_exp.pairs.build import accepted_candidates, training_target
from srlm_exp.training.base import PolicyModule
from srlm_exp.training.batching import collate_examples
from srlm_exp.training.replay import candidates_to_train_on
from srlm_exp.training.shared_batches import causal_lm_loss
from srlm_exp.training.stage import StageInputs, StageSettings, too_little_aift_data


class SFTModule(PolicyModule):
    logged_weight = "response_tokens"  # each step's count of label tokens, beside its loss

    def __init__(
        self,
        model,
        lr: float = 5.5e-6,
        min_lr: float = 1.1e-6,
        warmup_steps: int = 0,
        weight_decay: float = 0.0,
        log_prefix: str = "sft",
    ):
        super().__init__(model, lr, min_lr, warmup_steps, weight_decay, log_prefix)
        self.save_hyperparameters(ignore=["model"])

    def loss(self, batch):
        # Logits only where a label is predicted; a shared prefix forwarded once (training/shared_batches.py).
        return causal_lm_loss(self.model, batch), {}

    def weight(self, batch) -> float:
        """The loss is a mean over label tokens (Hugging Face's causal-LM loss): a micro-batch counts by its own."""
        return float((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


class TopCandidateSFTStage(StageSettings):
    """The paper's ablation: SFT of M(t) on the top-scored candidate of each prompt (no pairs), taken from
    the same ranking DPO's pairs come from (identical samples merged, their judgments pooled)."""

    def __init__(self, name: str = "sft", lr: float = 5.5e-6, min_lr: float = 1.1e-6, warmup_steps: int = 0,
                 epochs: int = 1, max_steps: int = -1, batch_size: int = 16, max_len: int | str = "auto",
                 micro_batch_size: int | None = None, min_examples: int = 8, weight_decay: float = 0.0,
                 replay_share: float = 0.0):
        check(*self.aift_settings(min_examples=min_examples, replay_share=replay_share),
              *self.fit_settings(lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
                                 epochs=epochs, max_steps=max_steps, batch_size=batch_size, max_len=max_len,
                                 micro_batch_size=micro_batch_size))
        self.name = name

    def fit(self, model, inputs: StageInputs) -> dict[str, Any]:
        tok, data_dir = inputs.tokenizer, inputs.data_dir
        examples, max_len = [], sequence_budget(self.max_len, model, "train.max_len")
        rows, replayed = candidates_to_train_on(data_dir, inputs.iteration, self.replay_share, inputs.seed)
        for row in rows:
            best = training_target(row)
            if best is not None:
                examples.append(chat_example(tok, row.instruction, best.text, max_len, "train.max_len"))
        if len(examples) < self.min_examples:
            raise too_little_aift_data(data_dir, f"iteration {inputs.iteration}: only {len(examples)} prompts have a "
                                       f"scored candidate in {data_dir}/candidates.jsonl", self.min_examples)
        # torch types DataLoader's dataset as a Dataset; a list is a map-style dataset at runtime
        loader: DataLoader[ChatExample] = DataLoader(examples, batch_size=self.batch_size, shuffle=True,  # type: ignore[arg-type]
                                                     generator=torch.Generator().manual_seed(inputs.iteration),
                                                     collate_fn=self.collate(lambda b: collate_examples(b, tok.pad_token_id)))
        module = SFTModule(model, log_prefix="sft_top", **self.optimizer_args())
        inputs.run_fit(module, loader, self.epochs, self.max_steps)
        return {"examples": len(examples), "replayed_prompts": replayed}


class RejectionSamplingSFTStage(TopCandidateSFTStage):
    """Rejection-sampling fine-tuning (train=rft): SFT of M(t) on every distinct candidate whose score is at
    least `min_score`, up to `per_prompt` of them per prompt (the best first), and on nothing of a prompt
    where none passes. With the checker as judge this is expert iteration (RFT, AutoIF's SFT stage): only
    answers that meet the request are taught. Cut-off candidates follow the row's cut-off rule, and one is
    never a target."""

    def __init__(self, name: str = "rft", min_score: float = 5.0, per_prompt: int = 2, **settings):
        super().__init__(name=name, **settings)
        check(require(isinstance(min_score, (int, float)), "min_score", f"is {min_score!r}, must be a number",
                      "set min_score=5 (the score a candidate needs to be trained on; 5 = the checker's full pass)"),
              require(isinstance(per_prompt, int) and per_prompt >= 1, "per_prompt", f"is {per_prompt!r}",
                      "set per_prompt=2 (the most distinct accepted candidates trained on per prompt)"))
        self.min_score, self.per_prompt = float(min_score), per_prompt

    def fit(self, model, inputs: StageInputs) -> dict[str, Any]:
        tok, data_dir = inputs.tokenizer, inputs.data_dir
        examples, max_len = [], sequence_budget(self.max_len, model, "train.max_len")
        rows, replayed = candidates_to_train_on(data_dir, inputs.iteration, self.replay_share, inputs.seed)
        prompts = 0
        for row in rows:
            accepted = accepted_candidates(row, self.min_score, self.per_prompt)
            prompts += bool(accepted)
            examples += [chat_example(tok, row.instruction, c.text, max_len, "train.max_len", ended=not c.cut_off)
                         for c in accepted]
        if len(examples) < self.min_examples:
            raise too_little_aift_data(data_dir, f"iteration {inputs.iteration}: only {len(examples)} candidates in "
                                       f"{data_dir}/candidates.jsonl score at least train.min_score={self.min_score:g}",
                                       self.min_examples)
        # torch types DataLoader's dataset as a Dataset; a list is a map-style dataset at runtime
        loader: DataLoader[ChatExample] = DataLoader(examples, batch_size=self.batch_size, shuffle=True,  # type: ignore[arg-type]
                                                     generator=torch.Generator().manual_seed(inputs.iteration),
                                                     collate_fn=self.collate(lambda b: collate_examples(b, tok.pad_token_id)))
        module = SFTModule(model, log_prefix="rft", **self.optimizer_args())
        inputs.run_fit(module, loader, self.epochs, self.max_steps)
        return {"examples": len(examples), "prompts": prompts, "replayed_prompts": replayed}
