"""Loading and saving models: every stage gets its model through from_pretrained(directory),
so the embedded tiny model and a real Hugging Face checkpoint go down the same path."""
from __future__ import annotations

import ctypes
import gc
import sys
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from srlm_exp.artifacts import atomic_path
from srlm_exp.models.checkpoints import forget_directory, remember_directory
from srlm_exp.models.lora import apply_lora, merged_copy_if_lora


class MissingChatTemplateError(ValueError):
    pass


def load_tokenizer(name_or_path: str | Path, chat_template: str | None = None, trust_remote_code: bool = False):
    """Load a tokenizer, give it a PAD distinct from EOS where possible, and require a chat template."""
    tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    if chat_template:
        tok.chat_template = chat_template
    if not getattr(tok, "chat_template", None):
        raise MissingChatTemplateError(
            f"the tokenizer of {name_or_path} has no chat template; set model.chat_template "
            "to a Jinja template (see conf/model/hf.yaml)"
        )
    if tok.eos_token_id is None:
        raise ValueError(f"the tokenizer of {name_or_path} has no eos_token; the model could never learn to stop")
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        # PAD == EOS would mask EOS out of SFT labels; use a dedicated pad token when the vocab has one.
        candidate = tok.unk_token if tok.unk_token is not None and tok.unk_token_id != tok.eos_token_id else None
        if candidate is None:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
        else:
            tok.pad_token = candidate
    tok.padding_side = "left"  # for generation; training pads explicitly
    return tok


def load_model(
    name_or_path: str | Path,
    tokenizer=None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    dropout: float | None = None,
) -> Any:
    """from_pretrained a causal LM; resize embeddings if the tokenizer gained a pad token."""
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype not in (None, "auto"):
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if dropout is not None:
        kwargs["attention_dropout"] = dropout
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
    # the embedding module's weight (typed Tensor | Module as any module attribute): [vocab, hidden]
    if tokenizer is not None and len(tokenizer) > cast(torch.Tensor, model.get_input_embeddings().weight).shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    remember_directory(model, name_or_path)  # what an engine that loads directories (vLLM) loads for it
    return model


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass, non-reentrant: the reentrant variant gives a
    block whose inputs need no grad (LoRA: frozen embeddings) no gradients at all, silently."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the old name is deprecated)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False  # the KV cache is useless in training and conflicts with recomputation


def save_model(model, tokenizer, out_dir: str | Path) -> Path:
    """Save a plain model directory atomically; LoRA adapters are merged first, so every M(t)
    is a complete model that from_pretrained reads without peft."""

    to_save = merged_copy_if_lora(model)
    with atomic_path(out_dir) as tmp:
        to_save.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    remember_directory(to_save, out_dir)
    return Path(out_dir)


def is_model_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").exists()


def release(model: Any) -> None:
    """Free a model's weights now, even while other references to it live on (a Lightning module, a
    caller's variable): every parameter and buffer is swapped for an empty tensor, so its memory (GPU
    too) returns before the next model is loaded. The model is unusable afterwards."""
    if model is not None:
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                tensor.data = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    release_cached_memory()


def release_cached_memory() -> None:
    """Collect garbage and hand cached GPU memory back (between models, and between multirun jobs), and the
    freed CPU heap too: once a process has freed a large block, glibc raises its mmap threshold, and later weight
    tensors live on the heap, whose freed pages it keeps for reuse instead of returning them (RSS stays up)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    """glibc, for malloc_trim; None on other C libraries (musl, macOS), which have no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


class ModelStore:
    """Loads the run's models, always the same way: M(t) from its directory with the run's tokenizer,
    dtype and device; trainable ones with gradient checkpointing and fresh LoRA adapters as configured."""

    def __init__(self, model_cfg, tokenizer, device: torch.device, model_dir, run_dir: Path | None = None):
        self.cfg, self.tokenizer, self.device = model_cfg, tokenizer, device
        self.model_dir = model_dir  # t -> the directory of M(t)
        self.run_dir = run_dir      # the job's directory (for models a judge trains, e.g. a reward model)

    def load(self, t: int, trainable: bool = False) -> Any:
        return self.load_path(self.model_dir(t), trainable)

    def load_path(self, path: str | Path, trainable: bool = False) -> Any:
        c = self.cfg
        model = load_model(path, self.tokenizer, dtype=c.dtype, trust_remote_code=c.trust_remote_code)
        if trainable:
            forget_directory(model)  # it is about to differ from its directory
            model.train()  # from_pretrained returns eval mode (dropout off)
            if c.gradient_checkpointing:
                enable_gradient_checkpointing(model)
            if c.lora.enabled:
                model = apply_lora(model, c.lora)
        return model.to(self.device)

    def load_checkpoint(self, path: str | Path) -> tuple[Any, Any]:
        """Another model than the run's (a teacher judge, a candidate model): frozen, in evaluation mode,
        with its own tokenizer and chat template, in the run's dtype and on its device."""
        c = self.cfg
        tokenizer = load_tokenizer(path, trust_remote_code=c.trust_remote_code)
        model = load_model(path, tokenizer, dtype=c.dtype, trust_remote_code=c.trust_remote_code)
        return model.eval().to(self.device), tokenizer

    release = staticmethod(release)
