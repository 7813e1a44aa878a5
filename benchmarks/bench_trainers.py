"""The `train` options side by side on one judged-candidate workload: DPO, SFT on the top candidate,
REINFORCE (RLOO) and PPO, each stage's whole `fit` in its own subprocess, so peak RSS is its own.

    python benchmarks/bench_trainers.py [--prompts 128] [--json PATH]

Workload, on the embedded world with a random tiny Llama of the default shape (192 x 4), fp32, CPU:
`--prompts` EFT instructions of the world, each with its 3 grader-scored responses as the judged
candidates (candidates.jsonl) and their best-vs-worst pairs (pairs.jsonl), 1 epoch, batch 16, each
trainer with its conf/train defaults otherwise. The clock covers the stage's fit (reference passes,
rollout statistics and training); model loading is outside it. Examples/s counts what the stage
trains on: pairs (DPO), prompts (SFT), scored candidates (REINFORCE, PPO).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_vs_trl import save_model, world

TRAINERS = ("dpo", "sft", "reinforce", "ppo")
SETTINGS = {"batch_size": 16, "epochs": 1, "min_examples": 1, "warmup_steps": 0}


def candidates(seed_data, n: int) -> list[dict]:
    """candidates.jsonl rows: n EFT sets as prompts whose candidates are the set's responses, judged by their grade."""
    rows, sets = [], {}
    for r in seed_data.eft_graded():
        sets.setdefault(r["instruction"], []).append(r)
    for k, (instruction, group) in enumerate(list(sets.items())[:n]):
        rows.append({"prompt_id": k, "instruction": instruction, "candidates": [
            {"text": r["response"], "source": "policy", "length": len(r["response"].split()),
             "judgments": [f"Score: {r['score']}"], "judgment_scores": [float(r["score"])], "score": float(r["score"])}
            for r in group]})
    return rows


def run(trainer: str, model_dir: Path, data_dir: Path) -> dict:
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from srlm_exp.models.loading import load_model, load_tokenizer
    from srlm_exp.training.fit import make_trainer
    from srlm_exp.training.stage import StageInputs

    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, tok).train()
    conf = OmegaConf.load(Path(__file__).parents[1] / "conf" / "train" / f"{trainer}.yaml")
    conf.update(SETTINGS)
    stage = instantiate(conf)
    trainer_cfg = {"accelerator": "cpu", "devices": 1, "precision": "32-true", "enable_progress_bar": False,
                   "gradient_clip_val": 1.0}
    ift = json.loads((data_dir / "ift.json").read_text())

    class Seed:  # PPO-ptx draws IFT rows
        def ift(self):
            return ift

    def run_fit(module, loader, epochs, max_steps):
        trainer_ = make_trainer(trainer_cfg, max_epochs=epochs, max_steps=max_steps)
        trainer_.fit(module, loader)
        return trainer_

    inputs = StageInputs(tokenizer=tok, iteration=2, seed=0, data_dir=data_dir, seed_data=Seed(), judge=None,
                         run_fit=run_fit, load_model=None, release=None)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    trained = stage.fit(model, inputs)
    seconds = time.perf_counter() - t0
    examples = trained.get("pairs") or trained.get("rollouts") or trained.get("examples")
    return {"seconds": seconds, "examples": examples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trainer"), ap.add_argument("--model"), ap.add_argument("--data")
    args = ap.parse_args()
    if args.child:
        out = run(args.trainer, Path(args.model), Path(args.data))
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(out))
        return
    from srlm_exp.artifacts import write_jsonl
    from srlm_exp.records import PromptCandidates
    from srlm_exp.pairs.build import build_pairs
    from srlm_exp.pairs.rules import best_vs_worst
    import random

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seed_data = world(tmp)
        model_dir = save_model(tmp / "model", seed_data)
        data = tmp / "iteration_2"
        data.mkdir()
        rows = candidates(seed_data, args.prompts)
        write_jsonl(data / "candidates.jsonl", rows)
        pairs, _ = build_pairs([PromptCandidates.from_json(r) for r in rows], best_vs_worst, random.Random(0))
        write_jsonl(data / "pairs.jsonl", pairs)
        (data / "ift.json").write_text(json.dumps(seed_data.ift()))
        for trainer in TRAINERS:
            cmd = [sys.executable, __file__, "--child", "--trainer", trainer, "--model", str(model_dir), "--data", str(data)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                raise SystemExit(f"{trainer} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(line[0][len("RESULT "):])
            results.append({"trainer": trainer, "examples": r["examples"], "seconds": round(r["seconds"], 2),
                            "examples_per_s": round(r["examples"] / r["seconds"], 1), "peak_rss_mb": round(r["peak_rss_mb"])})
    dpo = results[0]
    print(f"{'trainer':<10} {'examples':>8} {'seconds':>8} {'ex/s':>7} {'peak RSS MB':>12} {'s / DPO s':>10}")
    for r in results:
        r["seconds_vs_dpo"] = round(r["seconds"] / dpo["seconds"], 2)
        print(f"{r['trainer']:<10} {r['examples']:>8} {r['seconds']:>8.2f} {r['examples_per_s']:>7.1f} "
              f"{r['peak_rss_mb']:>12} {r['seconds_vs_dpo']:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps({"settings": {"prompts": args.prompts, **SETTINGS}, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
