"""Training throughput of tiny Llama shapes on judge-length sequences (EFT examples dominate SFT).

    python benchmarks/bench_training.py [--threads 2]

Prints step time and tokens/s for the shapes and attention-dropout settings the embedded default
was chosen from (batch 16 x 450 tokens, loss on the last 20 tokens, a padding mask on half the rows).
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seq", type=int, default=450)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads, batch 16 x {args.seq} tokens")
    print(f"{'hidden':>6} {'dropout':>7} {'params M':>8} {'step s':>7} {'tok/s':>7}")
    for hidden, dropout in [(128, 0.0), (192, 0.0), (192, 0.1), (256, 0.0), (256, 0.1)]:
        cfg = LlamaConfig(vocab_size=640, hidden_size=hidden, intermediate_size=512, num_hidden_layers=4,
                          num_attention_heads=4, max_position_embeddings=1024, tie_word_embeddings=True,
                          attention_dropout=dropout)
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        x = torch.randint(0, 640, (16, args.seq))
        mask = torch.ones_like(x)
        mask[:8, -30:] = 0
        labels = x.clone()
        labels[:, :-20] = -100
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            model(input_ids=x, attention_mask=mask, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
        step = min(times[1:])  # the first step pays one-time allocation costs
        n = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{hidden:>6} {dropout:>7} {n:>8.2f} {step:>7.3f} {16 * args.seq / step:>7.0f}")


if __name__ == "__main__":
    main()
