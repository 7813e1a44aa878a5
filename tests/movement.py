"""How far a loop's training moved a model: the weights' update norm between two saved models, and the mean
margin log p(chosen) - log p(rejected) a saved model gives a list of pairs, from its full logits (an
independent computation: not the trainer's chunked log-probs). Used by the smoke movement tests (issue 40)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from srlm_exp.artifacts import read_jsonl
from srlm_exp.chat import chat_example
from srlm_exp.models.loading import load_tokenizer


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update({k: v.double() for k, v in load_file(f).items()})
    assert out, f"no weights in {model_dir}"
    return out


def relative_update(before_dir: Path, after_dir: Path) -> float:
    """||after - before|| / ||before|| over every saved tensor (both models must hold the same tensors)."""
    before, after = weights(before_dir), weights(after_dir)
    assert sorted(before) == sorted(after)
    update = sum(((after[k] - before[k]) ** 2).sum() for k in before).sqrt().item()
    norm = sum((w ** 2).sum() for w in before.values()).sqrt().item()
    return update / norm


@torch.no_grad()
def mean_margin(model_dir: Path, pairs: list[dict]) -> float:
    """Mean log p(chosen) - log p(rejected) under the saved model, from its full logits."""
    tok = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()

    def logp(instruction: str, response: str) -> float:
        example = chat_example(tok, instruction, response, 4096)
        labels = torch.tensor(example.labels[1:])
        logits = model(input_ids=torch.tensor([example.input_ids])).logits[0, :-1].double()
        keep = labels != -100
        return logits.log_softmax(-1)[keep].gather(-1, labels[keep][:, None]).sum().item()

    return sum(logp(p["instruction"], p["chosen"]) - logp(p["instruction"], p["rejected"]) for p in pairs) / len(pairs)


def margin_rise(job: Path, t: int, pairs: list[dict]) -> float:
    """How much more M(t) prefers its own training pairs' chosen answers than M(t-1) did, in nats."""
    return (mean_margin(job / f"iteration_{t}" / "model", pairs)
            - mean_margin(job / f"iteration_{t - 1}" / "model", pairs))


# A stage that took no optimizer step leaves M(t) equal to M(t-1) bit for bit (0.0). The smoke stages after M1
# move the tiny model by ~1e-3 to 1e-2 of its norm (tests/test_smoke_moves.py) and SmolLM2 by ~5e-5 at its
# smoke step (tests/test_real_model.py); LoRA moves the merged weights less. 1e-6 is far above float noise (a
# save/load round trip is exact) and below every stage's measured movement.
MIN_LOOP_UPDATE = 1e-6


def assert_trained_after_m1(job: Path, iterations: tuple[int, ...] = (2, 3), at_least: float = MIN_LOOP_UPDATE) -> None:
    """Every M(t) of `iterations` differs from M(t-1) by more than `at_least` of M(t-1)'s weights' norm: a loop
    test asserting only statuses, counts and files would pass on a stage that trained nothing (issue 40)."""
    for t in iterations:
        update = relative_update(job / f"iteration_{t - 1}" / "model", job / f"iteration_{t}" / "model")
        assert update > at_least, f"M{t} - M{t - 1} is {update:.3g} of M{t - 1}'s norm: did M{t}'s stage train?"


def assert_moved_where_rewarded(job: Path, iterations: tuple[int, ...] = (2, 3)) -> None:
    """For reward-weighted stages (RLOO, PPO): M(t) moved from M(t-1) when AIFT(M(t-1)) scored some prompt's
    candidates differently, and did not move at all when every prompt's candidates scored alike (leave-one-out
    advantages are then 0, and the KL term's gradient is 0 where the policy is its reference). The LoRA smoke
    model writes nothing the oracle credits, so its loop has no signal: a test asserting only that it ran would
    pass on a stage that trained nothing, and this one says which case it is in."""
    for t in iterations:
        rows = read_jsonl(job / f"iteration_{t}" / "candidates.jsonl")
        if any(len({c["score"] for c in r["candidates"] if c["score"] is not None}) > 1 for r in rows):
            assert_trained_after_m1(job, (t,))
        else:
            update = relative_update(job / f"iteration_{t - 1}" / "model", job / f"iteration_{t}" / "model")
            assert update == 0.0, f"M{t} moved by {update:.3g} of M{t - 1}'s norm with every candidate scored alike"
