"""The Hydra app: `srlm-run [overrides]` (installed) and `python run.py [overrides]` (a checkout) run one job.

Importing this module costs Hydra and OmegaConf only. The job itself (srlm_exp.main, which brings torch,
transformers, Lightning and vLLM: seconds) is imported when a job runs, so `--help`, `--cfg job` and Tab
completion (`-sc query=...`, which Hydra answers before any job) return in well under a second.

The configs: the repository's top-level conf/ in a checkout; inside the package (srlm_exp/conf, the same
files, shipped by pyproject.toml's package-dir mapping) in a non-editable install."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

_PACKAGED = Path(__file__).resolve().parent / "conf"  # pip install . (not -e): conf/ copied into the package
_CHECKOUT = Path(__file__).resolve().parent.parent / "conf"  # the repository's conf/, beside srlm_exp/
CONFIG_DIR = _PACKAGED if (_PACKAGED / "config.yaml").is_file() else _CHECKOUT
MAX_SWEEP_NAME = 100  # a directory name's part; file systems allow 255


def sweep_name(config_name: str, override_dirname: str) -> str:
    """The name in a sweep's directory (conf/config.yaml's hydra.sweep.dir): the sweep file's name
    (`--config-dir sweeps --config-name paper` -> `paper`) and the command line's overrides as Hydra's
    override_dirname writes them, sorted and without the logging-only keys (`train=dpo,sft,seed=0,1,2`).
    Characters a path cannot hold or should not (`/`, spaces, quotes) become `-`; past MAX_SWEEP_NAME the
    name ends in a hash of the whole."""
    parts = ([config_name] if config_name and config_name != "config" else []) + ([override_dirname] if override_dirname else [])
    name = re.sub(r"[^\w=,.+-]", "-", "_".join(parts)) or "config"
    if len(name) > MAX_SWEEP_NAME:
        name = name[: MAX_SWEEP_NAME - 9] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def group_options(group: str, chosen: str | None = None) -> str:
    """A config group's options for `--help`, read from the config directory (so a new option is listed
    without editing the help), the one this command line would run with marked `*`."""
    options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    return " ".join(f"{o}*" if o == chosen else o for o in options)


# Cached, by the argument's text (`${hydra.job.override_dirname}`), not its value: Hydra copies the sweep's cache
# into each job's config, so a job, whose own override_dirname is `train=dpo` where its sweep's is `train=dpo,sft`,
# reads the name of the directory its sweep made (as `${now:...}` reads the sweep's time).
OmegaConf.register_new_resolver("srlm_sweep_name", sweep_name, replace=True, use_cache=True)
OmegaConf.register_new_resolver("srlm_options", group_options, replace=True)


def task(cfg: DictConfig) -> None:
    """One Hydra job."""
    # Deferred (tests/test_layers.py allows this one): srlm_exp.main imports torch, transformers and Lightning,
    # which --help, --cfg and Tab completion never need.
    from srlm_exp.main import run

    run(cfg)


main = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")(task)
