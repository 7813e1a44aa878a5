"""The package passes the type checker configured in pyproject.toml ([tool.mypy]): a None where a value is
required, an argument of the wrong type, an attribute a class does not have and a stale `# type: ignore` fail
the suite, not a later review. mypy keeps its cache in .mypy_cache: a first run takes a minute or two on 2
cores, later ones seconds."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_mypy_finds_nothing():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed: install the dev extra (pip install -e '.[dev]'), as the README says")
    # No arguments: the files and every setting come from pyproject.toml's [tool.mypy].
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
