"""`model=hf` runs any AutoModelForCausalLM through the whole loop: tiny randomly initialised Llama,
Qwen2 and GPT-2 models, each with its own tokenizer and chat template, go M0 -> SFT -> generation ->
oracle judging -> DPO -> M3 in a real `python run.py` subprocess (one of them with LoRA)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig, PreTrainedTokenizerFast,
                          Qwen2Config)

from conftest import run_job
from srlm_exp.models.loading import MissingChatTemplateError, load_tokenizer
from srlm_exp.models.tiny import tokenizer_texts
from srlm_exp.models.tokenizer import train_tokenizer
from srlm_exp.training.tokenize import chat_example
from srlm_exp.world.seed_data import WorldSizes, build_world

# Llama 2's format: the reply follows "[/INST]" after a space that Metaspace attaches to its first word.
LLAMA2_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)
# ChatML as Qwen2 ships it (EOS = <|im_end|>); the "\n" after the role is its own pre-token.
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A plain base-model format; GPT-2's byte-level pre-tokenizer keeps the trailing "\n" apart from the reply.
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '### User:\n' + m['content'] + '\n\n' }}"
    "{% elif m['role'] == 'assistant' %}{{ '### Assistant:\n' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)
TINY = dict(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, positions=1024)
# At the usual 0.02 a random model's logits are nearly flat and samples are noise; 0.2 lets a few
# steps (even LoRA's, with embeddings and norms frozen) make its samples follow the reply format.
INIT_RANGE = 0.2


@pytest.fixture(scope="module")
def world_texts(tmp_path_factory) -> list[str]:
    files = build_world(tmp_path_factory.mktemp("world"), 0, WorldSizes(corpus=300, ift=60, eft=60, eval=8, judge_eval=4))
    return tokenizer_texts(files)


def llama_tokenizer(texts):
    tok = train_tokenizer(texts, vocab_size=640)  # Metaspace BPE with <s> </s> <pad> <unk>
    tok.chat_template = LLAMA2_TEMPLATE
    return tok


def bytelevel_tokenizer(texts, specials: list[str], **special_roles) -> PreTrainedTokenizerFast:
    """A byte-level BPE like GPT-2's and Qwen2's (transformers loads those model types with their
    own byte-level tokenizer classes, so the vocabulary must be byte-level too)."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=900, special_tokens=specials, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=raw, clean_up_tokenization_spaces=False, **special_roles)


def chatml_tokenizer(texts):
    """Qwen2's roles: no BOS, EOS = <|im_end|>, PAD = <|endoftext|>."""
    tok = bytelevel_tokenizer(texts, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


def gpt2_tokenizer(texts):
    """GPT-2's roles: one special token for BOS/EOS/UNK and no PAD (load_tokenizer adds one)."""
    eot = "<|endoftext|>"
    tok = bytelevel_tokenizer(texts, [eot], bos_token=eot, eos_token=eot, unk_token=eot)
    tok.chat_template = PLAIN_TEMPLATE
    return tok


def _decoder_config(config_cls, tok):
    """Llama and Qwen2 take the same config fields."""
    return config_cls(vocab_size=len(tok), hidden_size=TINY["hidden"], intermediate_size=TINY["intermediate"],
                      num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"],
                      num_key_value_heads=TINY["kv_heads"], max_position_embeddings=TINY["positions"],
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, initializer_range=INIT_RANGE)


def llama_config(tok):
    return _decoder_config(LlamaConfig, tok)


def qwen2_config(tok):
    return _decoder_config(Qwen2Config, tok)


def gpt2_config(tok):
    return GPT2Config(vocab_size=len(tok), n_embd=TINY["hidden"], n_layer=TINY["layers"], n_head=TINY["heads"],
                      n_positions=TINY["positions"], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      initializer_range=INIT_RANGE)


ARCHITECTURES = {
    "llama": (llama_tokenizer, llama_config, LLAMA2_TEMPLATE),
    "qwen2": (chatml_tokenizer, qwen2_config, CHATML_TEMPLATE),
    "gpt2": (gpt2_tokenizer, gpt2_config, PLAIN_TEMPLATE),
}


def save_random_model(arch: str, texts: list[str], out: Path) -> Path:
    """A randomly initialised model of `arch` and its tokenizer, saved like a hub checkpoint."""
    make_tok, make_config, _ = ARCHITECTURES[arch]
    tok = make_tok(texts)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(make_config(tok))
    assert model.config.model_type == arch and model.num_parameters() < 500_000
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


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
FAST = ["data.eft=false", "sft.max_steps=60", "prompts.n_prompts=16", "callbacks.self_reward.n_candidates=6",
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
        assert sum(f.stat().st_size for f in adapter.iterdir()) < sum(f.stat().st_size for f in (out / "iteration_3" / "model").iterdir())
    m3 = AutoModelForCausalLM.from_pretrained(str(out / "iteration_3" / "model"))  # loads without peft
    assert m3.config.model_type == arch
