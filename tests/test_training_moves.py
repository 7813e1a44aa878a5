"""Every trainer of M(t >= 2) moves the model toward its signal (issue 40): dpo (sigmoid, ipo, hinge), dpo_nll,
sft (top candidate), rft (rejection sampling), reinforce (RLOO), ppo.

Each stage is run the way the loop runs it: `Stage.fit(model, StageInputs)` reads the iteration's
pairs.jsonl / candidates.jsonl, builds its module and fits it through a Lightning Trainer made by
`training.fit.make_trainer` from conf/trainer/default.yaml. The data is designed so that the direction
is known: for every prompt one answer is always preferred (chosen in every pair, the top-scored
candidate, the high reward). The model is a tiny random Llama with the world's tokenizer, and the
log-probs that judge the movement are computed here, from the model's full logits, not by the code
under test.

Each test fails when the optimizer step is skipped (nothing moves) and when the loss's sign is flipped
(the margin falls): see the issue's note for the mutation runs.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from srlm_exp.chat import chat_example
from srlm_exp.models.loading import load_model, load_tokenizer
from srlm_exp.records import CandidateJudgments, JudgedCandidate, PromptCandidates
from srlm_exp.training.dpo import DPOStage
from srlm_exp.training.fit import make_trainer
from srlm_exp.training.ppo import PPOStage
from srlm_exp.training.reinforce import ReinforceStage
from srlm_exp.training.seed_sft import SeedSFTStage
from srlm_exp.training.sft import RejectionSamplingSFTStage, TopCandidateSFTStage
from srlm_exp.training.stage import StageInputs
from srlm_exp.world import random_model
from srlm_exp.world.grader import response_with_score
from srlm_exp.world.tasks import sample_task

REPO = Path(__file__).resolve().parent.parent
N_PROMPTS = 8
# Float noise on a response's summed log-prob is ~1e-5 nats here (fp32, ~10 tokens). Measured at FIT: the
# margin rose by 3.5 (SFT) to 6.6 (RLOO) nats, the chosen answer's log-prob under DPO + NLL and SFT by 6.3
# and 6.4; with the optimizer step skipped every measure moved by 0.0, with the loss's sign flipped the
# margins fell by 2.8 to 6.9 nats.
MOVED = 0.5
# A 1-layer Llama at init range 0.02 learns from a step this size in a few dozen steps (a pretrained
# model's 1e-5 would need hundreds); the schedule itself is the stages' own (warm-up, cosine, floor).
FIT = dict(lr=3e-3, min_lr=3e-4, warmup_steps=2, epochs=4, batch_size=4, min_examples=1)
# The loop's Trainer settings (clip, precision), on the CPU and quiet.
TRAINER = {**OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "trainer" / "default.yaml")),
           "accelerator": "cpu", "enable_progress_bar": False, "log_every_n_steps": 1}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::pytorch_lightning.utilities.warnings.PossibleUserWarning")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    shape = random_model.Shape(hidden=32, intermediate=64, layers=1, heads=2, kv_heads=2)
    return random_model.save_random_model("llama", random_model.world_texts(), tmp_path_factory.mktemp("policy") / "m",
                                          shape, init_range=0.02)


@pytest.fixture(scope="module")
def tasks() -> list[tuple[str, str, str]]:
    """(instruction, a correct answer, a wrong answer) of N_PROMPTS world tasks."""
    rng = random.Random(0)
    out = []
    for _ in range(N_PROMPTS):
        task = sample_task(rng)
        out.append((task.instruction, response_with_score(task, 5, rng), response_with_score(task, 0, rng)))
    return out


def _fresh(policy_dir: Path):
    tok = load_tokenizer(policy_dir)
    torch.manual_seed(0)
    return load_model(policy_dir, tok), tok


@torch.no_grad()
def _logp(model, tok, instruction: str, response: str) -> float:
    """log p(response | instruction) summed over the response's labelled tokens, from the full logits."""
    example = chat_example(tok, instruction, response, 1024)
    ids, labels = torch.tensor([example.input_ids]), torch.tensor([example.labels])
    was_training = model.training
    model.eval()
    logits = model(input_ids=ids).logits[0, :-1].double()
    model.train(was_training)
    targets, mask = labels[0, 1:], labels[0, 1:] != -100
    return (logits.log_softmax(-1)[mask].gather(-1, targets[mask][:, None])).sum().item()


