"""Batched generation that reads only the new tokens.

Every generation in the project (prompts, candidates, judgments, evaluation) goes through `sample`:
prompts are batched (sorted by length to waste little padding), left-padded, stop at EOS, and the
budget counts new tokens only — a judge prompt alone is ~400 tokens, so a budget that counted the
prompt would leave nothing to generate.

Two paths give the same tokens (greedy) or the same distribution (sampled):
  * shared prefix (default): the prompts' longest common token prefix — the chat head and the judge's
    rubric, say — is forwarded once; each prompt is forwarded once however many continuations it gets
    (a candidate's K judgments, a prompt's N candidates), and decoding attends to the prefix without
    copying it per row (models/shared_prefix.py);
  * plain: Hugging Face `generate` on every full prompt, repeated per continuation. Used where the shared
    path cannot apply (said once in the log) and when `shared_prefix=false` forces it.
With `generation.backend=vllm` every call goes to vLLM's engine instead (inference/vllm_engine.py), which loads
the directory the model was loaded from or saved to; the same budgets, stop token and decoding apply.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import torch

from srlm_exp.chat import pad_batch
from srlm_exp.inference.backend import generation_settings
from srlm_exp.inference.vllm_engine import engine_for
from srlm_exp.models.checkpoints import directory_of
from srlm_exp.models.context import context_length
from srlm_exp.models.shared_prefix import RowCache, available, forward
from srlm_exp.inference.bars import progress_bar

class Completion(str):
    """A continuation's text that knows whether it ended: `finished` is False when it was cut off by the
    new-token budget (no end-of-sequence token within it). Everything that takes text takes it as it is;
    training reads `finished` so that a cut answer is never taught as a finished one (chat.chat_example)."""

    finished: bool

    def __new__(cls, text: str, finished: bool) -> "Completion":
        out = super().__new__(cls, text)
        out.finished = bool(finished)
        return out

    def __reduce__(self):  # pickled across ranks (distributed.split_map) with its flag
        return (Completion, (str(self), self.finished))


def ended(token_ids: Sequence[int], eos_id: int | None, pad_id: int | None, budget: int) -> bool:
    """Whether new tokens `token_ids` (right-padded with `pad_id`, or not padded) ended within `budget`: an
    end-of-sequence token among them, or fewer real tokens than the budget (a stop string ended them)."""
    ids = list(token_ids)
    if eos_id is not None and eos_id in ids:
        return True
    while ids and pad_id is not None and ids[-1] == pad_id:
        ids.pop()
    return len(ids) < budget


def finished_share(texts: Sequence[str]) -> float | None:
    """The share of `texts` that ended within their budget; None when none says (plain strings)."""
    flags = [t.finished for t in texts if isinstance(t, Completion)]
    return sum(flags) / len(flags) if flags else None


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 32
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0            # 0 = no top-k filtering (the paper samples with temperature and top-p only)


def seed_sampling(*key: object) -> None:
    """Start torch's random stream at a point fixed by `key` (a phase's name, the run's seed, ...), so that a
    sampled phase draws the same numbers whether the job ran straight through or was resumed, whatever ran
    before it. Evaluation keys leave out the iteration: M1 and M3 are then sampled with the same draws
    (common random numbers), so their difference is the models', not the draws'."""
    torch.manual_seed(zlib.crc32(":".join(map(str, key)).encode()))


def sample(model, tokenizer, prompts: Sequence[Sequence[int]], sampling: Sampling, n: int = 1, batch_size: int = 32,
           desc: str = "generate", show_progress: bool = True) -> list[list[Completion]]:
    """`n` continuations of every prompt (token-id lists): the decoded new text only, per prompt, each a
    Completion that says whether it ended within `sampling.max_new_tokens`."""
    if not prompts:
        return []
    _check_length(model, prompts, sampling, desc)
    settings = generation_settings()
    if settings.backend == "vllm":
        return _vllm_sample(model, tokenizer, prompts, sampling, n, desc, settings.vllm)
    if available(model, "generation"):
        return _shared_prefix_sample(model, tokenizer, prompts, sampling, n, batch_size, desc, show_progress)
    # Batches of whole prompts, as the shared path makes them: both paths then draw the same random numbers
    # for the same rows, so they sample the same texts (up to float rounding of the logits).
    flat = generate(model, tokenizer, [p for p in prompts for _ in range(n)], sampling, max(1, batch_size // n) * n, desc,
                    show_progress=show_progress)
    return [flat[k * n : (k + 1) * n] for k in range(len(prompts))]


def _check_length(model, prompts, sampling: Sampling, desc: str) -> None:
    max_pos = context_length(model.config)
    longest = max(len(p) for p in prompts)
    if max_pos is not None and longest + sampling.max_new_tokens > max_pos:
        raise ValueError(
            f"{desc}: a prompt of {longest} tokens + {sampling.max_new_tokens} new tokens exceeds the model's "
            f"{max_pos} positions; shorten the prompt or the new-token budget of this phase"
        )


def _vllm_sample(model, tokenizer, prompts: Sequence[Sequence[int]], sampling: Sampling, n: int, desc: str,
                 settings) -> list[list[Completion]]:
    directory = directory_of(model)
    if directory is None:
        raise RuntimeError(f"{desc}: generation.backend=vllm generates from a saved model directory, and this model has "
                           "none (it was built in memory, or trained since it was loaded); save it with "
                           "models.loading.save_model first, or set generation.backend=hf")
    engine = engine_for(directory, next(model.parameters()).dtype, settings, prompts, n, sampling.max_new_tokens)
    # One seed per continuation from torch's stream (started per phase by seed_sampling): reruns draw alike.
    seeds = torch.randint(0, 2**31 - 1, (len(prompts) * n,)).tolist() if sampling.temperature > 0 else None
    ids = engine.generate(prompts, sampling.max_new_tokens, sampling.temperature, sampling.top_p, sampling.top_k,
                          tokenizer.eos_token_id, n, seeds, desc)
    budget = sampling.max_new_tokens
    return [[Completion(t.strip(), ended(r, tokenizer.eos_token_id, None, budget))
             for t, r in zip(tokenizer.batch_decode(row, skip_special_tokens=True), row)] for row in ids]


# --- the plain path ------------------------------------------------------------------------------

@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    sampling: Sampling,
    batch_size: int = 32,
    desc: str = "generate",
    stop_strings: Sequence[str] | None = None,
    show_progress: bool = True,
) -> list[Completion]:
    """One continuation per prompt with Hugging Face `generate`; returns the decoded new text only."""
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[Completion] = [Completion("", False)] * len(prompts)
    do_sample = sampling.temperature > 0
    pad_id = tokenizer.pad_token_id
    bar = progress_bar(len(prompts), desc, show_progress)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = [list(prompts[i]) for i in idx]
        input_ids = pad_batch(batch, pad_id, left=True).to(device)
        attention_mask = pad_batch([[1] * len(b) for b in batch], 0, left=True).to(device)
        kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=do_sample,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad_id,
            use_cache=True,  # even when training turned it off in the config (gradient checkpointing)
        )
        if do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop_strings:
            kwargs.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        new_tokens = out[:, input_ids.shape[1] :]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        for i, t, row in zip(idx, texts, new_tokens.tolist()):
            outputs[i] = Completion(t.strip(), ended(row, tokenizer.eos_token_id, pad_id, sampling.max_new_tokens))
        bar.update(len(idx))
    bar.close()
    if was_training:
        model.train()
    return outputs


# --- the shared-prefix path ----------------------------------------------------------------------

def common_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving each prompt at least one token of its own."""
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return max(0, n)


