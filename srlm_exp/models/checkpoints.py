"""Which directory holds the weights of a model in memory, for engines that load a directory (vLLM).

A model is remembered when it is loaded from a directory or saved to one. Its parameters' version counters
(torch bumps them on every in-place change: an optimizer step, a LoRA merge) are remembered with it, so a
model trained since then is never taken for its old directory: `directory_of` then says None.
"""
from __future__ import annotations

import weakref
from pathlib import Path

from torch import nn

_known: "weakref.WeakKeyDictionary[nn.Module, tuple[Path, tuple[int, ...]]]" = weakref.WeakKeyDictionary()


def _versions(model: nn.Module) -> tuple[int, ...]:
    return tuple(p._version for p in model.parameters())


def remember_directory(model: nn.Module, path: str | Path) -> None:
    """`model`'s weights are now exactly those saved in `path`."""
    _known[model] = (Path(path), _versions(model))


def forget_directory(model: nn.Module) -> None:
    """`model` is about to change (it is loaded to be trained)."""
    _known.pop(model, None)


def directory_of(model: nn.Module) -> Path | None:
    """The directory whose weights `model` holds, or None (built in memory, or changed since)."""
    entry = _known.get(model)
    if entry is None or entry[1] != _versions(model):
        return None
    return entry[0]
