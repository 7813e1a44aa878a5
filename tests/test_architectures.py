"""`model=hf` runs any AutoModelForCausalLM through the whole loop: tiny randomly initialised Llama,
Qwen2 and GPT-2 models, each with its own tokenizer and chat template, go M0 -> SFT -> generation ->
oracle judging -> DPO -> M3 in a real `python run.py` subprocess (one of them with LoRA)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import run_job
from movement import assert_trained_after_m1
from srlm_exp.chat import chat_example
from srlm_exp.models.loading import MissingChatTemplateError, load_tokenizer
from srlm_exp.world import random_model
from srlm_exp.world.random_model import ARCHITECTURES, PLAIN_TEMPLATE


@pytest.fixture(scope="module")
def world_texts() -> list[str]:
    return random_model.world_texts()


def save_random_model(arch: str, texts: list[str], out: Path) -> Path:
    """A tiny randomly initialised model of `arch` and its tokenizer, saved like a hub checkpoint."""
    path = random_model.save_random_model(arch, texts, out)
    assert json.loads((path / "config.json").read_text())["model_type"] == arch
    return path


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_each_tokenizer_keeps_its_own_template_and_the_prefix_property(arch, world_texts, tmp_path):
    """load_tokenizer keeps the checkpoint's own template; the tokenized prompt is a prefix of
    prompt+response (chat_example raises TemplatePrefixError otherwise) and the labels end in EOS."""
    path = save_random_model(arch, world_texts, tmp_path / arch)
    tok = load_tokenizer(path)
    assert tok.chat_template == ARCHITECTURES[arch][2]
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    ex = chat_example(tok, "Reverse the word c a t.", "The answer is t a c.", max_len=256)
    assert ex.labels[-1] == tok.eos_token_id
    response = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != -100]
    assert "The answer is t a c." in tok.decode(response, skip_special_tokens=True)


def test_tokenizer_without_a_chat_template_is_a_clear_error(world_texts, tmp_path):
    path = save_random_model("gpt2", world_texts, tmp_path / "gpt2")
    cfg_file = path / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg.pop("chat_template", None)
    cfg_file.write_text(json.dumps(cfg))
    (path / "chat_template.jinja").unlink(missing_ok=True)
    assert not getattr(AutoTokenizer.from_pretrained(str(path)), "chat_template", None)
    with pytest.raises(MissingChatTemplateError, match="model.chat_template"):
        load_tokenizer(path)
    # ... and configuring one fixes it.
    assert load_tokenizer(path, chat_template=PLAIN_TEMPLATE).chat_template == PLAIN_TEMPLATE


# A random model learns the reply format ("The answer is ...") in a few dozen SFT steps at the smoke
# learning rate; the oracle grades its samples, so pairs exist although the model cannot judge. IFT only
# (no ~600-token EFT judge prompts) keeps those steps cheap; the judge prompt is still generated from
# in every evaluation.
FAST = ["data.eft=false", "seed_sft.max_steps=60", "prompts.n_prompts=16", "callbacks.self_reward.n_candidates=6",
        "data.sizes.judge_eval=2", "judge.num_judgments=1"]


@pytest.mark.parametrize("arch,extra", [
    ("llama", ["model.gradient_checkpointing=true"]),
    ("qwen2", ["model.lora.enabled=true", "model.lora.r=8", "model.lora.alpha=32"]),
    ("gpt2", []),
], ids=["llama-grad_ckpt", "qwen2-lora", "gpt2"])
def test_random_model_runs_the_whole_loop(arch, extra, world_texts, tmp_path):
    m0 = save_random_model(arch, world_texts, tmp_path / f"m0-{arch}")
    out = tmp_path / "run"
    run_job(["model=hf", f"model.name_or_path={m0}", "judge=oracle", "prompts=world_pool", "debug=smoke",
             "logger=none", f"hydra.run.dir={out}", *FAST, *extra], tmp_path / "run.log", timeout=300)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    for t in (2, 3):  # AIFT(M1) and AIFT(M2) held preference pairs and DPO trained on them
        assert summary["iterations"][t]["pairs"]["n"] > 0
        assert (out / f"iteration_{t}" / "pairs.jsonl").stat().st_size > 0
    assert_trained_after_m1(out)
    for t in (1, 2, 3):  # every M(t) is a plain model dir of the same architecture, own template kept
        d = out / f"iteration_{t}" / "model"
        assert json.loads((d / "config.json").read_text())["model_type"] == arch
        assert not (d / "adapter_config.json").exists()
        assert load_tokenizer(d).chat_template == ARCHITECTURES[arch][2]
    lora = "model.lora.enabled=true" in extra
    for t in (1, 2, 3):  # LoRA leaves each iteration's adapter (only) next to the merged model
        assert (out / f"iteration_{t}" / "model_adapter" / "adapter_config.json").exists() == lora
    if lora:
        adapter = out / "iteration_3" / "model_adapter"
        assert (sum(f.stat().st_size for f in adapter.iterdir())
                < sum(f.stat().st_size for f in (out / "iteration_3" / "model").iterdir()))
    m3 = AutoModelForCausalLM.from_pretrained(str(out / "iteration_3" / "model"))  # loads without peft
    assert m3.config.model_type == arch


def test_random_model_command_builds_any_size_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "qwen2"
    random_model.main(["--arch", "qwen2", "--out", str(out), "--hidden", "48", "--intermediate", "96", "--layers", "3",
                      "--heads", "4", "--kv-heads", "2"])
    printed = json.loads(capsys.readouterr().out)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert printed["parameters"] == model.num_parameters() and printed["layers"] == 3
    assert (model.config.model_type, model.config.hidden_size, model.config.num_hidden_layers) == ("qwen2", 48, 3)
    assert load_tokenizer(out).chat_template == ARCHITECTURES["qwen2"][2]
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(SystemExit):
        random_model.main(["--arch", "llama", "--out", str(out)])
    assert "exists" in capsys.readouterr().err and sorted(p.name for p in out.iterdir()) == before
    with pytest.raises(ValueError, match="multiple of heads"):
        random_model.save_random_model("llama", ["a b"], tmp_path / "bad", random_model.Shape(hidden=50, heads=4))
