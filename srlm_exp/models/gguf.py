"""GGUF files as a model source: converted once into a plain Hugging Face directory, cached by content.

transformers reads a GGUF file (`from_pretrained(dir, gguf_file=name)`, with the `gguf` package) by
dequantizing every tensor, but the model it returns refuses `save_pretrained` ("quantized with gguf and is
not serializable"). Every phase of a run (LoRA, FSDP, saving M(t), a teacher judge, a candidate model)
expects an ordinary checkpoint, so the file is converted once: the config without its
`quantization_config`, the dequantized state dict loaded into a model built from that config, and the
tokenizer (with its chat template) saved beside it. The cache key is the file's SHA-256: a renamed copy
reuses the conversion, an edited file does not.
"""
from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import torch

from srlm_exp.artifacts import atomic_path
from srlm_exp.models.loading import is_model_dir

log = logging.getLogger(__name__)

GGUF_INSTALL = "pip install gguf"
_HASH_CHUNK = 1 << 24


class GGUFError(ValueError):
    """A GGUF file that cannot become a model; the message names the file and the fix."""


def gguf_available() -> bool:
    try:
        import gguf  # noqa: F401
    except ImportError:
        return False
    return True


def read_architecture(path: str | Path) -> str:
    """The `general.architecture` of a GGUF file's header (reads the metadata only)."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import read_field

    return str(read_field(GGUFReader(str(path)), "general.architecture")[0])


def supported(architecture: str) -> bool:
    """Whether this transformers can read a GGUF file of `architecture` (llama.cpp writes Qwen2-MoE as
    `qwen2moe`, transformers lists `qwen2_moe`)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return architecture in GGUF_SUPPORTED_ARCHITECTURES or architecture.replace("moe", "_moe") in GGUF_SUPPORTED_ARCHITECTURES


def gguf_problem(path: str | Path) -> str | None:
    """What keeps `path` from being converted (None: nothing found before converting). Checked before a run
    starts: the file, the `gguf` package, the architecture in its header."""
    p = Path(path).expanduser()
    if not p.is_file():
        return f"no such file: {p}" if not p.exists() else f"{p} is not a file"
    if not gguf_available():
        return f"reading {p.name} needs the gguf package, which is not installed ({GGUF_INSTALL})"
    try:
        architecture = read_architecture(p)
    except Exception as exc:  # a truncated or foreign file: say so before anything is built
        return f"{p} could not be read as a GGUF file: {exc}"
    if not supported(architecture):
        import transformers

        return (f"{p.name} holds a '{architecture}' model, which transformers {transformers.__version__} cannot read "
                "from GGUF")
    return None


@functools.lru_cache(maxsize=8)
def _content_key(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def content_key(path: str | Path) -> str:
    """SHA-256 of the file's bytes (first 16 hex digits): the conversion's cache key. Hashed once per process
    and file version (checking a config and running it read the same key)."""
    p = Path(path).expanduser().resolve()
    stat = p.stat()
    return _content_key(p, stat.st_size, stat.st_mtime_ns)


def converted_dir(path: str | Path, cache_dir: str | Path) -> Path:
    """Where the plain directory of `path` lives in the cache (whether or not it exists yet)."""
    p = Path(path).expanduser()
    return Path(cache_dir) / "gguf" / content_key(p)


def convert(path: str | Path, cache_dir: str | Path) -> Path:
    """The cached plain fp32 directory of the GGUF file at `path`, converted now if absent."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


    p = Path(path).expanduser().resolve()
    problem = gguf_problem(p)
    if problem:
        raise GGUFError(problem)
    out = converted_dir(p, cache_dir)
    if is_model_dir(out):
        log.info("M0: reusing %s, converted from %s", out, p.name)
        return out
    log.info("M0: converting %s into a plain model directory %s (once)", p, out)
    kwargs = {"gguf_file": p.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(p.parent), **kwargs)
        config = AutoConfig.from_pretrained(str(p.parent), **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(str(p.parent), dtype=torch.float32, **kwargs)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise GGUFError(f"transformers could not read {p} as a causal LM: {exc}") from exc
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are dequantized: a plain model
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings are one tensor under two names: only a genuinely absent weight is an error.
    tied = {k for k in missing if k.endswith("lm_head.weight") and getattr(config, "tie_word_embeddings", False)}
    if set(missing) - tied or unexpected:
        raise GGUFError(f"{p.name}: the dequantized weights do not fit {type(model).__name__} "
                        f"(missing {sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]})")
    model.generation_config = loaded.generation_config
    del loaded
    with atomic_path(out) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return out
