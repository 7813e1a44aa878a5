"""Every sweep in sweeps/ composes, each of its grid points composes, and the smoke `paper`
sweep followed by the report produces report.md and plots."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def _env(tmp_path: Path | None = None) -> dict:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HYDRA_FULL_ERROR="1")
    env.setdefault("SRLM_EXP_CACHE", str((tmp_path or Path("/tmp")) / "srlm_cache"))
    return env


def grid(sweep: Path) -> list[list[str]]:
    params = yaml.safe_load(sweep.read_text())["hydra"]["sweeper"]["params"]
    keys = list(params)
    values = [str(params[k]).split(",") for k in keys]
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*values)]


def test_there_are_the_ten_reviewed_sweeps():
    assert {p.stem for p in SWEEPS} == {"paper", "eft_ablation", "judge_prompts", "pair_rules", "reference", "upper_bound",
                                         "oracle_budget", "reward_sources", "trainers", "meta_rewarding"}


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.stem)
def test_sweep_config_loads_through_run_py(sweep):
    out = subprocess.run([sys.executable, "run.py", "--config-dir", "sweeps", "--config-name", sweep.stem,
                          "debug=smoke", "--cfg", "hydra", "--resolve"], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    hydra = yaml.safe_load(out.stdout)["hydra"]
    params = hydra["sweeper"]["params"]
    assert "seed" in params and len(str(params["seed"]).split(",")) == 3
    assert Path(hydra["sweep"]["dir"]).name.endswith("_" + sweep.stem)  # outputs/multirun/<date>/<time>_<sweep>


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.stem)
def test_every_grid_point_composes(sweep):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for overrides in grid(sweep):
            for debug in ("none", "smoke"):
                cfg = compose("config", overrides=overrides + [f"debug={debug}"])
                for o in overrides:
                    key, value = o.split("=")
                    if "." in key or key == "seed":
                        assert str(OmegaConf.select(cfg, key)).lower() == value.lower()
                    else:
                        assert cfg[key].get("name", cfg[key]["_target_"].rsplit(".", 1)[-1]) == value


@pytest.mark.slow
def test_smoke_paper_sweep_then_report(tmp_path):
    sweep_dir = tmp_path / "paper"
    run = subprocess.run([sys.executable, "run.py", "-m", "--config-dir", "sweeps", "--config-name", "paper",
                          "debug=smoke", "logger=none", f"hydra.sweep.dir={sweep_dir}"],
                         cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    summaries = sorted(sweep_dir.glob("*/summary.json"))
    assert len(summaries) == 6
    for s in summaries:
        data = json.loads(s.read_text())
        assert data["status"] == "finished" and [e["model"] for e in data["iterations"]] == ["M0", "M1", "M2", "M3"]
    rep = subprocess.run([sys.executable, "-m", "srlm_exp.report", str(sweep_dir)], cwd=ROOT, env=_env(tmp_path),
                         capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    text = (sweep_dir / "report.md").read_text()
    assert "train=dpo" in text and "train=sft" in text and "(3)" in text  # 3 seeds per variant
    for png in ("metrics_over_iterations.png", "head_to_head.png"):
        assert (sweep_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
