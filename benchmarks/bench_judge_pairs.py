"""DPO with Meta-Rewarding's judge pairs beside the policy pairs: batches that mix the two (a shuffled loader)
against judge pairs in batches of their own (training/dpo.py `judge_pairs_apart`), in one process.

    python benchmarks/bench_judge_pairs.py [--policy 320] [--judge 48] [--json PATH]

Workload, on the embedded world with a random tiny Llama of the default shape (192 x 4), fp32, CPU: `--policy`
best-vs-worst pairs of the world's EFT sets (short task prompts) and `--judge` judge pairs (the paper's judge
prompt around one EFT response, its right judgment against a sibling's), about the share the meta-judge makes
on the default world (53 judge pairs beside ~320 policy pairs). One epoch at batch 16 of the DPO module's fit;
the reference log-probs are computed once, outside the clock. Each order is timed twice, alternating.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_vs_trl import save_model, world


def workload(seed_data, n_policy: int, n_judge: int) -> list[dict]:
    from omegaconf import OmegaConf
    from hydra.utils import instantiate

    judge = instantiate(OmegaConf.load(Path(__file__).parents[1] / "conf" / "judge" / "additive5.yaml"))
    sets: dict[str, list[dict]] = {}
    for r in seed_data.eft_graded():
        sets.setdefault(r["instruction"], []).append(r)
    groups = list(sets.values())
    rows = []
    for g in groups[:n_policy]:
        best, worst = max(g, key=lambda r: r["score"]), min(g, key=lambda r: r["score"])
        rows.append({"instruction": best["instruction"], "chosen": best["response"], "rejected": worst["response"]})
    for g in groups[n_policy:n_policy + n_judge]:
        right, wrong = max(g, key=lambda r: r["score"]), min(g, key=lambda r: r["score"])
        rows.append({"instruction": judge.render(right["instruction"], right["response"]),
                     "chosen": judge.target(right["judgment"], right["score"]),
                     "rejected": judge.target(wrong["judgment"], wrong["score"])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", type=int, default=320)
    ap.add_argument("--judge", type=int, default=48)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch
    from torch.utils.data import DataLoader

    from srlm_exp.chat import chat_example
    from srlm_exp.models.loading import load_model, load_tokenizer
    from srlm_exp.models.shared_prefix import available
    from srlm_exp.training.dpo import DPOModule, compute_reference_logps, judge_pairs_apart, pair_batches
    from srlm_exp.training.fit import make_trainer

    batch = 16
    with tempfile.TemporaryDirectory() as tmp:
        seed_data = world(Path(tmp))
        model_dir = save_model(Path(tmp) / "model", seed_data)
        tok = load_tokenizer(model_dir)
        rows = workload(seed_data, args.policy, args.judge)
        items = [{"chosen": chat_example(tok, r["instruction"], r["chosen"], 768, "max_len"),
                  "rejected": chat_example(tok, r["instruction"], r["rejected"], 768, "max_len")} for r in rows]
        model = load_model(model_dir, tok)
        shared = available(model, "DPO", training=True)
        compute_reference_logps(model, items, tok.pad_token_id, batch, "sigmoid", shared)
        collate = lambda b: pair_batches(b, tok.pad_token_id, shared)  # noqa: E731
        orders = {
            "mixed (shuffled)": lambda: DataLoader(items, batch_size=batch, shuffle=True,
                                                   generator=torch.Generator().manual_seed(0), collate_fn=collate),
            "judge pairs apart": lambda: DataLoader(judge_pairs_apart(items, batch, 0), batch_size=batch, shuffle=False,
                                                    collate_fn=collate),
        }
        trainer_cfg = {"accelerator": "cpu", "devices": 1, "precision": "32-true", "enable_progress_bar": False,
                       "gradient_clip_val": 1.0}
        seconds: dict[str, list[float]] = {name: [] for name in orders}
        for _ in range(2):
            for name, loader in orders.items():
                fresh = load_model(model_dir, tok).train()
                module = DPOModule(fresh, beta=0.1, lr=1e-5, min_lr=1e-6)
                t0 = time.perf_counter()
                make_trainer(trainer_cfg, max_epochs=1, max_steps=-1).fit(module, loader())
                seconds[name].append(time.perf_counter() - t0)

    base = min(seconds["mixed (shuffled)"])
    results = [{"order": name, "pairs": len(items), "seconds": round(min(s), 2), "pairs_per_s": round(len(items) / min(s), 1),
                "speedup_vs_mixed": round(base / min(s), 2)} for name, s in seconds.items()]
    print(f"{'batch order':<20} {'pairs':>6} {'seconds':>8} {'pairs/s':>8} {'speedup':>8}")
    for r in results:
        print(f"{r['order']:<20} {r['pairs']:>6} {r['seconds']:>8.2f} {r['pairs_per_s']:>8.1f} {r['speedup_vs_mixed']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"settings": {"policy": args.policy, "judge": args.judge, "batch_size": batch,
                                                      "epochs": 1}, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
