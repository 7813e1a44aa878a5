"""Shared test setup: an isolated cache and offline W&B for the whole session, Hydra compose helpers,
and a helper that runs `run.py` in a subprocess the way a user does."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"

# Set by the session fixture below; subprocesses get the same values (see `job_env`).
TEST_ENV: dict[str, str] = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "HYDRA_FULL_ERROR": "1",
}


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """SRLM_EXP_CACHE -> a session tmp dir (the smoke M0 is built once and shared by every test,
    never in ~/.cache), W&B offline and silent, full Hydra tracebacks."""
    cache = tmp_path_factory.mktemp("srlm_cache")
    values = dict(TEST_ENV, SRLM_EXP_CACHE=str(cache))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in values.items():
            mp.setenv(k, v)
        TEST_ENV["SRLM_EXP_CACHE"] = str(cache)
        yield values
        TEST_ENV.pop("SRLM_EXP_CACHE", None)


def compose(overrides: Sequence[str] = ()):
    """The config `python run.py <overrides>` would run with (without the `hydra` node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=False)


def specialization_groups() -> dict[str, str]:
    """Groups the main config picks by interpolation (`optional model_defaults: ${model}`) -> that choice's
    pattern: a model's settings of other groups, never chosen on the command line."""
    import yaml

    out = {}
    for entry in yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]:
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if "${" in str(value):
                out[key.removeprefix("optional ").strip()] = str(value)
    return out


def config_groups() -> dict[str, list[str]]:
    """Every config group of conf/ that a user chooses from, and its options, discovered from the files."""
    special = specialization_groups()
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(CONF_DIR.iterdir())
        if d.is_dir() and any(d.glob("*.yaml")) and d.name not in special
    }


# Runs whose artifacts are compared byte for byte with the golden fixture or with each other: one thread, and
# PyTorch's AVX2 kernels on every x86 CPU. Both change float rounding, and greedy tokens with it: on an AVX-512
# machine the default kernels made M1's answers differ from the fixture's (made on an AVX2 machine).
REPRODUCIBLE_CPU = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2"}

# The smoke model under LoRA (and a student distilled on refined instructions) samples words that rarely end
# within the smoke budget: most candidates are cut off, and cut_off=drop (the default) would train on none.
# These runs check mechanics, so they train on cut-off candidates as well (without teaching them to end).
LORA_SMOKE = ["model.lora.enabled=true", "callbacks.self_reward.cut_off=keep"]


def job_env() -> dict[str, str]:
    """Environment of a `run.py` subprocess: this session's cache, offline W&B, importable package."""
    env = os.environ.copy()
    env.update(TEST_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("WANDB_API_KEY", None)  # never talk to a W&B server from tests
    return env


def run_job(overrides: Sequence[str], log_file: Path, timeout: float = 900, check: bool = True,
            multirun: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python run.py [-m] <overrides>` from the repository root; output goes to `log_file`.
    `env` adds to (or replaces in) the job's environment, e.g. its own SRLM_EXP_CACHE.

    With check=True a non-zero exit fails the test and shows the end of the log."""
    cmd = [sys.executable, str(REPO / "run.py")] + (["-m"] if multirun else []) + list(overrides)
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, env={**job_env(), **(env or {})}, stdout=f, stderr=subprocess.STDOUT,
                              timeout=timeout)
    proc.log = log_file.read_text(errors="replace")  # type: ignore[attr-defined]
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}; end of {log_file}:\n{proc.log[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """One finished smoke job (`python run.py debug=smoke logger=none`); tests only read it. One thread, as
    the golden fixture was made with: the thread count changes float rounding, and greedy tokens with it.
    Its own cache, so that its M0 too is built on one thread (not taken from a test that ran before it)."""
    root = tmp_path_factory.mktemp("smoke")
    job = root / "job"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={job}"], root / "stdout.log",
            env={**REPRODUCIBLE_CPU, "SRLM_EXP_CACHE": str(root / "cache")})
    return job


def spawn_ranks(target, *args, world: int = 2) -> list:
    """Run `target(rank, port, *args, results)` in `world` spawned processes that can form a gloo
    group on 127.0.0.1:port; returns what they put on `results`, sorted (rank first)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(r, port, *args, results)) for r in range(world)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return got


def lrs_per_step(optimizer, scheduler, total: int) -> list[float]:
    """The learning rate each of `total` optimizer steps trains at, stepping the optimizer and its scheduler."""
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs
