"""DPO and SFT against TRL (`DPOTrainer`, `SFTTrainer`): the same model, rows, batch size and lengths,
each implementation in its own subprocess, so peak RSS is the process's own.

    pip install -e ".[bench]"          # TRL is a benchmark extra, never a runtime dependency
    python benchmarks/bench_vs_trl.py [--pairs 256] [--model DIR] [--lora] [--tasks dpo sft] [--json PATH]

Workloads, on the embedded world with a random tiny Llama of the default shape (192 x 4), fp32, CPU, or the
checkpoint `--model` (e.g. SmolLM2-135M-Instruct converted: `--model smollm2`), fully or with LoRA adapters
(`--lora`: r=16, alpha=32 on every linear layer, both implementations; the reference is the adapter-free model):
  * DPO: `--pairs` (instruction, canonical answer, worse answer) pairs of the world's EFT instructions,
    batch 16, 1 epoch, sigmoid loss, beta 0.1, reference = the initial model. Ours: the DPO stage
    (reference log-probs computed once before training, each pair's prompt forwarded once); TRL: its
    default (a reference model forward each step) and with `precompute_ref_log_probs=True`.
  * SFT: the default M1 mix (IFT + EFT rows in the judge format), batch 16, 1 epoch, loss on the
    responses. Ours: the seed SFT stage (length-grouped batches, the rubric forwarded once per batch);
    TRL: SFTTrainer on prompt/completion rows (completion-only loss).
TRL runs without gradient checkpointing (TRL >= 1 turns it on by default: memory for speed; ours recomputes
nothing unless model.gradient_checkpointing=true), so each side runs its fastest setting.
Pairs/s and examples/s count the whole training call (for ours: reference pass + fit; for TRL:
`trainer.train()`, which includes its reference pass when precomputed); model loading and tokenization
of the dataset are outside the clock for both.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROW_SETTINGS = {"batch_size": 16, "max_len": 768, "lr": 1e-4}


def world(tmp: Path):
    from srlm_exp.world.source import WorldSeedData

    return WorldSeedData("world", 0, True, dict(corpus=3000, ift=300, eft=480, eval=8, judge_eval=4)).build(tmp / "data")


def save_model(out: Path, seed_data) -> Path:
    """A random tiny Llama of conf/model/tiny.yaml's shape with the world tokenizer, saved like a checkpoint."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from srlm_exp.models.tokenizer import train_tokenizer

    tok = train_tokenizer(seed_data.tokenizer_texts(), 640)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=192, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def dpo_rows(seed_data, n: int) -> list[dict]:
    from srlm_exp.world.grader import response_with_score
    from srlm_exp.world.tasks import parse_instruction

    rng = random.Random(0)
    rows = []
    for r in seed_data.eft_graded()[:n]:
        task = parse_instruction(r["instruction"])
        rows.append({"instruction": r["instruction"], "chosen": response_with_score(task, 5, rng),
                     "rejected": response_with_score(task, rng.randrange(5), rng)})
    return rows


def sft_rows(seed_data) -> list[dict]:
    from srlm_exp.judging.judge import Judge
    from srlm_exp.world.judge_prompt import PAPER_JUDGE_PROMPT

    ift = [{"instruction": r["instruction"], "response": r["response"]} for r in seed_data.ift()]
    return ift + Judge("additive5", PAPER_JUDGE_PROMPT).eft_rows(seed_data)


def workload_tokens(model_dir: Path, workloads: dict[str, list[dict]]) -> tuple[dict[str, int], int]:
    """Tokens of every full sequence a workload trains on (a DPO pair: chosen and rejected), in the model's own
    tokenizer and chat template, and the model's parameter count."""
    from srlm_exp.chat import chat_example
    from srlm_exp.models.loading import load_tokenizer

    tok = load_tokenizer(model_dir)
    length = lambda i, r: len(chat_example(tok, i, r, ROW_SETTINGS["max_len"]).input_ids)  # noqa: E731
    tokens = {}
    for task, rows in workloads.items():
        tokens[task] = (sum(length(r["instruction"], r["chosen"]) + length(r["instruction"], r["rejected"]) for r in rows)
                        if task == "dpo" else sum(length(r["instruction"], r["response"]) for r in rows))
    from transformers import AutoConfig, AutoModelForCausalLM

    import torch

    with torch.device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).parameters())
    return tokens, n_params


