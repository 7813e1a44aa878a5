"""Throughput of the batched sampler on judge-like prompts (the loop's hot path).

    python benchmarks/bench_generation.py [--hidden 256 --layers 4 --n 64]

Prints sequences/s and new tokens/s for several batch sizes on a randomly initialised Llama of
the embedded default's shape with the world tokenizer (no training needed: speed only).
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from srlm_exp.artifacts import read_jsonl
from srlm_exp.chat import prompt_ids
from srlm_exp.inference.sampler import Sampling, generate
from srlm_exp.models.tokenizer import train_tokenizer
from srlm_exp.world.judge_prompt import PAPER_JUDGE_PROMPT
from srlm_exp.world.build import WorldSizes, build_world


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=24)
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        files = build_world(d, 0, WorldSizes(corpus=300, ift=50, eft=60, eval=10, judge_eval=4))
        texts = [r["text"] for r in read_jsonl(files["corpus"])] + [PAPER_JUDGE_PROMPT] * 20
        tok = train_tokenizer(texts, 640)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                      num_hidden_layers=args.layers, num_attention_heads=4, max_position_embeddings=1024,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    prompt = prompt_ids(tok, PAPER_JUDGE_PROMPT.replace("<INSTRUCTION_HERE>", "Reverse the word c a t.")
                         .replace("<RESPONSE_HERE>", "The answer is t a c."))
    # A random model never emits EOS early, so every sequence runs the full budget: a fair timing.
    sampling = Sampling(max_new_tokens=args.new_tokens, temperature=0.7, top_p=0.9)
    print(f"judge prompt: {len(prompt)} tokens, {args.new_tokens} new tokens, {args.n} sequences, "
          f"model {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, {torch.get_num_threads()} threads")
    print(f"{'batch':>6} {'seconds':>8} {'seq/s':>7} {'new tok/s':>10}")
    for bs in (1, 8, 32, 64):
        n = min(args.n, 16) if bs == 1 else args.n
        t0 = time.perf_counter()
        generate(model, tok, [prompt] * n, sampling, batch_size=bs, show_progress=False)
        dt = time.perf_counter() - t0
        print(f"{bs:>6} {dt:>8.2f} {n / dt:>7.1f} {n * args.new_tokens / dt:>10.0f}")


if __name__ == "__main__":
    main()
