"""Log-probs of labelled tokens without the batch's vocabulary logits (training/label_logps.py): the same
values and gradients as the full projection, on every architecture, with and without a shared prefix."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from srlm_exp.chat import chat_example
from srlm_exp.models.heads import decoder_of, output_head, plain_projection_problem
from srlm_exp.models.loading import load_model, load_tokenizer
from srlm_exp.training.batching import collate_examples
from srlm_exp.training.label_logps import chunked_logps
from srlm_exp.training.ppo import token_logps_and_values
from srlm_exp.training.shared_batches import label_logps
from srlm_exp.world import random_model
from srlm_exp.world.grader import response_with_score
from srlm_exp.world.tasks import sample_task

ARCHS = list(random_model.ARCHITECTURES)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for arch in ARCHS:
        path = random_model.save_random_model(arch, random_model.world_texts(), tmp_path_factory.mktemp(arch) / "m",
                                             random_model.Shape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2),
                                             init_range=0.02)
        tok = load_tokenizer(path)
        out[arch] = (load_model(path, tok).eval(), tok)
    return out


def _batch(tok, n: int = 4, seed: int = 0):
    rng = random.Random(seed)
    examples = []
    for k in range(n):
        task = sample_task(rng)
        examples.append(chat_example(tok, task.instruction, response_with_score(task, k % 6, rng), 256))
    return collate_examples(examples, tok.pad_token_id)  # rows of different lengths: padding included


def _full_reference(model, batch) -> torch.Tensor:
    """Every position projected by the model's own forward, log-softmax, the labelled ones gathered."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    return F.log_softmax(logits, -1)[keep].gather(-1, labels[keep][:, None]).squeeze(-1)


def _grads(model, loss_fn) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss_fn().backward()
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return out


@pytest.mark.parametrize("chunk", [1, 7, 4096])  # one position per chunk, a ragged last chunk, one chunk in all
def test_chunked_logps_equal_the_full_log_softmax_in_value_and_gradient(chunk):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=True)
    hidden = torch.randn(23, 16, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    full = F.log_softmax(head(hidden), -1).gather(-1, targets[:, None]).squeeze(-1)
    weights = torch.randn(23)
    g_full = torch.autograd.grad((full * weights).sum(), [hidden, head.weight, head.bias])
    chunked = chunked_logps(head, hidden, targets, chunk=chunk)
    g_chunked = torch.autograd.grad((chunked * weights).sum(), [hidden, head.weight, head.bias])
    torch.testing.assert_close(chunked, full, atol=1e-6, rtol=1e-6)
    for a, b in zip(g_chunked, g_full):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_chunked_logps_keep_no_chunk_logits_for_backward():
    """Checkpointed chunks: what autograd keeps is the hidden states, not [chunk, vocab] logits."""
    head = torch.nn.Linear(8, 10_000, bias=False)
    hidden = torch.randn(64, 8, requires_grad=True)
    targets = torch.randint(0, 10_000, (64,))
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        chunked_logps(head, hidden, targets, chunk=16).sum()
    assert saved and max(saved) < 16 * 10_000  # no chunk's logits (16 x 10,000) are saved


@pytest.mark.parametrize("arch", ARCHS)
def test_label_logps_equal_the_models_own_logits_in_value_and_gradient(models, arch):
    model, tok = models[arch]
    assert plain_projection_problem(model) is None
    batch = _batch(tok)
    mine, rows = label_logps(model, batch)
    torch.testing.assert_close(mine, _full_reference(model, batch), atol=1e-5, rtol=1e-5)
    assert rows.tolist() == sorted(rows.tolist())
    ga = _grads(model, lambda: -label_logps(model, batch)[0].mean())
    gb = _grads(model, lambda: model(**batch).loss)  # Hugging Face's own causal-LM loss
    assert ga.keys() == gb.keys() and ga
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=1e-5, rtol=0)


def test_the_decoder_and_head_are_the_models_own_forward(models):
    model, tok = models["llama"]
    batch = _batch(tok)
    with torch.no_grad():
        hidden = decoder_of(model)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    torch.testing.assert_close(output_head(model)(hidden), out.logits)
    torch.testing.assert_close(hidden, out.hidden_states[-1])  # PPO's value head reads the same states


def test_a_model_with_transformed_logits_is_projected_by_its_own_forward(models, monkeypatch):
    model, tok = models["llama"]
    batch = _batch(tok)
    expected = _full_reference(model, batch)
    monkeypatch.setattr(model.config, "final_logit_softcapping", 30.0, raising=False)
    assert "final_logit_softcapping" in plain_projection_problem(model)
    torch.testing.assert_close(label_logps(model, batch)[0], expected, atol=1e-5, rtol=1e-5)


def test_ppo_response_logps_equal_the_full_projection(models):
    model, tok = models["llama"]
    batch = _batch(tok)
    with torch.no_grad():
        per_token, _ = token_logps_and_values(model, None, batch)
        reference = _full_reference(model, batch)
    mask = torch.zeros_like(batch["labels"], dtype=torch.bool)
    mask[:, 1:] = batch["labels"][:, 1:] != -100
    torch.testing.assert_close(per_token[mask], reference, atol=1e-5, rtol=1e-5)
    assert per_token[~mask].abs().max() == 0
