"""Reading a shared prefix once gives what reading every full sequence gives: the same greedy tokens, the
same first-step logits, the same training loss and gradients — for Llama, Qwen2 and GPT-2 — and the
smoke loop answers alike with the option on and off where the model is the same."""
from __future__ import annotations

import json
import logging
import random

import pytest
import torch

from srlm_exp.chat import chat_example, prompt_ids
from srlm_exp.evaluation.policy import policy_responses
from srlm_exp.inference.sampler import Sampling, common_prefix_length, sample
from srlm_exp.judging.judge import Judge
from srlm_exp.models import shared_prefix as sp
from srlm_exp.models.loading import load_model, load_tokenizer
from srlm_exp.training.batching import collate_examples
from srlm_exp.training.dpo import pair_batches, policy_logps
from srlm_exp.training.losses import preference_loss
from srlm_exp.training.shared_batches import causal_lm_loss, collate_with_prefix, shared_prefix, without_prefix
from srlm_exp.world import random_model
from srlm_exp.world.grader import response_with_score
from srlm_exp.world.judge_prompt import PAPER_JUDGE_PROMPT
from srlm_exp.world.tasks import sample_task

ARCHS = list(random_model.ARCHITECTURES)


def _random_models(tmp_path_factory, init_range: float) -> dict:
    texts = random_model.world_texts()
    out = {}
    for arch in ARCHS:
        path = random_model.save_random_model(arch, texts, tmp_path_factory.mktemp(arch) / "m",
                                             random_model.Shape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2),
                                             init_range=init_range)
        tok = load_tokenizer(path)
        out[arch] = (load_model(path, tok).eval(), tok)  # eval: no dropout, so both paths compute the same function
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small random model of each architecture whose greedy samples are varied text (init 0.2)."""
    return _random_models(tmp_path_factory, random_model.INIT_RANGE)


@pytest.fixture(scope="module")
def calm_models(tmp_path_factory):
    """The same shapes at the usual init 0.02: logits of order 1, so an absolute tolerance means something."""
    return _random_models(tmp_path_factory, 0.02)


@pytest.fixture(autouse=True)
def shared_prefix_on():
    sp.use_shared_prefix(True)
    yield
    sp.use_shared_prefix(True)


def _both(fn):
    """fn() with the shared prefix, then with the plain path."""
    sp.use_shared_prefix(True)
    shared = fn()
    sp.use_shared_prefix(False)
    plain = fn()
    sp.use_shared_prefix(True)
    return shared, plain


def _tasks(n, seed=0):
    rng = random.Random(seed)
    return [sample_task(rng).instruction for _ in range(n)], rng


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_judgments_and_eval_responses_are_token_identical(models, arch):
    model, tok = models[arch]
    instructions, rng = _tasks(5)
    candidates = [[f"The answer is {rng.randint(0, 99)}.", "I do not know."] for _ in instructions]
    judge = Judge("additive5", PAPER_JUDGE_PROMPT, num_judgments=2, temperature=0.0, max_new_tokens=10)
    shared, plain = _both(lambda: judge.judge(model, tok, instructions, candidates, batch_size=4))
    assert [[j.texts for j in js] for js in shared] == [[j.texts for j in js] for js in plain]
    assert any(t for js in plain for j in js for t in j.texts)  # not trivially empty
    shared, plain = _both(lambda: policy_responses(model, tok, instructions, Sampling(max_new_tokens=10), batch_size=3))
    assert shared == plain


@pytest.mark.parametrize("arch", ARCHS)
def test_first_step_logits_of_a_judgment_match(calm_models, arch):
    model, tok = calm_models[arch]
    instructions, rng = _tasks(3)
    prompts = [prompt_ids(tok, PAPER_JUDGE_PROMPT.replace("<INSTRUCTION_HERE>", i).replace("<RESPONSE_HERE>", "x " * k))
               for k, i in enumerate(instructions)]
    P = common_prefix_length(prompts)
    assert P > 300  # the rubric before the instruction
    with torch.no_grad():
        _, rubric = sp.forward(model, torch.tensor([prompts[0][:P]]), record=True)
        ctx = [p[P:] for p in prompts]
        width = max(map(len, ctx))
        ids = torch.tensor([[tok.pad_token_id] * (width - len(c)) + c for c in ctx])  # left-padded, as generation does
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in ctx]).bool()
        shared, _ = sp.forward(model, ids, mask, prefixes=[rubric])
        for k, p in enumerate(prompts):
            full = model(input_ids=torch.tensor([p])).logits[0, -1]
            assert torch.allclose(shared[k, -1], full, atol=1e-5, rtol=0), (full - shared[k, -1]).abs().max()


def _grads(model, loss_fn):
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(a, b):
    (la, ga), (lb, gb) = a, b
    assert torch.allclose(la, lb, atol=1e-5, rtol=0), (la, lb)
    assert ga.keys() == gb.keys() and ga
    for name in ga:
        assert torch.allclose(ga[name], gb[name], atol=1e-5, rtol=0), (name, (ga[name] - gb[name]).abs().max())


@pytest.mark.parametrize("arch", ARCHS)
def test_sft_loss_and_gradients_match_on_a_mixed_padded_batch(calm_models, arch):
    model, tok = calm_models[arch]
    instructions, rng = _tasks(6, seed=1)
    examples = []
    for k, instruction in enumerate(instructions):
        if k % 3 == 0:  # an ordinary (IFT) row among the judge rows
            examples.append(chat_example(tok, instruction, "The answer is a b.", 900))
        else:
            judge_prompt = PAPER_JUDGE_PROMPT.replace("<INSTRUCTION_HERE>", instruction).replace("<RESPONSE_HERE>", "r " * k)
            examples.append(chat_example(tok, judge_prompt, f"Fine. Score: {k % 6}", 900))
    prefix = shared_prefix(examples[1:3] + examples[4:])
    batch = collate_with_prefix(examples, tok.pad_token_id, prefix)
    assert batch["uses_prefix"].tolist() == [False, True, True, False, True, True]
    assert len(set(map(len, (e.input_ids for e in examples)))) > 1  # right padding in play
    plain = collate_examples(examples, tok.pad_token_id)
    _assert_same(_grads(model, lambda: causal_lm_loss(model, batch)),
                 _grads(model, lambda: model(**plain).loss))  # Hugging Face's own loss on the full rows
    # Where the prefix cannot be shared (FSDP), the batch becomes the full rows again.
    back = without_prefix(batch, tok.pad_token_id)
    assert all(torch.equal(back[k], plain[k]) for k in ("input_ids", "labels", "attention_mask"))


@pytest.mark.parametrize("arch", ARCHS)
def test_dpo_loss_and_gradients_match_with_shared_prompts(calm_models, arch):
    model, tok = calm_models[arch]
    instructions, rng = _tasks(3, seed=2)
    items = []
    for k, instruction in enumerate(instructions):
        task = sample_task(rng)
        instruction = instruction + " x" * k  # prompts of different lengths: left-padded prefixes
        items.append({"chosen": chat_example(tok, instruction, response_with_score(task, 5, rng), 512),
                      "rejected": chat_example(tok, instruction, response_with_score(task, k, rng), 512)})
    for it in items:
        it["ref_chosen"], it["ref_rejected"] = -20.0, -25.0

    def dpo_loss(shared: bool):
        batch = pair_batches(items, tok.pad_token_id, shared)
        logps = policy_logps(model, batch, "sigmoid")
        n = len(items)
        return preference_loss(logps[:n], logps[n:], batch["ref_logps"][:n], batch["ref_logps"][n:])[0].mean()

    _assert_same(_grads(model, lambda: dpo_loss(True)), _grads(model, lambda: dpo_loss(False)))
    # Full rows again (for FSDP): chosen_0, rejected_0, chosen_1, ... of the plain batch's sequences.
    back, plain = (without_prefix(pair_batches(items, tok.pad_token_id, True), tok.pad_token_id),
                   pair_batches(items, tok.pad_token_id))
    n = len(items)
    order = [i for k in range(n) for i in (k, n + k)]
    for key in ("input_ids", "labels"):
        width = back[key].shape[1]
        assert torch.equal(back[key], plain[key][order][:, :width]) and width == plain[key].shape[1]


def test_a_model_outside_the_attention_interface_takes_the_plain_path_and_says_so(models, caplog, monkeypatch):
    model, tok = models["llama"]
    monkeypatch.setattr(type(model), "_supports_attention_backend", False)
    monkeypatch.setattr("srlm_exp.inference.sampler.forward", lambda *a, **k: pytest.fail("the shared path ran"))
    sp._Switch.said.clear()
    prompts = [prompt_ids(tok, i) for i in _tasks(3)[0]]
    with caplog.at_level(logging.INFO, logger="srlm_exp.models.shared_prefix"):
        out = sample(model, tok, prompts, Sampling(max_new_tokens=4), n=2)
        sample(model, tok, prompts, Sampling(max_new_tokens=4), n=2)
    assert len(out) == 3 and all(len(o) == 2 for o in out)
    said = [r.message for r in caplog.records if "plain path" in r.message]
    assert len(said) == 1 and "attention interface" in said[0]


def test_the_option_forces_the_plain_path(models, monkeypatch):
    model, tok = models["qwen2"]
    sp.use_shared_prefix(False)
    monkeypatch.setattr("srlm_exp.inference.sampler.forward", lambda *a, **k: pytest.fail("the shared path ran"))
    assert len(sample(model, tok, [prompt_ids(tok, "Add 2 and 3.")], Sampling(max_new_tokens=3), n=3)[0]) == 3


def _update(job, t: int) -> dict[str, torch.Tensor]:
    """M(t) - M(t-1) of a job, per tensor, in fp64."""
    from safetensors.torch import load_file

    before, after = (load_file(str(job / f"iteration_{k}" / "model" / "model.safetensors")) for k in (t - 1, t))
    return {k: after[k].double() - before[k].double() for k in before}


def test_from_the_same_m1_the_option_off_loop_makes_the_same_aift_data_and_the_same_update(smoke_run, tmp_path):
    """The option changes how AIFT(M1) is generated and how M2 is trained, so the option-off loop starts from
    the smoke job's M1 (`srlm_exp.branch`: the same weights) and must make the same candidates, judgments and
    pairs token for token, and the same update M2 - M1 within a tolerance far below its size (measured: the
    paths' updates differ by 3e-5 of the update's norm, 4e-6 at most per weight, where the update reaches
    1.5e-3). A comparison from M0 cannot tell: the smoke's 200 SFT steps at lr 1e-2 amplify the paths' float
    rounding until M1's greedy answers differ (measured: 4 of 8). The option-off loop then runs on to M3."""
    from conftest import REPRODUCIBLE_CPU, run_job
    from srlm_exp.branch import main as branch

    job = tmp_path / "job"
    assert branch([str(smoke_run), str(job)]) == 0
    run_job(["debug=smoke", "logger=none", "shared_prefix=false", f"hydra.run.dir={job}", "resume_anyway=true"],
            tmp_path / "log", env={**REPRODUCIBLE_CPU, "SRLM_EXP_CACHE": str(tmp_path / "cache")})
    for rel in ["iteration_2/candidates.jsonl", "iteration_2/pairs.jsonl"]:
        assert (job / rel).read_bytes() == (smoke_run / rel).read_bytes(), rel
    plain, shared = _update(job, 2), _update(smoke_run, 2)
    size = sum((u ** 2).sum() for u in shared.values()).sqrt().item()
    gap = sum(((plain[k] - shared[k]) ** 2).sum() for k in shared).sqrt().item()
    assert size > 0.05, size  # the update is there to compare (smoke: ~0.28)
    assert gap < 1e-3 * size, (gap, size)
    assert max((plain[k] - shared[k]).abs().max().item() for k in shared) < 2e-5
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "finished" and all(summary["iterations"][t]["pairs"]["n"] > 0 for t in (2, 3))
