"""Checking settings: a `Problem` names a config key, what is wrong with its value and the fix; `check`
raises one `ConfigError` for every problem found. Every component checks its own settings with these in its
constructor; `config.py` collects them for the whole run. The bottom layer: imports nothing of the package.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    key: str      # the dotted config key at fault ("train.beta")
    message: str  # what is wrong with its value
    fix: str      # what to set instead

    def __str__(self) -> str:
        return f"{self.key}: {self.message}; {self.fix}"


class ConfigError(ValueError):
    """One or more problems with a config, each naming its key and the fix."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the config:\n{lines}" if len(self.problems) > 1
                         else str(self.problems[0]))

    def under(self, prefix: str) -> "ConfigError":
        """The same problems with keys relative to the config node at `prefix`."""
        return ConfigError([Problem(f"{prefix}.{p.key}" if p.key else prefix, p.message, p.fix) for p in self.problems])


def require(ok: bool, key: str, message: str, fix: str) -> Problem | None:
    """A problem with `key` unless `ok` (for a component's own checks, passed to `check`)."""
    return None if ok else Problem(key, message, fix)


def positive(value: Any, key: str, fix: str | None = None) -> Problem | None:
    """A problem unless `value` is a finite number > 0 (NaN and inf are refused, never used)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return require(ok, key, f"is {value!r}, must be a finite number > 0", fix or f"set {key} to a positive number")


def at_least(value: Any, lo: int | float, key: str, fix: str | None = None) -> Problem | None:
    """A problem unless `value` is a finite number >= lo."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= lo
    return require(ok, key, f"is {value!r}, must be >= {lo}", fix or f"set {key} to {lo} or more")


def sampling_problems(temperature: Any, top_p: Any, max_new_tokens: Any) -> list[Problem | None]:
    """The rules of every sampled generation (candidates, judgments, prompts, evaluation)."""
    return [at_least(temperature, 0, "temperature", "set temperature >= 0 (0 = greedy; the paper samples at 0.7)"),
            require(isinstance(top_p, (int, float)) and 0 < top_p <= 1, "top_p", f"is {top_p!r}, must be in (0, 1]",
                    "set top_p in (0, 1] (1 = no nucleus cut; the paper: 0.9)"),
            at_least(max_new_tokens, 1, "max_new_tokens", "set max_new_tokens to 1 or more")]


AUTO = "auto"  # a sequence budget that follows the model's context (models/context.py)


def max_len_problem(value: Any, key: str = "max_len") -> Problem | None:
    """A sequence budget is `auto` or a whole number of tokens >= 8."""
    ok = value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value >= 8)
    return require(ok, key, f"is {value!r}, must be auto or a whole number >= 8",
                   f"set {key}=auto (the model's context) or a token count")


def training_problems(lr: Any, min_lr: Any, warmup_steps: Any, epochs: Any, max_steps: Any, batch_size: Any,
                      max_len: Any) -> list[Problem | None]:
    """The rules of every training stage's optimisation settings."""
    return [positive(lr, "lr"), at_least(min_lr, 0, "min_lr"),
            require(positive(lr, "lr") is not None or not isinstance(min_lr, (int, float)) or min_lr <= lr, "min_lr",
                    f"is {min_lr}, above lr={lr}", "set min_lr <= lr (the cosine schedule decays from lr to min_lr)"),
            at_least(warmup_steps, 0, "warmup_steps"), at_least(epochs, 1, "epochs"),
            require(max_steps == -1 or (isinstance(max_steps, int) and max_steps >= 1), "max_steps", f"is {max_steps!r}",
                    "set max_steps=-1 (no cap: the epochs decide) or 1 or more"),
            at_least(batch_size, 1, "batch_size"), max_len_problem(max_len)]


def micro_batch_problem(value: Any, batch_size: Any, key: str = "micro_batch_size") -> Problem | None:
    """null (the whole batch at once) or a whole number of rows from 1 to the batch size."""
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1
                           and (not isinstance(batch_size, int) or value <= batch_size))
    return require(ok, key, f"is {value!r}, must be null or a whole number from 1 to batch_size={batch_size}",
                   f"set {key}=null (the whole batch in one pass) or fewer rows per pass (the same gradient, less "
                   "memory for activations)")


def model_path_problem(value: Any, key: str) -> Problem | None:
    """A local model path must be a directory with a config.json; a hub name ("org/name") is left to the
    loader (nothing is downloaded to check it). Catches a mistyped path before anything trains, instead of
    transformers' "Repo id must be in the form 'repo_name' or 'namespace/repo_name'"."""
    text = str(value)
    path = Path(text).expanduser()
    local = path.is_absolute() or text.startswith((".", "~")) or path.exists()
    if not local:
        return None
    if not path.is_dir():
        return Problem(key, f"{text} is not a directory" if path.exists() else f"no such directory: {text}",
                       f"set {key} to a model directory (with config.json) or a Hugging Face hub name")
    return require((path / "config.json").is_file(), key, f"{text} has no config.json",
                   f"point {key} at the directory save_pretrained() wrote")


def check(*problems: Problem | None) -> None:
    """Raise one ConfigError for every problem given (None = that rule holds)."""
    found = [p for p in problems if p is not None]
    if found:
        raise ConfigError(found)
