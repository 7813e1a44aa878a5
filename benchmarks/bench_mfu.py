"""The physical frame: this machine's measured fp32 matrix-multiply FLOP/s, and how much of it our SFT and
DPO training steps use.

    python benchmarks/bench_mfu.py [--steps 10] [--json PATH]

Peak: the best of large square fp32 matmuls (and one shaped like the tiny model's projections).
Steps: the default tiny Llama (192 x 4) on the default world's rows, batch 16: SFT on EFT batches (the
costliest rows, the rubric forwarded once) and DPO on world pairs (each prompt forwarded once).
FLOPs per step are counted analytically, forward + backward = 3 x forward: 2 FLOPs per weight per token
of every matrix multiply (projections, MLP, vocabulary head) and 4 per head dimension per attended
(query, key) pair. "model FLOPs" counts the work of the full sequences (what a plain implementation
computes), "executed FLOPs" what the shared-prefix step really computes; utilisation = FLOPs / seconds
/ peak.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_vs_trl import dpo_rows, save_model, sft_rows, world  # noqa: E402

from srlm_exp.chat import chat_example  # noqa: E402
from srlm_exp.models.loading import load_model, load_tokenizer  # noqa: E402
from srlm_exp.training.batching import length_grouped_batches  # noqa: E402
from srlm_exp.training.dpo import pair_batches, policy_logps  # noqa: E402
from srlm_exp.training.losses import preference_loss  # noqa: E402
from srlm_exp.training.shared_batches import causal_lm_loss, collate_with_prefix, prompt_length, shared_prefix  # noqa: E402


def matmul_peak(size: int, repeats: int = 5, shape: tuple[int, int, int] | None = None) -> float:
    m, k, n = shape or (size, size, size)
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best


def forward_flops(cfg, tokens: int, pairs: int) -> float:
    """Matrix multiplies of one forward pass: weights x tokens, plus attention scores and weighted sums."""
    d, L, f, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.vocab_size
    kv = d * cfg.num_key_value_heads // cfg.num_attention_heads
    per_token = L * (2 * d * d + 2 * d * kv + 3 * d * f) + d * V
    return 2 * per_token * tokens + 4 * L * d * pairs


def causal_pairs(n: int, start: int = 0) -> int:
    """(query, key) pairs of n causal queries after `start` earlier keys."""
    return n * start + n * (n + 1) // 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    peak = max(matmul_peak(2048), matmul_peak(1024))
    shaped = matmul_peak(0, shape=(16 * 214, 192, 512))
    with tempfile.TemporaryDirectory() as tmp:
        seed_data = world(Path(tmp))
        model_dir = save_model(Path(tmp) / "model", seed_data)
        tok = load_tokenizer(model_dir)
        model = load_model(model_dir, tok).train()
        rows, pairs = sft_rows(seed_data), dpo_rows(seed_data, 16 * args.steps)
    cfg = model.config
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n_ift = sum(not r["instruction"].startswith("Review the user") for r in rows)
    examples = [chat_example(tok, r["instruction"], r["response"], 768) for r in rows]
    prefix = shared_prefix(examples[n_ift:])
    batches = [b for b in length_grouped_batches([len(e.input_ids) for e in examples], 16, 0) if min(b) >= n_ift][: args.steps]

    def timed(step, batches) -> float:
        step(batches[0])
        t0 = time.perf_counter()
        for b in batches:
            step(b)
        return time.perf_counter() - t0

    def sft_step(b):
        causal_lm_loss(model, collate_with_prefix([examples[i] for i in b], tok.pad_token_id, prefix)).backward()
        opt.step()
        opt.zero_grad()

    P = len(prefix)
    sft_model = sum(forward_flops(cfg, len(examples[i].input_ids), causal_pairs(len(examples[i].input_ids)))
                    for b in batches for i in b)
    sft_exec = sum(forward_flops(cfg, P, causal_pairs(P)) + sum(
        forward_flops(cfg, len(examples[i].input_ids) - P, causal_pairs(len(examples[i].input_ids) - P, P)) for i in b)
        for b in batches)
    sft_seconds = timed(sft_step, batches)

    items = [{"chosen": chat_example(tok, r["instruction"], r["chosen"], 768),
              "rejected": chat_example(tok, r["instruction"], r["rejected"], 768), "ref_chosen": -20.0, "ref_rejected": -25.0}
             for r in pairs]
    dpo_batches = [items[s : s + 16] for s in range(0, len(items), 16)]

    def dpo_step(chunk):
        batch = pair_batches(chunk, tok.pad_token_id, True)
        logps = policy_logps(model, batch, "sigmoid")
        n = len(chunk)
        preference_loss(logps[:n], logps[n:], batch["ref_logps"][:n], batch["ref_logps"][n:])[0].mean().backward()
        opt.step()
        opt.zero_grad()

    dpo_model = dpo_exec = 0.0
    for chunk in dpo_batches:
        for it in chunk:
            p = prompt_length(it["chosen"]) - 1
            dpo_exec += forward_flops(cfg, p, causal_pairs(p))
            for e in (it["chosen"], it["rejected"]):
                n = len(e.input_ids)
                dpo_model += forward_flops(cfg, n, causal_pairs(n))
                dpo_exec += forward_flops(cfg, n - p, causal_pairs(n - p, p))
    dpo_seconds = timed(dpo_step, dpo_batches)

    rows_out = []
    for name, model_f, exec_f, seconds in (("SFT, EFT batches", sft_model, sft_exec, sft_seconds),
                                           ("DPO, world pairs", dpo_model, dpo_exec, dpo_seconds)):
        rows_out.append({"step": name, "seconds": round(seconds, 3), "model_gflop": round(3 * model_f / 1e9, 2),
                         "executed_gflop": round(3 * exec_f / 1e9, 2),
                         "model_flops_utilisation": round(3 * model_f / seconds / peak, 3),
                         "executed_flops_utilisation": round(3 * exec_f / seconds / peak, 3)})
    print(f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads; "
          f"{shaped / 1e9:.1f} GFLOP/s for a [3424 x 192] @ [192 x 512] projection)")
    print(f"{'step':<18} {'seconds':>8} {'model GFLOP':>12} {'executed GFLOP':>15} {'MFU':>6} {'executed/peak':>14}")
    for r in rows_out:
        print(f"{r['step']:<18} {r['seconds']:>8.2f} {r['model_gflop']:>12.1f} {r['executed_gflop']:>15.1f} "
              f"{r['model_flops_utilisation']:>6.2f} {r['executed_flops_utilisation']:>14.2f}")
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": round(peak / 1e9, 1), "projection_gflops": round(shaped / 1e9, 1),
                                         "threads": torch.get_num_threads(), "steps": rows_out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