def _measure(model, tok, tasks) -> dict[str, float]:
    """Mean over prompts of the preferred answer's log-prob, the other's, and their margin."""
    good = [_logp(model, tok, i, g) for i, g, _ in tasks]
    bad = [_logp(model, tok, i, b) for i, _, b in tasks]
    return {"good": sum(good) / len(good), "bad": sum(bad) / len(bad),
            "margin": sum(g - b for g, b in zip(good, bad)) / len(good)}


def _inputs(tmp_path: Path, tok) -> StageInputs:
    data_dir = tmp_path / "job" / "iteration_2"
    data_dir.mkdir(parents=True, exist_ok=True)

    def run_fit(module, loader, epochs: int, max_steps: int):
        trainer = make_trainer(TRAINER, max_epochs=epochs, max_steps=max_steps, default_root_dir=str(tmp_path))
        trainer.fit(module, loader)
        assert trainer.global_step > 0  # the fit took optimizer steps
        return trainer

    def no_other_model(k: int):
        raise AssertionError(f"M{k} asked for: at t = 2 the reference is the model being trained")

    return StageInputs(tokenizer=tok, iteration=2, seed=0, data_dir=data_dir, seed_data=None, judge=None,
                       run_fit=run_fit, load_model=no_other_model, release=lambda m: None)


