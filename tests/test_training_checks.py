"""The trainers' numbers against values computed independently of the code under test (issue 40): the
reference log-probs DPO trains against, the DPO losses (IPO on per-token averages, DPO + NLL) from the
model's full logits, and the learning-rate schedule against transformers' own and hand numbers, alone and
inside a real Lightning fit."""
from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from conftest import lrs_per_step
from srlm_exp.chat import chat_example
from srlm_exp.models.loading import load_model, load_tokenizer
from srlm_exp.training.base import PolicyModule
from srlm_exp.training.dpo import DPOModule, compute_reference_logps, pair_batches
from srlm_exp.training.fit import make_trainer
from srlm_exp.training.optim import adamw_with_cosine
from srlm_exp.world import random_model
from srlm_exp.world.grader import response_with_score
from srlm_exp.world.tasks import sample_task

BETA = 0.1


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    shape = random_model.Shape(hidden=32, intermediate=64, layers=1, heads=2, kv_heads=2)
    path = random_model.save_random_model("llama", random_model.world_texts(), tmp_path_factory.mktemp("policy") / "m",
                                          shape, init_range=0.2)  # not flat: log-probs differ from token to token
    tok = load_tokenizer(path)
    return load_model(path, tok).eval(), tok


@pytest.fixture(scope="module")
def items(policy):
    """Pairs of different prompt and response lengths (padding and, per pair, a different prompt)."""
    _, tok = policy
    rng = random.Random(3)
    out = []
    for k in range(5):
        task = sample_task(rng)
        out.append({"instruction": task.instruction,
                    "chosen": chat_example(tok, task.instruction, response_with_score(task, 5, rng), 512),
                    "rejected": chat_example(tok, task.instruction, response_with_score(task, k % 3, rng), 512)})
    return out


@torch.no_grad()
def full_logits_logp(model, example) -> tuple[float, int]:
    """(sum of the response tokens' log-probs, their number), from the unpadded sequence's full logits in fp64."""
    labels = torch.tensor(example.labels[1:])
    logits = model(input_ids=torch.tensor([example.input_ids])).logits[0, :-1].double()
    keep = labels != -100
    return logits.log_softmax(-1)[keep].gather(-1, labels[keep][:, None]).sum().item(), int(keep.sum())


# --- the reference log-probs ----------------------------------------------------------------------------

@pytest.mark.parametrize("shared_prompts", [False, True], ids=["plain", "shared_prompts"])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_reference_logps_equal_the_full_logits_ones(policy, items, loss_type, shared_prompts):
    """Sums for sigmoid, per-token averages for IPO; in batches of 2, so that one batch is partial."""
    model, tok = policy
    got = [{"chosen": i["chosen"], "rejected": i["rejected"]} for i in items]
    compute_reference_logps(model, got, tok.pad_token_id, batch_size=2, loss_type=loss_type, shared_prompts=shared_prompts)
    for g, i in zip(got, items):
        for side in ("chosen", "rejected"):
            total, n = full_logits_logp(model, i[side])
            expected = total / n if loss_type == "ipo" else total
            assert g[f"ref_{side}"] == pytest.approx(expected, abs=1e-4, rel=1e-5), side
    # the check can tell the two forms apart: responses are several tokens long
    assert all(full_logits_logp(model, i["chosen"])[1] > 2 for i in items)


# --- the losses on independent log-probs ------------------------------------------------------------------

def _hand_loss(model, items, loss_type: str, refs: list[tuple[float, float]], nll_weight: float = 0.0) -> float:
    """The DPO-family loss of the batch from full-logits log-probs: IPO on per-token averages (the IPO
    paper's form, TRL's), sigmoid and hinge on sums; plus nll_weight x the chosen responses' mean per-token NLL."""
    losses, nlls = [], []
    for i, (ref_c, ref_r) in zip(items, refs):
        (sc, nc), (sr, nr) = full_logits_logp(model, i["chosen"]), full_logits_logp(model, i["rejected"])
        pc, pr = (sc / nc, sr / nr) if loss_type == "ipo" else (sc, sr)
        logits = (pc - pr) - (ref_c - ref_r)
        losses.append({"sigmoid": math.log1p(math.exp(-BETA * logits)),
                       "ipo": (logits - 1 / (2 * BETA)) ** 2,
                       "hinge": max(0.0, 1 - BETA * logits)}[loss_type])
        nlls.append(-sc / nc)
    return sum(losses) / len(losses) + nll_weight * sum(nlls) / len(nlls)


@pytest.mark.parametrize("shared_prompts", [False, True], ids=["plain", "shared_prompts"])
@pytest.mark.parametrize("loss_type,nll_weight", [("sigmoid", 0.0), ("ipo", 0.0), ("hinge", 0.0), ("sigmoid", 0.5),
                                                  ("ipo", 0.5)])
