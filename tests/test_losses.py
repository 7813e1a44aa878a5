import math

import pytest
import torch
from torch import Tensor

from srlm_exp.training.losses import LOSS_TYPES, preference_loss, token_logps

# ---- sequence log-probs: the reference, by hand --------------------------------------


def sequence_logps(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """Sum of log-probs of the label tokens per sequence, shape (batch,): the textbook computation from full
    logits, the reference the trainers' `response_logps` (which projects only the positions that predict a
    label) is checked against below.

    logits: (batch, T, vocab); labels: (batch, T) aligned with the input ids. Position t's
    logits predict token t+1, so logits[:, :-1] are scored against labels[:, 1:]
    (forgetting the shift is a known public bug). Labels equal to `ignore_index` (prompt
    and padding) contribute nothing.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    # at least fp32: DPO compares small differences of big sums (keep fp64 if given)
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))
    labels = labels[:, 1:]
    mask = labels != ignore_index
    safe = labels.masked_fill(~mask, 0)  # any valid id; masked out below
    # gather - logsumexp avoids materialising a full log_softmax copy of the vocab axis
    per_token = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return (per_token * mask).sum(-1)


ROWS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [-1.0, 0.0, 3.0]]  # logits at positions 0, 1, 2


def log_softmax(row, k):
    return row[k] - math.log(sum(math.exp(v) for v in row))


def test_sequence_logps_shift_and_mask():
    ids = [0, 1, 2]
    logits = torch.tensor([ROWS, ROWS, ROWS])
    labels = torch.tensor([
        [-100, 1, 2],  # prompt = token 0, response = tokens 1, 2
        [-100, -100, 2],  # prompt = tokens 0, 1, response = token 2
        [-100, 1, -100],  # response = token 1, then padding
    ])
    got = sequence_logps(logits, labels)
    # position t predicts token t+1
    expected = [
        log_softmax(ROWS[0], 1) + log_softmax(ROWS[1], 2),
        log_softmax(ROWS[1], 2),
        log_softmax(ROWS[0], 1),
    ]
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx(expected, abs=1e-6)

    # the test would fail for the two public bugs:
    no_shift = log_softmax(ROWS[1], 1) + log_softmax(ROWS[2], 2)
    assert abs(no_shift - expected[0]) > 0.1
    prompt_counted = log_softmax(ROWS[0], ids[1]) + log_softmax(ROWS[1], ids[2])
    assert abs(prompt_counted - expected[1]) > 0.1


def test_sequence_logps_custom_ignore_index_and_shape_check():
    logits = torch.tensor([ROWS])
    got = sequence_logps(logits, torch.tensor([[0, 0, 2]]), ignore_index=0)
    assert got.item() == pytest.approx(log_softmax(ROWS[1], 2), abs=1e-6)
    with pytest.raises(ValueError):
        sequence_logps(logits, torch.tensor([[0, 1]]))


def test_sequence_logps_all_masked_is_zero():
    assert sequence_logps(torch.tensor([ROWS]), torch.full((1, 3), -100)).item() == 0.0


def test_sequence_logps_gradient():
    logits = torch.tensor([ROWS], requires_grad=True)
    sequence_logps(logits, torch.tensor([[-100, 1, 2]])).sum().backward()
    assert logits.grad is not None
    assert logits.grad[0, 2].abs().sum() == 0  # last position predicts nothing
    assert logits.grad[0, 0].abs().sum() > 0


# ---- preference_loss ---------------------------------------------------------------

PC, PR, RC, RR, BETA = -1.0, -3.0, -2.0, -2.0, 0.1
# logits = (-1 - -3) - (-2 - -2) = 2
HAND = {
    "sigmoid": -math.log(1 / (1 + math.exp(-BETA * 2))),  # -logsigmoid(0.2) = 0.598139...
    "ipo": (2 - 1 / (2 * BETA)) ** 2,  # (2 - 5)^2 = 9
    "hinge": max(0.0, 1 - BETA * 2),  # 0.8
}


def t(*v):
    return torch.tensor(v, dtype=torch.float64)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_preference_loss_by_hand(loss_type):
    losses, cr, rr = preference_loss(t(PC), t(PR), t(RC), t(RR), beta=BETA, loss_type=loss_type)
    assert losses.item() == pytest.approx(HAND[loss_type], rel=1e-9)
    assert cr.item() == pytest.approx(BETA * (PC - RC))  # 0.1
    assert rr.item() == pytest.approx(BETA * (PR - RR))  # -0.1


def test_hand_values_are_what_we_think():
    assert HAND["sigmoid"] == pytest.approx(0.5981388693, rel=1e-9)
    assert HAND["ipo"] == pytest.approx(9.0)
    assert HAND["hinge"] == pytest.approx(0.8)


def test_preference_loss_batch_and_hinge_clamp():
    # second example: logits = 20, beta*logits = 2 -> hinge 0
    losses, _, _ = preference_loss(t(-1, 10), t(-3, -10), t(-2, 0), t(-2, 0), beta=0.1, loss_type="hinge")
    assert losses.tolist() == pytest.approx([0.8, 0.0])


def test_default_is_sigmoid_beta_point_one():
    losses, _, _ = preference_loss(t(PC), t(PR), t(RC), t(RR))
    assert losses.item() == pytest.approx(HAND["sigmoid"])


def test_unknown_loss_type():
    with pytest.raises(ValueError, match="sigmoid, ipo, hinge"):
        preference_loss(t(0), t(0), t(0), t(0), loss_type="kto")


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gradient_flows_to_policy_not_rewards(loss_type):
    pc, pr = t(PC).requires_grad_(), t(PR).requires_grad_()
    losses, cr, rr = preference_loss(pc, pr, t(RC), t(RR), beta=BETA, loss_type=loss_type)
    assert not cr.requires_grad and not rr.requires_grad
    losses.sum().backward()
    # every loss here prefers a larger chosen / smaller rejected log-prob
    assert pc.grad.item() < 0 < pr.grad.item()


def test_end_to_end_gradient_through_sequence_logps():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, 0]])
    lp = sequence_logps(logits, labels)
    losses, _, _ = preference_loss(lp[:1], lp[1:], torch.zeros(1), torch.zeros(1))
    losses.sum().backward()
    assert logits.grad.abs().sum() > 0


def test_token_logps_dtypes():
    logits = torch.tensor(ROWS, dtype=torch.float64)
    targets = torch.tensor([1, 2, 0])
    assert token_logps(logits, targets).dtype == torch.float64
    assert token_logps(logits.to(torch.bfloat16), targets).dtype == torch.float32


# ---- DPO + NLL (train=dpo_nll) -----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    from srlm_exp.world import random_model
    from srlm_exp.models.loading import load_model, load_tokenizer
    path = random_model.save_random_model("llama", random_model.world_texts(), tmp_path_factory.mktemp("policy") / "m",
                                         random_model.Shape(hidden=32, intermediate=64, layers=1, heads=2, kv_heads=2),
                                         init_range=0.02)
    tok = load_tokenizer(path)
    return load_model(path, tok).eval(), tok


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])  # ipo averages log-probs over tokens, sigmoid sums them
def test_dpo_nll_adds_the_weighted_per_token_nll_of_the_chosen_responses(tiny_policy, loss_type):
    import random

    from srlm_exp.chat import chat_example
    from srlm_exp.training.dpo import DPOModule, pair_batches
    from srlm_exp.training.shared_batches import response_logps
    from srlm_exp.world.grader import response_with_score
    from srlm_exp.world.tasks import sample_task

    model, tok = tiny_policy
    rng = random.Random(0)
    items = []
    for k in range(3):
        task = sample_task(rng)
        items.append({"chosen": chat_example(tok, task.instruction, response_with_score(task, 5, rng), 256),
                      "rejected": chat_example(tok, task.instruction, response_with_score(task, k, rng), 256),
                      "ref_chosen": -20.0 - k, "ref_rejected": -25.0})
    batch = pair_batches(items, tok.pad_token_id)
    with torch.no_grad():
        plain = DPOModule(model, loss_type=loss_type).loss(batch)[0]
        with_nll = DPOModule(model, loss_type=loss_type, nll_weight=0.5).loss(batch)[0]
        sums, lengths = response_logps(model, batch)
    chosen_nll = -(sums[:3] / lengths[:3]).mean()  # per token, whatever the loss type's own length handling
    assert chosen_nll > 0 and lengths[:3].min() > 1
    assert with_nll.item() == pytest.approx(plain.item() + 0.5 * chosen_nll.item(), rel=1e-5)


def test_train_dpo_nll_is_dpo_plus_nll_at_ten_times_the_step():
    from pathlib import Path

    from omegaconf import OmegaConf
    conf = Path(__file__).resolve().parents[1] / "conf" / "train"
    dpo, nll = OmegaConf.load(conf / "dpo.yaml"), OmegaConf.load(conf / "dpo_nll.yaml")
    assert list(nll.defaults) == ["dpo", "_self_"] and dpo.nll_weight == 0
    assert nll.nll_weight == 1.0 and nll.lr == pytest.approx(10 * dpo.lr)


def test_the_trainers_response_logps_equal_the_full_logits_reference(tiny_policy):
    """What DPO, RLOO, PPO and the implicit reward train and score with (shift, prompt and padding masked)."""
    import random

    from srlm_exp.chat import chat_example
    from srlm_exp.training.batching import collate_examples
    from srlm_exp.training.shared_batches import response_logps
    from srlm_exp.world.grader import response_with_score
    from srlm_exp.world.tasks import sample_task

    model, tok = tiny_policy
    rng = random.Random(1)
    examples = []
    for k in range(4):
        task = sample_task(rng)
        examples.append(chat_example(tok, task.instruction, response_with_score(task, k, rng), 256))
    batch = collate_examples(examples, tok.pad_token_id)  # rows of different lengths: padding included
    with torch.no_grad():
        sums, lengths = response_logps(model, batch)
        reference = sequence_logps(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                   batch["labels"])
    torch.testing.assert_close(sums, reference, atol=1e-4, rtol=1e-5)
    assert lengths.tolist() == [sum(x != -100 for x in e.labels) for e in examples]