def _write_pairs(data_dir: Path, tasks) -> None:
    rows = [{"prompt_id": k, "instruction": i, "chosen": g, "rejected": b, "chosen_score": 5.0, "rejected_score": 0.0,
             "chosen_length": len(g), "rejected_length": len(b)} for k, (i, g, b) in enumerate(tasks)]
    (data_dir / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _write_candidates(data_dir: Path, tasks) -> None:
    """Two judged candidates per prompt: the correct answer scored 5 (twice), the wrong one 0 (twice)."""
    def cand(text, score):
        return JudgedCandidate(text, len(text.split()), CandidateJudgments([f"Score: {score}"] * 2, [float(score)] * 2))

    rows = [PromptCandidates(k, i, [cand(b, 0), cand(g, 5)]) for k, (i, g, b) in enumerate(tasks)]
    (data_dir / "candidates.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))


def _train(stage, policy_dir: Path, tasks, tmp_path: Path, write) -> tuple[dict, dict, dict]:
    model, tok = _fresh(policy_dir)
    inputs = _inputs(tmp_path, tok)
    write(inputs.data_dir, tasks)
    before = _measure(model, tok, tasks)
    trained = stage.fit(model, inputs)
    return before, _measure(model, tok, tasks), trained


# --- DPO: the chosen-minus-rejected margin rises ------------------------------------------------------

@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_raises_the_chosen_minus_rejected_margin(policy_dir, tasks, tmp_path, loss_type):
    stage = DPOStage(loss_type=loss_type, **FIT)
    before, after, trained = _train(stage, policy_dir, tasks, tmp_path, _write_pairs)
    assert trained["pairs"] == N_PROMPTS
    assert after["margin"] - before["margin"] > MOVED, (before, after)


def test_dpo_nll_raises_the_margin_and_the_chosen_likelihood(policy_dir, tasks, tmp_path):
    """train=dpo_nll: the NLL term keeps the chosen answer likely while the margin grows (plain DPO may
    push both down)."""
    conf = OmegaConf.load(REPO / "conf" / "train" / "dpo_nll.yaml")
    stage = DPOStage(nll_weight=conf.nll_weight, **FIT)
    before, after, _ = _train(stage, policy_dir, tasks, tmp_path, _write_pairs)
    assert after["margin"] - before["margin"] > MOVED, (before, after)
    assert after["good"] - before["good"] > MOVED, (before, after)


# --- SFT on the top candidate: the target's likelihood rises, more than the other's --------------------

def test_top_candidate_sft_raises_the_targets_likelihood(policy_dir, tasks, tmp_path):
    stage = TopCandidateSFTStage(**FIT)
    before, after, trained = _train(stage, policy_dir, tasks, tmp_path, _write_candidates)
    assert trained["examples"] == N_PROMPTS
    assert after["good"] - before["good"] > MOVED, (before, after)
    # The target is the top-scored candidate, not the first or the low one: it gains on the other.
    assert after["margin"] - before["margin"] > MOVED, (before, after)


def test_rejection_sampling_sft_raises_the_passing_answers_likelihood(policy_dir, tasks, tmp_path):
    """train=rft: only the candidate scored at least min_score (5) is a target; the one scored 0 is not."""
    stage = RejectionSamplingSFTStage(min_score=5.0, **FIT)
    before, after, trained = _train(stage, policy_dir, tasks, tmp_path, _write_candidates)
    assert trained["examples"] == N_PROMPTS and trained["prompts"] == N_PROMPTS
    assert after["good"] - before["good"] > MOVED, (before, after)
    assert after["margin"] - before["margin"] > MOVED, (before, after)


# --- RLOO and PPO: the high-reward answer gains on the low-reward one -----------------------------------

def test_reinforce_raises_the_high_reward_answers_probability(policy_dir, tasks, tmp_path):
    stage = ReinforceStage(**FIT)
    before, after, trained = _train(stage, policy_dir, tasks, tmp_path, _write_candidates)
    assert trained["rollouts"] == 2 * N_PROMPTS
    assert after["margin"] - before["margin"] > MOVED, (before, after)


def test_ppo_raises_the_high_reward_answers_probability(policy_dir, tasks, tmp_path):
    # PPO-ptx off: the LM term on IFT rows is another signal, and this test isolates the reward's.
    stage = PPOStage(ptx_coef=0.0, **FIT)
    before, after, trained = _train(stage, policy_dir, tasks, tmp_path, _write_candidates)
    assert trained["rollouts"] == 2 * N_PROMPTS
    assert after["margin"] - before["margin"] > MOVED, (before, after)
    head = torch.load(tmp_path / "job" / "iteration_2" / "value_head.pt")
    assert head["weight"].abs().sum() > 0  # the value head, zero at the start, learned too


# --- micro-batches: the same steps with a fraction of the activations ------------------------------------

def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class _SeedRows:
    """Seed data and judge for the seed SFT stage (M1): the tasks' correct answers as IFT rows, and EFT rows in a
    judge format whose shared rubric each batch forwards once (training/shared_batches.py)."""

    RUBRIC = "Review the answer below and score it from 0 to 5, one point for each part it gets right. " * 3

    def __init__(self, tasks):
        self.tasks = tasks

    def ift(self):
        return [{"instruction": i, "response": g} for i, g, _ in self.tasks]

    def eft_rows(self, seed_data):
        return [{"instruction": f"{self.RUBRIC}\nQuestion: {i}\nAnswer: {a}", "response": f"Score: {score}"}
                for i, g, b in self.tasks for a, score in ((g, 5), (b, 0))]


def _seed_rows(inputs: StageInputs, tasks) -> None:
    inputs.seed_data = inputs.judge = _SeedRows(tasks)


def _pairs(inputs: StageInputs, tasks) -> None:
    _write_pairs(inputs.data_dir, tasks)


def _candidates(inputs: StageInputs, tasks) -> None:
    _write_candidates(inputs.data_dir, tasks)


@pytest.mark.parametrize("make_stage,data", [
    (lambda **k: DPOStage(nll_weight=0.5, **k), _pairs),
    (lambda **k: TopCandidateSFTStage(**k), _candidates),
    (lambda **k: SeedSFTStage(**{n: v for n, v in k.items() if n != "min_examples"}), _seed_rows),
    (lambda **k: ReinforceStage(**k), _candidates),
    (lambda **k: PPOStage(ptx_coef=0.0, **k), _candidates),
], ids=["dpo_nll", "sft", "seed_sft", "reinforce", "ppo"])
def test_micro_batches_take_the_same_steps_as_whole_batches(policy_dir, tasks, tmp_path, make_stage, data):
    """train.micro_batch_size=3 on batches of 4 (micro-batches of 3 and 1 rows, each padded to its own
    longest): each micro-batch counts by its share of the batch (rows; label tokens for SFT and PPO, whose
    losses are per-token means), so the fit ends where whole batches end. Measured: the two fits' weights
    differ by 1e-7 to 6e-7 of the update (float summation order); micro-batches counted by rows in a per-token
    loss, or counted equally, end 3e-2 to 0.5 of the update away."""
    start = _weights(_fresh(policy_dir)[0])
    ends = []
    for micro in (None, 3):
        model, tok = _fresh(policy_dir)
        inputs = _inputs(tmp_path / f"micro_{micro}", tok)
        data(inputs, tasks)
        make_stage(micro_batch_size=micro, **FIT).fit(model, inputs)
        ends.append(_weights(model))
    update = (ends[0] - start).norm()
    assert update > 1e-2  # the fits trained
    assert (ends[1] - ends[0]).norm() < 1e-4 * update
