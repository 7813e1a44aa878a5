"""How far a loop's training moved a model: the weights' update norm between two saved models, and the mean
margin log p(chosen) - log p(rejected) a saved model gives a list of pairs, from its full logits (an
independent computation: not the trainer's chunked log-probs). Used by the smoke movement tests (issue 40)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

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
