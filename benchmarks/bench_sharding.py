"""Training state per rank and step time under DDP and under FSDP (trainer=fsdp's sharding), in a real
gloo process group on CPU.

    python benchmarks/bench_sharding.py [--world 2] [--hidden 512] [--layers 8] [--vocab 8000]

Every rank builds the same Llama and trains a few AdamW steps on random tokens: once wrapped in
torch's DDP (every rank holds the whole model), once sharded by `srlm_exp.training.sharding.shard`
(FSDP2, one unit per decoder layer). Prints, for rank 0, the bytes it holds of parameters, gradients
and Adam state, and the seconds per step. On a GPU the first three columns
are what sharding saves on each device. The all-gathers and reduce-scatters are what it costs in time.
"""
from __future__ import annotations

import argparse
import socket
import time

import torch


def local_bytes(tensors) -> int:
    from torch.distributed.tensor import DTensor

    total = 0
    for t in tensors:
        if t is None:
            continue
        t = t.to_local() if isinstance(t, DTensor) else t
        total += t.numel() * t.element_size()
    return total


def rank_main(rank: int, port: int, args, mode: str, results) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from transformers import LlamaConfig, LlamaForCausalLM

    from srlm_exp.training.sharding import shard

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.world)
    try:
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
            num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
            max_position_embeddings=max(512, args.seq), tie_word_embeddings=False)).train()
        n_params = sum(p.numel() for p in model.parameters())
        if mode == "ddp":
            trained = torch.nn.parallel.DistributedDataParallel(model)
        else:
            trained = shard(model, init_device_mesh("cpu", (args.world,)))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(rank)
        times = []
        for _ in range(args.steps + 1):  # the first step allocates Adam's state: not timed
            x = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
            t0 = time.perf_counter()
            trained(input_ids=x, labels=x).loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
            # Measured before zero_grad, while the gradients are held (their peak).
            grads = local_bytes(p.grad for p in model.parameters())
            opt.zero_grad(set_to_none=True)
        params = local_bytes(model.parameters())
        adam = local_bytes(v for state in opt.state.values() for v in state.values()
                           if isinstance(v, torch.Tensor) and v.dim() > 0)
        if rank == 0:
            results.put((mode, n_params, params, grads, adam, sum(times[1:]) / args.steps))
    finally:
        dist.destroy_process_group()


def run(mode: str, args) -> tuple:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, port, args, mode, results)) for r in range(args.world)]
    for p in procs:
        p.start()
    out = results.get(timeout=3600)
    for p in procs:
        p.join(timeout=600)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = ap.parse_args()
    mb = 2 ** 20
    print(f"{args.world} ranks (gloo, CPU, {args.threads} thread(s) each); Llama hidden {args.hidden} x {args.layers} "
          f"layers, vocab {args.vocab}; batch {args.batch} x {args.seq} tokens per rank; fp32, AdamW")
    print(f"{'mode':<5} {'params M':>8} {'params MB':>9} {'grads MB':>8} {'adam MB':>8} {'state MB':>8} {'step s':>7}")
    for mode in ("ddp", "fsdp"):
        _, n, params, grads, adam, step = run(mode, args)
        print(f"{mode:<5} {n / 1e6:>8.1f} {params / mb:>9.1f} {grads / mb:>8.1f} {adam / mb:>8.1f} "
              f"{(params + grads + adam) / mb:>8.1f} {step:>7.2f}")
    print("MB are rank 0's: parameters, gradients and Adam state it holds (state = their sum). Not counted: "
          "activations and the layers FSDP gathers while they compute. Process RSS is no measure of this on CPU: "
          "the allocator keeps the memory of the full model that was built before sharding.")


if __name__ == "__main__":
    main()
