"""Memory and speed of one DPO step against the micro-batch size (`train.micro_batch_size`), each setting in
its own subprocess so that peak RSS is its own, side by side in one run, with the machine's fp32 matmul peak.

    python benchmarks/bench_micro_batches.py [--model smollm2|DIR] [--micro 0 2 1] [--pairs 8] [--steps 2] [--json PATH]

The workload is the shape of the IFEval positive control's DPO (`experiment=ifeval_control`, docs/ifeval_world.md
"Stop 44": a ~100-token prompt, the chosen answer ~134 tokens, the rejected one ~252, batches of 8 pairs): `--pairs`
x `--steps` pairs of random words cut to those token counts, trained by the DPO stage exactly as the loop runs
it (reference log-probs first, then the fit; sigmoid loss, full fine-tuning, fp32, the loop's Trainer settings).
`--micro 0` is the whole batch in one pass (micro_batch_size=null). Seconds/step is the fit's time over its
steps (the reference pass and model loading are outside it); peak RSS is the subprocess's maximum resident size.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LENGTHS = {"prompt": 100, "chosen": 134, "rejected": 252}  # tokens


def words_of(tok, n_tokens: int, rng: random.Random) -> str:
    """Random vocabulary words, cut to `n_tokens` tokens."""
    vocab = [w for w in tok.get_vocab() if w.isalpha() and len(w) > 2]
    ids = tok(" ".join(rng.choice(vocab) for _ in range(n_tokens * 2)), add_special_tokens=False)["input_ids"]
    return tok.decode(ids[:n_tokens])


def child(model_dir: Path, micro: int, pairs: int, steps: int) -> dict:
    import torch

    from srlm_exp.artifacts import write_jsonl
    from srlm_exp.models.loading import load_model, load_tokenizer
    from srlm_exp.training.dpo import DPOStage
    from srlm_exp.training.fit import make_trainer
    from srlm_exp.training.stage import StageInputs

    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, tok).train()
    rng = random.Random(0)
    rows = [{"instruction": words_of(tok, LENGTHS["prompt"], rng), "chosen": words_of(tok, LENGTHS["chosen"], rng),
             "rejected": words_of(tok, LENGTHS["rejected"], rng)} for _ in range(pairs * steps)]
    fit_seconds: list[float] = []

    def run_fit(module, loader, epochs, max_steps):
        trainer = make_trainer({"accelerator": "cpu", "devices": 1, "precision": "32-true", "enable_progress_bar": False,
                                "gradient_clip_val": 1.0}, max_epochs=epochs, max_steps=max_steps)
        t0 = time.perf_counter()
        trainer.fit(module, loader)
        fit_seconds.append(time.perf_counter() - t0)
        return trainer

    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(Path(tmp) / "pairs.jsonl", rows)
        inputs = StageInputs(tokenizer=tok, iteration=2, seed=0, data_dir=Path(tmp), seed_data=None, judge=None,
                             run_fit=run_fit, load_model=None, release=None)  # type: ignore[arg-type]
        stage = DPOStage(lr=3e-5, min_lr=3e-5, epochs=1, batch_size=pairs, micro_batch_size=micro or None,
                         min_examples=1)
        torch.manual_seed(0)
        stage.fit(model, inputs)
    return {"seconds_per_step": fit_seconds[0] / steps,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 (the converted SmolLM2-135M-Instruct) or a model directory")
    ap.add_argument("--micro", nargs="+", type=int, default=[0, 2, 1], help="micro-batch sizes in pairs (0: the whole batch)")
    ap.add_argument("--pairs", type=int, default=8, help="pairs per batch (one optimizer step)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.model == "smollm2":
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_real_model import smollm2_dir

        model_dir = smollm2_dir()
    else:
        model_dir = Path(args.model)
    if args.child is not None:
        print("RESULT " + json.dumps(child(model_dir, args.child, args.pairs, args.steps)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_mfu import matmul_peak

    peak = max(matmul_peak(2048), matmul_peak(0, shape=(512, 576, 1536)))
    print(f"DPO, {args.pairs} pairs per step ({LENGTHS}), {model_dir.name}; fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{'micro-batch (pairs)':>20} {'s/step':>8} {'x first':>8} {'peak RSS GB':>12}", flush=True)
    results: list[dict] = []
    for micro in args.micro:  # each row printed as it comes: a SmolLM2 row takes minutes on 2 cores
        cmd = [sys.executable, __file__, "--child", str(micro), "--model", str(model_dir), "--pairs", str(args.pairs),
               "--steps", str(args.steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            raise SystemExit(f"micro-batch {micro} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(line[0][len("RESULT "):])
        row = {"micro_batch_size": micro or args.pairs, "seconds_per_step": round(r["seconds_per_step"], 1),
               "peak_rss_gb": round(r["peak_rss_gb"], 2)}
        row["step_time_vs_first"] = round(row["seconds_per_step"] / (results or [row])[0]["seconds_per_step"], 2)
        results.append(row)
        print(f"{row['micro_batch_size']:>20} {row['seconds_per_step']:>8} {row['step_time_vs_first']:>8} "
              f"{row['peak_rss_gb']:>12}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"matmul_peak_gflops": round(peak / 1e9, 1), "pairs": args.pairs,
                                         "lengths": LENGTHS, "results": results}, indent=2))


if __name__ == "__main__":
    main()