def test_the_dpo_loss_equals_the_hand_computed_one(policy, items, loss_type, nll_weight, shared_prompts):
    """DPOModule's loss on a batch against the formula on full-logits log-probs."""
    model, tok = policy
    # Per-token averages for IPO, sums otherwise, near the policy's own (~ -40 to -70 per response here), so
    # that the hinge is not clamped at 0 for most pairs.
    refs = [(-1.5 - 0.1 * k, -1.0) if loss_type == "ipo" else (-20.0 - k, -20.0) for k in range(len(items))]
    batch = pair_batches([{"chosen": i["chosen"], "rejected": i["rejected"], "ref_chosen": c, "ref_rejected": r}
                          for i, (c, r) in zip(items, refs)], tok.pad_token_id, shared_prompts)
    with torch.no_grad():
        got = DPOModule(model, beta=BETA, loss_type=loss_type, nll_weight=nll_weight).loss(batch)[0].item()
    expected = _hand_loss(model, items, loss_type, refs, nll_weight)
    assert expected > 0.05  # not a loss at its clamp (the hinge's 0), where any policy log-probs would agree
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-5)
    if loss_type == "ipo" and nll_weight == 0:  # IPO on sums (the wrong form) would be far off
        sums = [(full_logits_logp(model, i["chosen"])[0], full_logits_logp(model, i["rejected"])[0]) for i in items]
        on_sums = sum(((c - r) - (rc - rr) - 1 / (2 * BETA)) ** 2 for (c, r), (rc, rr) in zip(sums, refs)) / len(items)
        assert abs(on_sums - expected) > 1.0


# --- the learning-rate schedule -------------------------------------------------------------------------

def _schedule(total: int, lr: float, min_lr: float, warmup: int) -> list[float]:
    """The learning rate of each optimizer step under adamw_with_cosine, for a run of `total` steps."""
    module = SimpleNamespace(trainer=SimpleNamespace(estimated_stepping_batches=total))
    out = adamw_with_cosine(module, [torch.nn.Parameter(torch.zeros(1))], lr, min_lr, warmup, 0.0)
    return lrs_per_step(out["optimizer"], out["lr_scheduler"]["scheduler"], total)


def test_warm_up_then_cosine_to_the_floor_on_hand_numbers():
    # lr 1, floor 0.1, 3 warm-up steps of 11: (s + 1) / 4, then 0.1 + 0.9 * (1 + cos(pi * (s - 3) / 8)) / 2
    lrs = _schedule(11, 1.0, 0.1, 3)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[7] == pytest.approx(0.55)  # half way through the decay: half way to the floor
    assert lrs[10] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 7 / 8)) / 2)
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:])) and min(lrs) > 0.1


def test_after_the_warm_up_the_decay_is_transformers_cosine_with_a_min_lr_floor():
    for total, warmup, lr, min_lr in [(11, 3, 1.0, 0.1), (40, 5, 1e-5, 1e-6), (7, 0, 2e-4, 0.0)]:
        ours = _schedule(total, lr, min_lr, warmup)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
        ref = get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total, min_lr_rate=min_lr / lr)
        theirs = []
        for _ in range(total):
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            ref.step()
        # transformers warms up from 0 (step / warmup); ours from lr / (warmup + 1), so no step is wasted at 0
        assert ours[warmup:] == pytest.approx(theirs[warmup:], rel=1e-9, abs=1e-15), (total, warmup)
        assert ours[:warmup] == pytest.approx([lr * (s + 1) / (warmup + 1) for s in range(warmup)])


def test_a_warm_up_longer_than_the_run_is_cut_to_leave_one_full_step():
    # 3 steps with train=dpo's 5 warm-up steps (the smoke budget before issue 40): 1/3, 2/3, then the full lr
    assert _schedule(3, 1.0, 0.1, 5) == pytest.approx([1 / 3, 2 / 3, 1.0])


class _LinearPolicy(PolicyModule):
    """The shared optimizer and schedule on a one-weight model; records the learning rate of each step."""

    def __init__(self, lr: float, min_lr: float, warmup_steps: int):
        super().__init__(torch.nn.Linear(1, 1), lr, min_lr, warmup_steps, weight_decay=0.0, log_prefix="linear")
        self.seen: list[float] = []

    def rows(self, batch):
        return batch.shape[0]

    def loss(self, batch):
        self.seen.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return self.model(batch).pow(2).mean(), {}


@pytest.mark.parametrize("epochs,max_steps", [(3, -1), (10, 7)], ids=["epochs", "max_steps"])
def test_a_real_fit_steps_the_schedule_once_per_optimizer_step_over_the_runs_length(tmp_path, epochs, max_steps):
    """The schedule spans the fit's real length (4 batches x 3 epochs = 12, or max_steps = 7), stepped per batch."""
    module = _LinearPolicy(lr=1.0, min_lr=0.1, warmup_steps=2)
    trainer = make_trainer({"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}, max_epochs=epochs,
                           max_steps=max_steps, default_root_dir=str(tmp_path))
    trainer.fit(module, DataLoader(torch.ones(8, 1), batch_size=2))
    total = 12 if max_steps < 0 else max_steps
    assert trainer.global_step == total
    assert module.seen == pytest.approx(_schedule(total, 1.0, 0.1, 2))
    assert module.seen[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
