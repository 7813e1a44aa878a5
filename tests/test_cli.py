"""The command line (issue 38, goal 5): `--help` names the groups a user chooses, one line each; `--help` and Tab
completion never import torch; the configs ship inside the package for the `srlm-run` entry point; a sweep's
directory carries its name. No job runs here: a probe task stands in for the job where Hydra must launch one."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONF_DIR, REPO, config_groups, job_env, specialization_groups
from srlm_exp import app

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def _run_py(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env or job_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def help_text() -> str:
    return _run_py(str(REPO / "run.py"), "--help").stdout


# ------------------------------------------------------------------------------ --help

def test_help_names_every_group_a_user_chooses_on_one_line_each(help_text):
    lines = help_text.splitlines()
    for group, options in config_groups().items():
        line = [x for x in lines if re.match(rf"\s+{group}\s", x)]
        assert len(line) == 1, f"{group}: {line}"
        listed = line[0].split()[-len(options):]
        assert [o.rstrip("*") for o in listed] == options, line[0]  # every option, read from conf/
    assert len(lines) < 45, "the help is a page, not the config"


def test_help_leaves_out_the_groups_no_one_chooses_and_the_config(help_text):
    for group in specialization_groups():  # model_defaults, model_debug: the model's name picks them
        assert group not in help_text
    assert "_target_" not in help_text and "powered by Hydra" not in help_text


def test_help_marks_the_choice_this_command_line_makes():
    text = _run_py(str(REPO / "run.py"), "model=smollm2", "judge=oracle", "--help").stdout
    model = next(x for x in text.splitlines() if re.match(r"\s+model\s", x))
    judge = next(x for x in text.splitlines() if re.match(r"\s+judge\s", x))
    assert "smollm2*" in model.split() and "tiny" in model.split() and "oracle*" in judge.split()


def _imported(args: list[str], env: dict | None = None) -> set[str]:
    out = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "run.py"), *args], cwd=REPO, capture_output=True,
                         text=True, env=env or job_env(), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args,completion", [(["--help"], None), (["-sc", "query=bash"], "python run.py jud"),
                                             (["debug=smoke", "--cfg", "job"], None)])
def test_help_completion_and_cfg_import_no_deep_learning_library(args, completion):
    """What made every Tab press take ~7 s: srlm_exp.main (torch, transformers, Lightning) imported before Hydra
    parsed the command line. Now the job is imported when it runs (srlm_exp/app.py)."""
    env = job_env()
    if completion:
        env.update(COMP_LINE=completion, COMP_POINT=str(len(completion)))
    modules = _imported(args, env)
    assert "hydra" in modules and "srlm_exp.app" in modules
    assert not modules & {"torch", "transformers", "pytorch_lightning", "vllm", "srlm_exp.main"}


def test_completion_offers_the_groups():
    env = dict(job_env(), COMP_LINE="python run.py jud", COMP_POINT="17")
    assert "judge=" in _run_py(str(REPO / "run.py"), "-sc", "query=bash", env=env).stdout.split()


# ------------------------------------------------------------------------------ the entry point and its configs

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_srlm_run_is_declared_and_is_the_app():
    assert PYPROJECT["project"]["scripts"]["srlm-run"] == "srlm_exp.app:main"
    assert callable(app.main) and app.main.__wrapped__ is app.task


def test_conf_ships_inside_the_package_from_where_it_is():
    st = PYPROJECT["tool"]["setuptools"]
    assert st["package-dir"] == {"srlm_exp.conf": "conf"}
    assert "**/*.yaml" in st["package-data"]["srlm_exp.conf"]
    # a new package of srlm_exp/ must be listed too (packages.find cannot see the mapped conf/)
    packages = [".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "srlm_exp").rglob("__init__.py")]
    assert sorted(st["packages"]) == sorted([*packages, "srlm_exp.conf"])


def test_the_app_reads_the_checkout_conf_here_and_the_packaged_one_when_installed(tmp_path):
    assert app.CONFIG_DIR == CONF_DIR  # a checkout (or an editable install): the top-level conf/
    installed = tmp_path / "site-packages" / "srlm_exp"
    (installed / "conf").mkdir(parents=True)
    shutil.copy(CONF_DIR / "config.yaml", installed / "conf")
    shutil.copy(REPO / "srlm_exp" / "app.py", installed)
    spec = importlib.util.spec_from_file_location("installed_app", installed / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.CONFIG_DIR == installed / "conf"


def _can_build_wheels() -> bool:
    """pip, and a setuptools new enough for this pyproject.toml that can write wheels (from 70.1 itself, before
    with the `wheel` package): a fresh venv's own (Python 3.11's 65) cannot, and the build runs without isolation."""
    from importlib.metadata import PackageNotFoundError, version

    # Installed distributions are read from their metadata, never looked up as modules: finding `pip` through the
    # import system makes setuptools' distutils hack switch itself off for the whole process, and a later
    # `import setuptools` (vLLM imports torch.utils.cpp_extension) then fails in every test after this one.
    def installed(name: str) -> bool:
        try:
            return bool(version(name))
        except PackageNotFoundError:
            return False

    try:
        setuptools = tuple(int(x) for x in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return installed("pip") and (setuptools >= (70, 1) or (setuptools >= (68, 0) and installed("wheel")))


@pytest.mark.skipif(not _can_build_wheels(), reason="needs pip and setuptools>=70.1 (or >=68 with wheel)")
def test_the_wheel_holds_every_config_file(tmp_path):
    """What a non-editable install gets: pip builds the wheel from a copy of the sources (no build/ left here)."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("srlm_exp", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import zipfile

    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist())
    expected = {f"srlm_exp/conf/{p.relative_to(CONF_DIR).as_posix()}" for p in CONF_DIR.rglob("*.yaml")}
    assert expected <= names and "srlm_exp/app.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "srlm-run = srlm_exp.app:main" in zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).read(entry_points).decode()


