"""The smoke loop's training after M1 moves the model, by more than stated thresholds and the right way
(issue 40). Before the smoke preset gave `train` its own step, M2 differed from M1 by 6.6e-5 of the weights'
norm, its own pairs' margin rose by 0.008 nats and M1, M2 and M3 gave the same answers: a loop whose DPO
trained nothing would have looked the same. Measured on the shared smoke job (conftest.smoke_run)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from srlm_exp.chat import chat_example
from srlm_exp.models.loading import load_tokenizer

# Measured at the smoke budget (conf/debug/smoke.yaml: 3 DPO steps at 1e-3, no warm-up), tiny model, one
# thread: M2 - M1 is 8.2e-3 of M1's norm and M3 - M2 8.8e-3; the pairs' margin rose by 0.74 and 0.80 nats.
# The thresholds sit ~8x and ~3x below those and ~15x and ~25x above what the old budget moved.
MIN_RELATIVE_UPDATE = 1e-3
MIN_MARGIN_RISE = 0.25  # nats, mean over the iteration's pairs of log p(chosen) - log p(rejected)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update({k: v.double() for k, v in load_file(f).items()})
    assert out, f"no weights in {model_dir}"
    return out


@torch.no_grad()
def _mean_margin(model_dir: Path, pairs: list[dict]) -> float:
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


@pytest.mark.parametrize("t", [2, 3])
def test_each_smoke_iteration_moves_the_weights(smoke_run, t):
    before, after = _weights(smoke_run / f"iteration_{t - 1}" / "model"), _weights(smoke_run / f"iteration_{t}" / "model")
    assert sorted(before) == sorted(after)
    update = sum(((after[k] - before[k]) ** 2).sum() for k in before).sqrt().item()
    norm = sum((w ** 2).sum() for w in before.values()).sqrt().item()
    assert update / norm > MIN_RELATIVE_UPDATE, f"M{t} - M{t - 1}: {update:.3g} of a {norm:.3g} norm"


@pytest.mark.parametrize("t", [2, 3])
def test_each_smoke_iteration_raises_its_own_pairs_margin(smoke_run, t):
    """M(t) prefers the chosen answers of the pairs it was trained on more than M(t-1) did."""
    pairs = [json.loads(line) for line in (smoke_run / f"iteration_{t}" / "pairs.jsonl").read_text().splitlines()]
    assert pairs
    rise = (_mean_margin(smoke_run / f"iteration_{t}" / "model", pairs)
            - _mean_margin(smoke_run / f"iteration_{t - 1}" / "model", pairs))
    assert rise > MIN_MARGIN_RISE, f"M{t}'s margin on its {len(pairs)} pairs rose by {rise:.4f} nats over M{t - 1}'s"
