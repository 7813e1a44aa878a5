"""SFT throughput on the default IFT + EFT mix: every full sequence forwarded with Hugging Face's loss
(plain, the SFT step before shared prefixes) against the seed SFT stage's step (the rubric forwarded once
per batch, logits only where a label is predicted), side by side in one process on the same batches.

    python benchmarks/bench_sft_prefix.py [--steps 20] [--batch 16] [--json PATH]

The rows are M1's SFT data of the default world (300 IFT + 10% instruction-writing rows + 480 EFT rows
in the paper's judge format), length-grouped into batches as the seed SFT stage does; the model is a
random tiny Llama of the default shape (192 x 4), fp32. Tokens/s counts every token of every full
sequence (the prefix once per row that carries it), so the two paths are compared on the same work.
One timed pass = the same `--steps` batches, forward + backward + AdamW step; the best of `--repeats`.
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
from bench_vs_trl import save_model, sft_rows, world  # noqa: E402

from srlm_exp.chat import chat_example  # noqa: E402
from srlm_exp.models.loading import load_model, load_tokenizer  # noqa: E402
from srlm_exp.training.batching import collate_examples, length_grouped_batches  # noqa: E402
from srlm_exp.training.shared_batches import causal_lm_loss, collate_with_prefix, shared_prefix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--eft-only", action="store_true", help="time only batches of EFT rows")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seed_data = world(Path(tmp))
        model_dir = save_model(Path(tmp) / "model", seed_data)
        tok = load_tokenizer(model_dir)
        model = load_model(model_dir, tok).train()
        rows = sft_rows(seed_data)
    n_ift = sum(not r["instruction"].startswith("Review the user") for r in rows)
    examples = [chat_example(tok, r["instruction"], r["response"], 768) for r in rows]
    prefix = shared_prefix(examples[n_ift:])
    batches = length_grouped_batches([len(e.input_ids) for e in examples], args.batch, seed=0)
    if args.eft_only:
        batches = [b for b in batches if min(b) >= n_ift]
    batches = batches[: args.steps]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step_plain(b):
        return model(**collate_examples([examples[i] for i in b], tok.pad_token_id)).loss

    def step_shared(b):
        return causal_lm_loss(model, collate_with_prefix([examples[i] for i in b], tok.pad_token_id, prefix))

    tokens = sum(len(examples[i].input_ids) for b in batches for i in b)
    results = {}
    for name, step in (("plain", step_plain), ("shared prefix", step_shared)) * args.repeats:
        t0 = time.perf_counter()
        for b in batches:
            step(b).backward()
            opt.step()
            opt.zero_grad()
        seconds = time.perf_counter() - t0
        results[name] = min(seconds, results.get(name, float("inf")))
    eft_rows = sum(i >= n_ift for b in batches for i in b)
    print(f"{len(batches)} batches of {args.batch} ({eft_rows} EFT rows of {sum(map(len, batches))}), {tokens} tokens, "
          f"shared prefix {len(prefix)} tokens, {torch.get_num_threads()} threads")
    print(f"{'path':<14} {'seconds':>8} {'tokens/s':>9}")
    for name, seconds in results.items():
        print(f"{name:<14} {seconds:>8.2f} {tokens / seconds:>9.0f}")
    ratio = results["plain"] / results["shared prefix"]
    print(f"shared / plain: {ratio:.2f}x tokens/s")
    if args.json:
        args.json.write_text(json.dumps({"batches": len(batches), "batch_size": args.batch, "tokens": tokens,
                                         "eft_rows": eft_rows, "prefix_tokens": len(prefix), "threads": torch.get_num_threads(),
                                         "seconds": results, "tokens_per_s": {k: round(tokens / v) for k, v in results.items()},
                                         "speedup": round(ratio, 2)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