def filter_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering, as Hugging Face's logits warpers do it."""
    logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k)[0][..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        logits = _top_p(logits, sampling.top_p)
    return logits


def _top_p(logits: torch.Tensor, top_p: float, head: int = 64) -> torch.Tensor:
    """Keep the most likely tokens whose probability adds up to `top_p` (Hugging Face's rule: drop the least
    likely tokens whose total is at most 1 - top_p, keeping one at least). Where the `head` most likely
    tokens already hold top_p of the mass everything else is dropped, so only those need sorting."""
    if head < logits.shape[-1]:
        top, idx = torch.topk(logits, head)  # sorted, descending
        probs = top.softmax(-1) * (torch.logsumexp(top, -1, keepdim=True) - torch.logsumexp(logits, -1, keepdim=True)).exp()
        if bool((probs.sum(-1) >= top_p).all()):
            ascending = probs.flip(-1).cumsum(-1).flip(-1)  # mass of this token and the less likely ones in the head
            rest = 1 - probs.sum(-1, keepdim=True)          # mass outside the head
            remove = (ascending + rest) <= (1 - top_p)
            remove[..., 0] = False
            kept = torch.full_like(logits, float("-inf"))
            return kept.scatter(1, idx, top.masked_fill(remove, float("-inf")))
    sorted_logits, sorted_idx = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[..., -1:] = False  # keep at least one token
    return logits.masked_fill(remove.scatter(1, sorted_idx, remove), float("-inf"))


def next_tokens(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    if sampling.temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(filter_logits(logits.float(), sampling).softmax(-1), 1).squeeze(-1)


@torch.no_grad()
def _shared_prefix_sample(model, tokenizer, prompts: Sequence[Sequence[int]], sampling: Sampling, n: int,
                          batch_size: int, desc: str, show_progress: bool) -> list[list[Completion]]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    eos, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    P = common_prefix_length(prompts)
    shared = [forward(model, torch.tensor([list(prompts[0][:P])], device=device), record=True)[1]] if P else []
    contexts = [list(p[P:]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(contexts[i]))
    per_batch = max(1, batch_size // n)
    outputs: list[list[Completion]] = [[] for _ in prompts]
    bar = progress_bar(len(prompts) * n, desc, show_progress)
    for start in range(0, len(order), per_batch):
        idx = order[start : start + per_batch]
        ids = pad_batch([contexts[i] for i in idx], pad_id, left=True).to(device)
        mask = pad_batch([[1] * len(contexts[i]) for i in idx], 0, left=True).to(device).bool()
        # Each context is forwarded once and becomes a prefix of its n continuations (rows).
        logits, ctx = forward(model, ids, mask, prefixes=shared, record=True)
        prefixes = shared + [ctx]
        rows = len(idx) * n
        logits = logits[:, -1].repeat_interleave(n, dim=0)
        next_pos = (P + ctx.lengths).repeat_interleave(n)
        cache = RowCache(rows, sampling.max_new_tokens, device)
        new = torch.full((rows, sampling.max_new_tokens), pad_id, dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        for t in range(sampling.max_new_tokens):
            tok = next_tokens(logits, sampling).masked_fill(done, pad_id)
            new[:, t] = tok
            done |= tok == eos
            if bool(done.all()) or t == sampling.max_new_tokens - 1:
                break
            logits = forward(model, tok[:, None], prefixes=prefixes, cache=cache, positions=next_pos[:, None])[0][:, -1]
            next_pos = next_pos + 1
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for k, i in enumerate(idx):
            outputs[i] = [Completion(texts[k * n + j].strip(), bool(done[k * n + j])) for j in range(n)]
        bar.update(rows)
    bar.close()
    if was_training:
        model.train()
    return outputs
