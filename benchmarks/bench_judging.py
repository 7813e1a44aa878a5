"""Judging throughput: plain `model.generate` against the project's shared-prefix path, side by side.

    python benchmarks/bench_judging.py [--model DIR] [--prompts 128] [--json PATH]

The default AIFT judging workload: 128 world prompts x 4 candidate responses x K=3 sampled judgments
with the paper's additive judge prompt (T=0.7, top-p 0.9, 40 new tokens). The model is `--model`
(e.g. an M1 from a run: its judgments stop at EOS like the loop's) or, by default, a randomly
initialised Llama of the embedded default's shape with the world tokenizer (it never emits EOS, so
every judgment runs the whole budget on both paths). Both paths get the same prompts; the table shows
judgments/s per batch size and the ratio of the best of each.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from srlm_exp.chat import prompt_ids
from srlm_exp.inference.sampler import Sampling, sample
from srlm_exp.models.loading import load_model, load_tokenizer
from srlm_exp.models.shared_prefix import use_shared_prefix
from srlm_exp.models.tokenizer import train_tokenizer
from srlm_exp.world.grader import response_with_score
from srlm_exp.world.judge_prompt import PAPER_JUDGE_PROMPT
from srlm_exp.world.source import WorldSeedData
from srlm_exp.world.tasks import sample_task


def default_model():
    """A random tiny Llama of conf/model/tiny.yaml's shape with the world tokenizer."""
    with tempfile.TemporaryDirectory() as d:
        texts = WorldSeedData("world", 0, True, dict(corpus=300, ift=60, eft=60, eval=8, judge_eval=4)).build(
            Path(d)).tokenizer_texts()
    tok = train_tokenizer(texts, 640)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=192, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval(), tok


def workload(tok, n_prompts: int, n_candidates: int) -> list[list[int]]:
    rng = random.Random(0)
    prompts = []
    for _ in range(n_prompts):
        task = sample_task(rng)
        for _ in range(n_candidates):
            response = response_with_score(task, rng.randrange(6), rng)
            judge_prompt = PAPER_JUDGE_PROMPT.replace("<INSTRUCTION_HERE>", task.instruction).replace("<RESPONSE_HERE>", response)
            prompts.append(prompt_ids(tok, judge_prompt))
    return prompts


def timed(model, tok, prompts, sampling, k, batch_size, shared: bool) -> tuple[float, int]:
    use_shared_prefix(shared)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    out = sample(model, tok, prompts, sampling, n=k, batch_size=batch_size, show_progress=False)
    seconds = time.perf_counter() - t0
    return seconds, sum(len(tok(t, add_special_tokens=False)["input_ids"]) for texts in out for t in texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a model directory (default: random tiny Llama)")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--k", type=int, default=3, help="judgments per candidate")
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--plain-batches", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--shared-batches", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    if args.model:
        tok = load_tokenizer(args.model)
        model = load_model(args.model, tok).eval()
    else:
        model, tok = default_model()
    prompts = workload(tok, args.prompts, args.candidates)
    sampling = Sampling(max_new_tokens=args.new_tokens, temperature=0.7, top_p=0.9)
    n_judgments = len(prompts) * args.k
    params = sum(p.numel() for p in model.parameters()) / 1e6
    mean_len = sum(map(len, prompts)) / len(prompts)
    print(f"{len(prompts)} judge prompts (mean {mean_len:.0f} tokens) x K={args.k} = {n_judgments} judgments, "
          f"{args.new_tokens} new tokens max, model {params:.2f}M params, {torch.get_num_threads()} threads")
    rows = []
    for path, batches in (("plain generate", args.plain_batches), ("shared prefix", args.shared_batches)):
        for bs in batches:
            seconds, new_tokens = timed(model, tok, prompts, sampling, args.k, bs, path == "shared prefix")
            rows.append({"path": path, "batch": bs, "seconds": round(seconds, 2),
                         "judgments_per_s": round(n_judgments / seconds, 1), "new_tokens": new_tokens})
    best = {p: max(r["judgments_per_s"] for r in rows if r["path"] == p) for p in ("plain generate", "shared prefix")}
    ratio = best["shared prefix"] / best["plain generate"]
    print(f"{'path':<16} {'batch':>5} {'seconds':>8} {'judgments/s':>12} {'new tokens':>10}")
    for r in rows:
        print(f"{r['path']:<16} {r['batch']:>5} {r['seconds']:>8.2f} {r['judgments_per_s']:>12.1f} {r['new_tokens']:>10}")
    print(f"best shared / best plain: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"workload": {"judge_prompts": len(prompts), "k": args.k, "judgments": n_judgments,
                                                      "mean_prompt_tokens": round(mean_len, 1), "new_tokens": args.new_tokens,
                                                      "model": args.model or "random tiny Llama 192x4",
                                                      "params_m": round(params, 2),
                                                      "threads": torch.get_num_threads()},
                                         "rows": rows, "speedup": round(ratio, 2)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
