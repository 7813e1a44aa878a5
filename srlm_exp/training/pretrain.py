"""M0 of the embedded default (`model=tiny`, conf/model/tiny.yaml): a small Llama built from a config, with a
tokenizer trained on the seed data's text, pretrained on its corpus (seed data with a PretrainingCorpus: the
embedded world). M0 is saved with save_pretrained and cached under a hash of everything that built it, so
later runs (and multirun jobs) reuse it. It is a fit like every other, so it lives with them; the other M0
sources (a checkpoint, a GGUF file) build nothing and are `models/sources.py`."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar, cast

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, TensorDataset
from transformers import LlamaConfig, LlamaForCausalLM

from srlm_exp import distributed
from srlm_exp.data.seed_data import PretrainingCorpus
from srlm_exp.models import tokenizer as tokenizer_module
from srlm_exp.models.loading import is_model_dir, save_model
from srlm_exp.models.tokenizer import train_tokenizer
from srlm_exp.training.fit import make_trainer
from srlm_exp.training.save_callback import SaveModelCallback
from srlm_exp.training.sft import SFTModule

log = logging.getLogger(__name__)


class TinyWorldModel:
    """An M0 source (models/sources.py's interface): build (or reuse from cache) a tiny Llama pretrained on the
    seed data's corpus."""

    requires: ClassVar[tuple[type, ...]] = (PretrainingCorpus,)

    def m0(self, model_cfg, seed_data: PretrainingCorpus, cache_dir: str | Path, trainer_cfg, seed: int) -> str:
        return str(build_m0(model_cfg, seed_data, cache_dir, trainer_cfg, seed))

    def checkpoint_dir(self, model_cfg, cache_dir) -> Path | None:
        return None  # built from the seed data: nothing to read before the run

# Bump when the way M0 is built changes, so stale caches are not reused.
BUILD_VERSION = 1


def m0_fingerprint(model_cfg: Any, corpus: PretrainingCorpus, seed: int) -> str:
    """Hash of the architecture, pretraining settings, seed, the code that builds M0 and the exact texts."""
    h = hashlib.sha256()
    cfg = cast(dict, OmegaConf.to_container(model_cfg, resolve=True)) if isinstance(model_cfg, DictConfig) else model_cfg
    h.update(json.dumps({k: cfg[k] for k in ("architecture", "pretrain")}, sort_keys=True).encode())
    h.update(f"seed={seed};build={BUILD_VERSION}".encode())
    for module in (__file__, tokenizer_module.__file__):  # code that builds M0 changed -> rebuild
        h.update(Path(module).read_bytes())
    for texts in (corpus.tokenizer_texts(), corpus.corpus_texts()):
        h.update(json.dumps(texts, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _packed_blocks(tokenizer, texts: list[str], block_size: int) -> torch.Tensor:
    """Concatenate documents separated by EOS and cut into equal blocks (no padding to waste)."""
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // block_size
    if n == 0:
        raise ValueError(f"corpus of {len(ids)} tokens is shorter than one block of {block_size}")
    return torch.tensor(ids[: n * block_size]).view(n, block_size)


def build_m0(model_cfg: Any, corpus: PretrainingCorpus, cache_dir: str | Path, trainer_cfg: Any, seed: int) -> Path:
    """Return the directory of M0, building it (tokenizer + pretraining) if not cached."""
    out = Path(cache_dir) / f"m0-tiny-{m0_fingerprint(model_cfg, corpus, seed)}"
    # Under DDP every rank pretrains (one fit): rank 0 decides whether to, and alone writes M0.
    if distributed.share_from_main(lambda: is_model_dir(out)):
        log.info("M0: reusing cached %s", out)
        return out
    arch = model_cfg.architecture
    pre = model_cfg.pretrain
    pl.seed_everything(seed, workers=True)
    tokenizer = train_tokenizer(corpus.tokenizer_texts(), vocab_size=arch.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_attention_heads,
        max_position_embeddings=arch.max_position_embeddings,
        attention_dropout=arch.dropout,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    texts = corpus.corpus_texts()
    if not texts or pre.epochs == 0:
        # No pretraining: M0 is the initialised model with the world's tokenizer (measured: on the
        # embedded world, pretraining on the corpus slows the later learning of the tasks, docs/embedded_world.md).
        log.info("M0: %.2fM params, randomly initialised (no pretraining corpus)", model.num_parameters() / 1e6)
        if distributed.is_main():
            save_model(model, tokenizer, out)
        distributed.barrier()
        return out
    blocks = _packed_blocks(tokenizer, texts, pre.block_size)
    loader = DataLoader(
        TensorDataset(blocks),
        batch_size=pre.batch_size,
        shuffle=True,
        collate_fn=lambda b: _lm_batch(torch.stack([x[0] for x in b])),
    )
    log.info("M0: pretraining %.2fM params on %d blocks x %d tokens", model.num_parameters() / 1e6, len(blocks), pre.block_size)
    module = SFTModule(model, lr=pre.lr, min_lr=pre.min_lr, warmup_steps=pre.warmup_steps, log_prefix="pretrain")
    # Rank 0 saves M0 at the end of the fit (the same callback as every M(t); under trainer=fsdp
    # it first gathers the shards into a fresh model of this config).
    save = SaveModelCallback(out, tokenizer, rebuild=lambda: LlamaForCausalLM(config))
    trainer = make_trainer(trainer_cfg, max_epochs=pre.epochs, max_steps=pre.get("max_steps", -1) or -1, callbacks=[save])
    trainer.fit(module, loader)
    return out


def _lm_batch(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"input_ids": x, "labels": x.clone(), "attention_mask": torch.ones_like(x)}
