"""Randomly initialised checkpoints of several architectures, of any size, built from a config, with a
tokenizer trained on the embedded world and the architecture's own chat format. They run the
`model=hf` path (any architecture, any scale, LoRA, DDP/FSDP) with nothing downloaded:

    python -m srlm_exp.world.random_model --arch qwen2 --hidden 1024 --layers 24 --out /tmp/m0-qwen2
    python run.py model=hf model.name_or_path=/tmp/m0-qwen2 judge=oracle prompts=world_pool trainer=gpu

A random model cannot judge, so pair it with `judge=oracle` (the world's grader scores the samples)
and `prompts=world_pool`. The `srlm-random-model` command runs this module as well.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

from srlm_exp.models.tokenizer import train_tokenizer
from srlm_exp.world.source import WorldSeedData

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
# At the usual 0.02 a random model's logits are nearly flat and samples are noise; 0.2 lets a few
# steps (even LoRA's, with embeddings and norms frozen) make its samples follow the reply format.
INIT_RANGE = 0.2


@dataclass
class Shape:
    hidden: int = 64
    intermediate: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    positions: int = 1024


def world_texts(seed: int = 0) -> list[str]:
    """The text a tokenizer for the embedded world is trained on (as the tiny model's is)."""
    with tempfile.TemporaryDirectory() as tmp:
        sizes = dict(corpus=300, ift=60, eft=60, eval=8, judge_eval=4)
        return WorldSeedData("world", seed, eft=True, sizes=sizes).build(Path(tmp)).tokenizer_texts()


def llama_tokenizer(texts: list[str]):
    tok = train_tokenizer(texts, vocab_size=640)  # Metaspace BPE with <s> </s> <pad> <unk>
    tok.chat_template = LLAMA2_TEMPLATE
    return tok


def bytelevel_tokenizer(texts: list[str], specials: list[str], **special_roles) -> PreTrainedTokenizerFast:
    """A byte-level BPE like GPT-2's and Qwen2's (transformers loads those model types with their
    own byte-level tokenizer classes, so the vocabulary must be byte-level too)."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=900, special_tokens=specials, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=raw, clean_up_tokenization_spaces=False, **special_roles)


def chatml_tokenizer(texts: list[str]):
    """Qwen2's roles: no BOS, EOS = <|im_end|>, PAD = <|endoftext|>."""
    tok = bytelevel_tokenizer(texts, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


def gpt2_tokenizer(texts: list[str]):
    """GPT-2's roles: one special token for BOS/EOS/UNK and no PAD (load_tokenizer adds one)."""
    eot = "<|endoftext|>"
    tok = bytelevel_tokenizer(texts, [eot], bos_token=eot, eos_token=eot, unk_token=eot)
    tok.chat_template = PLAIN_TEMPLATE
    return tok


def _decoder_config(config_cls, tok, shape: Shape, init_range: float):
    """Llama and Qwen2 take the same config fields."""
    return config_cls(vocab_size=len(tok), hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                      num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                      num_key_value_heads=shape.kv_heads, max_position_embeddings=shape.positions,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, initializer_range=init_range)


def llama_config(tok, shape: Shape, init_range: float = INIT_RANGE):
    return _decoder_config(LlamaConfig, tok, shape, init_range)


def qwen2_config(tok, shape: Shape, init_range: float = INIT_RANGE):
    return _decoder_config(Qwen2Config, tok, shape, init_range)


def gpt2_config(tok, shape: Shape, init_range: float = INIT_RANGE):
    return GPT2Config(vocab_size=len(tok), n_embd=shape.hidden, n_inner=shape.intermediate, n_layer=shape.layers,
                      n_head=shape.heads, n_positions=shape.positions, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, initializer_range=init_range)


# architecture -> (tokenizer builder, config builder, chat template)
ARCHITECTURES = {
    "llama": (llama_tokenizer, llama_config, LLAMA2_TEMPLATE),
    "qwen2": (chatml_tokenizer, qwen2_config, CHATML_TEMPLATE),
    "gpt2": (gpt2_tokenizer, gpt2_config, PLAIN_TEMPLATE),
}


def save_random_model(arch: str, texts: list[str], out: str | Path, shape: Shape | None = None,
                      init_range: float = INIT_RANGE, seed: int = 0) -> Path:
    """A randomly initialised model of `arch` and its tokenizer, saved like a hub checkpoint."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    shape = shape or Shape()
    if shape.hidden % shape.heads or shape.heads % shape.kv_heads:
        raise ValueError(f"{shape}: hidden must be a multiple of heads, and heads a multiple of kv_heads")
    make_tok, make_config, _ = ARCHITECTURES[arch]
    tok = make_tok(texts)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(tok, shape, init_range))
    out = Path(out)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="srlm-random-model", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHITECTURES), required=True)
    ap.add_argument("--out", required=True, help="directory to write the checkpoint to (must not exist)")
    defaults = Shape()
    for field, value in asdict(defaults).items():
        ap.add_argument(f"--{field.replace('_', '-')}", type=int, default=value)
    ap.add_argument("--init-range", type=float, default=INIT_RANGE)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        ap.error(f"--out {out} exists; choose a new directory (nothing was written)")
    shape = Shape(**{f: getattr(args, f) for f in asdict(defaults)})
    path = save_random_model(args.arch, world_texts(args.seed), out, shape, args.init_range, args.seed)
    with torch.device("meta"):  # counts without allocating the weights again
        n = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(path))).num_parameters()
    print(json.dumps({"path": str(path), "arch": args.arch, "parameters": n, **asdict(shape)}))


if __name__ == "__main__":
    main()
