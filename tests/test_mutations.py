"""tests/mutate.py's mutations still apply to the code as it is: each edits text that is there exactly once,
and the mutated modules compile. (The mutation runs themselves take minutes; the note of issue 40 lists them.)"""
from __future__ import annotations

import py_compile
import shutil

import pytest

import mutate


@pytest.mark.parametrize("name", sorted(mutate.MUTATIONS))
def test_each_mutation_applies_and_compiles(name, tmp_path):
    edits = mutate.MUTATIONS[name]
    files = sorted({rel for rel, _, _ in edits})
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mutate.REPO / rel, tmp_path / rel)
    mutate.apply(tmp_path, edits)
    for rel in files:
        assert (tmp_path / rel).read_text() != (mutate.REPO / rel).read_text()
        py_compile.compile(str(tmp_path / rel), doraise=True)


def test_a_mutation_whose_text_is_gone_says_so(tmp_path):
    (tmp_path / "srlm_exp" / "training").mkdir(parents=True)
    (tmp_path / "srlm_exp" / "training" / "fit.py").write_text("def make_trainer(): ...\n")
    with pytest.raises(SystemExit, match="no longer holds the text"):
        mutate.apply(tmp_path, mutate.MUTATIONS["no-step"])
