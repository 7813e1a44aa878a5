"""M0 -> M1: supervised fine-tuning on the seed data, IFT (+ EFT in the judge's format), loss on the
response tokens only (conf/seed_sft/default.yaml)."""
from __future__ import annotations

import logging
from functools import partial
from typing import Any

from torch.utils.data import DataLoader

from srlm_exp.chat import ChatExample, chat_example
from srlm_exp.checks import check
from srlm_exp.models.context import sequence_budget
from srlm_exp.models.shared_prefix import available
from srlm_exp.training.batching import length_grouped_batches
from srlm_exp.training.sft import SFTModule
from srlm_exp.training.shared_batches import collate_with_prefix, shared_prefix
from srlm_exp.training.stage import StageInputs, StageSettings

log = logging.getLogger(__name__)


class SeedSFTStage(StageSettings):
    def __init__(self, lr: float = 1e-3, min_lr: float = 2e-4, warmup_steps: int = 10, epochs: int = 3,
                 max_steps: int = -1, batch_size: int = 16, max_len: int | str = "auto", micro_batch_size: int | None = None,
                 weight_decay: float = 0.0):
        check(*self.fit_settings(lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
                                 epochs=epochs, max_steps=max_steps, batch_size=batch_size, max_len=max_len,
                                 micro_batch_size=micro_batch_size))

    def fit(self, model, inputs: StageInputs) -> dict[str, Any]:
        return self._fit(model, inputs, with_eft=True)

    def fit_ift_only(self, model, inputs: StageInputs) -> dict[str, Any]:
        """The IFT-only model (no judge data) that judges EFT candidates the paper's way."""
        return self._fit(model, inputs, with_eft=False)

    def _fit(self, model, inputs: StageInputs, with_eft: bool) -> dict[str, Any]:
        tok = inputs.tokenizer
        ift = [{"instruction": r["instruction"], "response": r["response"]} for r in inputs.seed_data.ift()]
        eft = inputs.judge.eft_rows(inputs.seed_data) if with_eft else []
        # Meta-Rewarding: M1 also learns to compare two judgments (judging/meta_judge.py).
        meta = inputs.meta_judge.eft_rows(inputs.seed_data, inputs.judge, inputs.seed) \
            if with_eft and inputs.meta_judge is not None else []
        max_len = sequence_budget(self.max_len, model, "seed_sft.max_len")
        examples = [chat_example(tok, r["instruction"], r["response"], max_len, "seed_sft.max_len")
                    for r in ift + meta + eft]
        # The judge rows share the rubric: forwarded once per batch (the plain path where that cannot apply).
        prefix = shared_prefix(examples[len(ift) + len(meta):]) if eft and available(model, "SFT", training=True) else []
        log.info("M1: SFT on %d IFT + %d EFT examples%s%s", len(ift), len(eft),
                 f" + {len(meta)} meta-judge examples" if meta else "",
                 f" (a {len(prefix)}-token prefix shared by the EFT rows)" if prefix else "")
        # Batches of similar length, in a seeded random order fixed for the run (a plain ordered
        # dataset, so DDP's sampler still splits it evenly across ranks).
        batches = length_grouped_batches([len(e.input_ids) for e in examples], self.batch_size, inputs.seed)
        examples = [examples[i] for b in batches for i in b]
        # torch types DataLoader's dataset as a Dataset; a list is a map-style dataset at runtime
        loader: DataLoader[ChatExample] = DataLoader(examples, batch_size=self.batch_size, shuffle=False,  # type: ignore[arg-type]
                                                     collate_fn=self.collate(partial(collate_with_prefix, pad_id=tok.pad_token_id,
                                                                                     prefix=prefix)))
        module = SFTModule(model, **self.optimizer_args())
        inputs.run_fit(module, loader, self.epochs, self.max_steps)
        return {"ift": len(ift), "eft": len(eft), **({"meta_eft": len(meta)} if meta else {})}