# --- one implementation per subprocess ------------------------------------------------------------------

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}


def run_ours(task: str, model_dir: Path, rows: list[dict], lora: bool = False) -> dict:
    import torch

    from srlm_exp.models.loading import load_model, load_tokenizer
    from srlm_exp.training.fit import make_trainer
    from srlm_exp.training.stage import StageInputs

    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, tok).train()
    if lora:
        from srlm_exp.models.lora import apply_lora

        model = apply_lora(model, LORA)
    trainer_cfg = {"accelerator": "cpu", "devices": 1, "precision": "32-true", "enable_progress_bar": False,
                   "logger": False, "gradient_clip_val": 1.0}
    trainer_cfg.pop("logger")

    def run_fit(module, loader, epochs, max_steps):
        trainer = make_trainer(trainer_cfg, max_epochs=epochs, max_steps=max_steps)
        trainer.fit(module, loader)
        return trainer

    with tempfile.TemporaryDirectory() as tmp:
        inputs = StageInputs(tokenizer=tok, iteration=2, seed=0, data_dir=Path(tmp), seed_data=None, judge=None,
                             run_fit=run_fit, load_model=None, release=None)
        if task == "dpo":
            from srlm_exp.artifacts import write_jsonl
            from srlm_exp.training.dpo import DPOStage

            write_jsonl(Path(tmp) / "pairs.jsonl", rows)
            stage = DPOStage(lr=ROW_SETTINGS["lr"], min_lr=ROW_SETTINGS["lr"], epochs=1, batch_size=ROW_SETTINGS["batch_size"],
                             max_len=ROW_SETTINGS["max_len"], min_examples=1)
        else:
            from srlm_exp.training.seed_sft import SeedSFTStage

            ift = [r for r in rows if not r["instruction"].startswith("Review the user")]

            class Rows:  # the seed data and judge as the stage asks for them
                def ift(self):
                    return ift

                def eft_rows(self, seed_data):
                    return rows[len(ift):]

            inputs.seed_data, inputs.judge = Rows(), Rows()
            stage = SeedSFTStage(lr=ROW_SETTINGS["lr"], min_lr=ROW_SETTINGS["lr"], warmup_steps=0, epochs=1,
                                 batch_size=ROW_SETTINGS["batch_size"], max_len=ROW_SETTINGS["max_len"])
        torch.manual_seed(0)
        t0 = time.perf_counter()
        stage.fit(model, inputs)
        return {"seconds": time.perf_counter() - t0}


def run_trl(task: str, model_dir: Path, rows: list[dict], precompute: bool, lora: bool = False) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=ROW_SETTINGS["batch_size"],
                  num_train_epochs=1, learning_rate=ROW_SETTINGS["lr"], lr_scheduler_type="constant", report_to=[],
                  save_strategy="no", logging_steps=1000, use_cpu=True, max_grad_norm=1.0, disable_tqdm=True,
                  max_length=ROW_SETTINGS["max_len"], dataloader_num_workers=0,
                  # TRL >= 1 turns recomputation on by default; ours does not recompute (model.gradient_checkpointing
                  # is off by default), so TRL runs its faster setting too
                  gradient_checkpointing=False)
    peft = {}
    if lora:
        from peft import LoraConfig

        peft = {"peft_config": LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                          target_modules=LORA["target_modules"], task_type="CAUSAL_LM")}
    user = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    assistant = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    if task == "dpo":
        from trl import DPOConfig, DPOTrainer

        data = datasets.Dataset.from_list([{"prompt": user(r["instruction"]), "chosen": assistant(r["chosen"]),
                                            "rejected": assistant(r["rejected"])} for r in rows])
        args = DPOConfig(**common, beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=precompute)
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, **peft)
    else:
        from trl import SFTConfig, SFTTrainer

        data = datasets.Dataset.from_list([{"prompt": user(r["instruction"]), "completion": assistant(r["response"])}
                                           for r in rows])
        trainer = SFTTrainer(model=model, args=SFTConfig(**common, completion_only_loss=True), train_dataset=data,
                             processing_class=tok, **peft)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    trainer.train()
    return {"seconds": time.perf_counter() - t0}