# ------------------------------------------------------------------------------ sweep directories

def test_sweep_name_is_the_sweep_file_and_the_overrides_path_safe():
    assert app.sweep_name("config", "judge=additive5,train=dpo,sft") == "judge=additive5,train=dpo,sft"
    assert app.sweep_name("paper", "") == "paper"
    assert app.sweep_name("paper", "seed=0,1") == "paper_seed=0,1"
    assert app.sweep_name("config", "") == "config"
    assert app.sweep_name("config", "model.name_or_path=/data/My Model") == "model.name_or_path=-data-My-Model"
    long = app.sweep_name("config", "judge=" + ",".join(["additive5"] * 40))
    assert len(long) == app.MAX_SWEEP_NAME and "/" not in long
    assert long != app.sweep_name("config", "judge=" + ",".join(["additive5"] * 41))  # the hash tells them apart


PROBE = """
import hydra
from hydra.core.hydra_config import HydraConfig
from srlm_exp.app import CONFIG_DIR

@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def probe(cfg):
    hc = HydraConfig.get()
    print("PROBE", hc.sweep.dir, hc.runtime.output_dir, flush=True)

probe()
"""


def _probe_multirun(tmp_path: Path, *args: str) -> list[tuple[str, Path]]:
    """Hydra's multirun of the project's config with a task that only reports its directories (no job runs)."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = _run_py(str(script), "-m", *args, cwd=tmp_path)
    return [(line.split()[1], Path(line.split()[2])) for line in out.stdout.splitlines() if line.startswith("PROBE")]


def test_a_command_line_sweep_names_its_directory_after_its_overrides(tmp_path):
    jobs = _probe_multirun(tmp_path, "judge=additive5", "train=dpo,sft", "debug=smoke")
    assert len(jobs) == 2
    sweep_dirs = {Path(d) for d, _ in jobs}
    assert len(sweep_dirs) == 1, sweep_dirs  # every job reads the directory its sweep made, not its own overrides
    sweep_dir = sweep_dirs.pop()
    assert sweep_dir.parent.parent == Path("outputs/multirun")
    assert sweep_dir.name.endswith("_judge=additive5,train=dpo,sft"), sweep_dir  # debug, like logger, names nothing
    assert sorted(out.parent for _, out in jobs) == [tmp_path / sweep_dir] * 2
    assert sorted(os.listdir(tmp_path / sweep_dir)) == ["0_judge=additive5,train=dpo", "1_judge=additive5,train=sft",
                                                          "multirun.yaml"]


def test_a_sweep_file_names_its_directory(tmp_path):
    jobs = _probe_multirun(tmp_path, "--config-dir", str(REPO / "sweeps"), "--config-name", "pair_rules", "seed=0")
    assert jobs and all(Path(d).name.endswith("_pair_rules_seed=0") for d, _ in jobs), jobs