def child(args) -> None:
    rows = json.loads(Path(args.rows).read_text())
    if args.impl == "ours":
        out = run_ours(args.task, Path(args.model_dir), rows, args.lora)
    else:
        out = run_trl(args.task, Path(args.model_dir), rows, precompute=args.impl == "trl_precompute", lora=args.lora)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--model", dest="model_arg", help="a model directory, or smollm2 (default: random tiny Llama)")
    ap.add_argument("--lora", action="store_true", help="train LoRA adapters (both implementations)")
    ap.add_argument("--tasks", nargs="+", default=["dpo", "sft"], choices=["dpo", "sft"])
    ap.add_argument("--sft-rows", type=int, default=0, help="cap the SFT rows (0 = the whole M1 mix)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl"), ap.add_argument("--task"), ap.add_argument("--model-dir"), ap.add_argument("--rows")
    args = ap.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seed_data = world(tmp)
        if args.model_arg == "smollm2":
            from bench_real_model import smollm2_dir

            model_dir = smollm2_dir()
        else:
            model_dir = Path(args.model_arg) if args.model_arg else save_model(tmp / "model", seed_data)
        sft = sft_rows(seed_data)
        if args.sft_rows:  # IFT and EFT rows in the mix's proportion
            sft = random.Random(0).sample(sft, min(args.sft_rows, len(sft)))
        workloads = {k: v for k, v in {"dpo": dpo_rows(seed_data, args.pairs), "sft": sft}.items() if k in args.tasks}
        tokens, n_params = workload_tokens(model_dir, workloads)
        results = []
        for task, rows in workloads.items():
            (tmp / f"{task}.json").write_text(json.dumps(rows))
            impls = ["ours", "trl", "trl_precompute"] if task == "dpo" else ["ours", "trl"]
            for impl in impls:
                cmd = [sys.executable, __file__, "--child", "--impl", impl, "--task", task, "--model-dir", str(model_dir),
                       "--rows", str(tmp / f"{task}.json")] + (["--lora"] if args.lora else [])
                proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode or not line:
                    raise SystemExit(f"{impl} {task} failed:\n{proc.stderr[-3000:]}")
                r = json.loads(line[0][len("RESULT "):])
                results.append({"task": task, "impl": impl, "rows": len(rows), "seconds": round(r["seconds"], 2),
                                "rows_per_s": round(len(rows) / r["seconds"], 2),
                                "tokens_per_s": round(tokens[task] / r["seconds"]), "peak_rss_mb": round(r["peak_rss_mb"])})
    from bench_mfu import matmul_peak

    peak = max(matmul_peak(2048), matmul_peak(0, shape=(512, 576, 1536)))
    for r in results:  # model FLOPs of a full fine-tuning step: 6 per parameter per token (attention left out)
        r["mfu_6n"] = None if args.lora else round(6 * n_params * r["tokens_per_s"] / peak, 3)
    print(f"{n_params / 1e6:.1f}M params, {'LoRA' if args.lora else 'full'}, fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{'task':<4} {'implementation':<16} {'rows':>5} {'seconds':>8} {'rows/s':>8} {'tokens/s':>9} {'MFU':>6} "
          f"{'peak RSS MB':>12}")
    for r in results:
        mfu = f"{r['mfu_6n']:.2f}" if r["mfu_6n"] is not None else "-"
        print(f"{r['task']:<4} {r['impl']:<16} {r['rows']:>5} {r['seconds']:>8.2f} {r['rows_per_s']:>8.2f} "
              f"{r['tokens_per_s']:>9} {mfu:>6} {r['peak_rss_mb']:>12}")
    ratios = {}
    for task in workloads:
        ours = next(r for r in results if r["task"] == task and r["impl"] == "ours")
        for r in results:
            if r["task"] == task and r["impl"] != "ours":
                ratios[f"{task}: ours / {r['impl']}"] = {"speed": round(ours["rows_per_s"] / r["rows_per_s"], 2),
                                                        "peak_rss": round(ours["peak_rss_mb"] / r["peak_rss_mb"], 2)}
    for k, v in ratios.items():
        print(f"{k}: {v['speed']:.2f}x rows/s, {v['peak_rss']:.2f}x peak RSS")
    if args.json:
        args.json.write_text(json.dumps({"settings": ROW_SETTINGS, "model": args.model_arg or "random tiny Llama",
                                         "lora": args.lora, "results": results, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
