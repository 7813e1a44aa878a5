"""Attention over shared prefixes that are computed once: "read the rubric once".

Most of the project's tokens are prefixes that many sequences share: every judge prompt starts with the
same rubric, a candidate's K judgments share its whole judge prompt, a prompt's N candidates share the
prompt, DPO's chosen and rejected share the prompt. Here a prefix is forwarded once (with gradients
when training) and its keys and values serve every sequence that continues it. Rows come in G groups of
m consecutive rows; the rows of a group attend to its prefix by one matrix product against the prefix's
keys, which are never copied per row (cascade attention). Prefixes nest — the rubric (one group), then
each judge prompt (one group per candidate, its K judgments as rows) — and each row then attends to its
own tokens; all parts go into one softmax, merged exactly.

The model itself is unchanged: a Hugging Face model whose attention goes through transformers'
attention interface (`_supports_attention_backend`: Llama, Qwen2, GPT-2, ...) computes its queries, keys
and values and applies its own rotary or absolute positions (the true `position_ids` are passed in),
then calls the attention function registered here, which reads the prefixes of the active forward pass.
The model runs without its own cache (use_cache=False); generation keeps its rows' tokens in `RowCache`.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence, cast, overload

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from srlm_exp.models.heads import decoder_of

log = logging.getLogger(__name__)
IMPLEMENTATION = "srlm_shared_prefix"
_active = threading.local()


class _Switch:
    """The run's choice (config key `shared_prefix`): false forces the plain path in generation and training."""

    enabled = True
    said: set[str] = set()


def use_shared_prefix(enabled: bool) -> None:
    _Switch.enabled = bool(enabled)


def available(model, what: str, training: bool = False) -> bool:
    """Whether `what` (a generation or training phase) may use shared prefixes with `model`; says once why not."""
    if not _Switch.enabled:
        return False
    reason = unsupported_reason(model) or (training and _recomputes_activations(model) or None)
    if reason is not None and reason not in _Switch.said:
        _Switch.said.add(reason)
        log.info("%s: plain path without shared prefixes (%s)", what, reason)
    return reason is None


@dataclass
class PrefixKV:
    """Keys and values of G prefixes, per layer: [G, kv_heads, P, head_dim]. Prefixes of different
    lengths are padded to P (`mask` [G, P]: True = a real token; None = all real); `lengths` [G] counts
    their real tokens, which is also where the positions of what continues them start."""

    keys: dict[int, Tensor] = field(default_factory=dict)
    values: dict[int, Tensor] = field(default_factory=dict)
    mask: Tensor | None = None
    lengths: Tensor = field(kw_only=True)  # always given (forward's `record`)

    @property
    def groups(self) -> int:
        return self.lengths.shape[0]


class RowCache:
    """Preallocated keys and values of each row's own tokens: written in place, attended as views, so a
    decoding step copies nothing that was cached before."""

    def __init__(self, rows: int, capacity: int, device):
        self.keys: dict[int, Tensor] = {}
        self.values: dict[int, Tensor] = {}
        self.length, self.capacity = 0, capacity
        self.valid = torch.zeros(rows, capacity, dtype=torch.bool, device=device)

    def write(self, layer: int, key: Tensor, value: Tensor, start: int) -> tuple[Tensor, Tensor]:
        if layer not in self.keys:
            shape = (key.shape[0], key.shape[1], self.capacity, key.shape[3])
            self.keys[layer], self.values[layer] = key.new_zeros(shape), value.new_zeros(shape)
        end = start + key.shape[2]
        self.keys[layer][:, :, start:end] = key
        self.values[layer][:, :, start:end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


@dataclass
class _Level:
    """A prefix as the rows of one forward pass see it, with its mask built once for all layers."""

    kv: PrefixKV
    rows_per_group: int
    row_mask: Tensor | None  # [R] bool: rows that continue this prefix (None = all)
    _bias: Tensor | None = None
    _built: bool = False

    def keep(self, device) -> Tensor:
        """[G, m, P] bool: the prefix tokens each row attends (real tokens, rows that continue the prefix)."""
        G, m = self.kv.groups, self.rows_per_group
        P = next(iter(self.kv.keys.values())).shape[2]
        keep = torch.ones(G, m, P, dtype=torch.bool, device=device)
        if self.kv.mask is not None:
            keep &= self.kv.mask[:, None, :]
        if self.row_mask is not None:
            keep &= self.row_mask.view(G, m, 1)
        return keep

    def bias(self, device) -> Tensor | None:
        """[G, m, 1, 1, 1, P]: -inf on a prefix's padding and for rows that do not continue it."""
        if not self._built:
            self._built = True
            if self.kv.mask is not None or self.row_mask is not None:
                keep = self.keep(device)
                self._bias = torch.zeros(keep.shape, device=device).masked_fill_(~keep, float("-inf"))[:, :, None, None, None]
        return self._bias


@dataclass
class _Step:
    """What the attention function needs during one forward pass."""

    levels: list[_Level]
    own_valid: Tensor                # [R, T]: which own keys (cached + current) are real tokens
    start: int                       # own index of the first current token
    cache: RowCache | None
    record: PrefixKV | None          # keeps the current tokens' keys and values (forwarding a prefix)
    _own_bias: Tensor | None = None
    _attend: Tensor | None = None

    def attend_mask(self, L: int, T: int, device) -> Tensor:
        """[R, 1, L, P_1 + ... + T] bool: what each query may attend — its groups' real prefix tokens and its
        own real, earlier (or same) tokens — for attention over the keys laid end to end."""
        if self._attend is None:
            R = self.own_valid.shape[0]
            parts = []
            for level in self.levels:
                keep = level.keep(device)
                P = keep.shape[-1]
                parts.append(keep.reshape(R, 1, P).expand(R, L, P))
            q_pos = torch.arange(self.start, self.start + L, device=device)
            k_pos = torch.arange(T, device=device)
            own = (self.own_valid[:, None, :T] & (k_pos[None, :] <= q_pos[:, None])) | (k_pos[None, :] == q_pos[:, None])
            self._attend = torch.cat(parts + [own], dim=-1)[:, None]
        return self._attend

    def own_bias(self, L: int, T: int, device) -> Tensor:
        """[R, 1, 1, L, T]: 0 where a query may attend an own key (a real, earlier or same token), else -inf."""
        if self._own_bias is None:
            q_pos = torch.arange(self.start, self.start + L, device=device)
            k_pos = torch.arange(T, device=device)
            causal = k_pos[None, :] <= q_pos[:, None]
            allowed = (self.own_valid[:, None, :T] & causal) | (k_pos[None, :] == q_pos[:, None])  # padding sees itself
            self._own_bias = torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, float("-inf"))[:, None, None]
        return self._own_bias


def _attention(module, query: Tensor, key: Tensor, value: Tensor, attention_mask, dropout: float = 0.0,
               scaling: float | None = None, **kwargs) -> tuple[Tensor, None]:
    """Softmax attention of each row over [its prefixes..., its own tokens], the parts merged exactly."""
    step: _Step = _active.step
    if kwargs.get("sliding_window") is not None or kwargs.get("softcap") is not None:
        raise NotImplementedError("shared-prefix attention has no sliding window or softcapping")
    layer = module.layer_idx
    R, H, L, D = query.shape
    Hkv = key.shape[1]
    g = H // Hkv  # query head h reads kv head h // g (as repeat_kv does)
    scale = scaling if scaling is not None else D ** -0.5
    if step.record is not None:
        step.record.keys[layer], step.record.values[layer] = key, value
    if step.cache is not None:
        key, value = step.cache.write(layer, key, value, step.start)
    T = key.shape[2]
    if L > 1 or torch.is_grad_enabled():
        return _fused(module, query, key, value, step, dropout, scale)
    q = (query * scale).reshape(R, Hkv, g * L, D)
    if g * L == 1:  # one query per kv head (decoding): a product and a sum beat R*Hkv tiny matrix products
        scores_own = (q * key).sum(-1, keepdim=True).transpose(-1, -2)
    else:
        scores_own = torch.matmul(q, key.transpose(-1, -2))
    scores_own = scores_own.view(R, Hkv, g, L, T) + step.own_bias(L, T, query.device)
    m = scores_own.amax(-1, keepdim=True)  # [R, Hkv, g, L, 1]
    parts = []
    for level in step.levels:
        G, mr = level.kv.groups, level.rows_per_group
        pk = level.kv.keys[layer]
        P = pk.shape[2]
        # The rows of each group against the group's prefix: one product per (group, kv head), no copy of pk.
        qg = q.view(G, mr, Hkv, g * L, D).transpose(1, 2).reshape(G, Hkv, mr * g * L, D)
        scores = torch.matmul(qg, pk.transpose(-1, -2)).view(G, Hkv, mr, g, L, P).transpose(1, 2)
        bias = level.bias(query.device)
        if bias is not None:
            scores = scores + bias
        scores = scores.reshape(R, Hkv, g, L, P)
        m = torch.maximum(m, scores.amax(-1, keepdim=True))
        parts.append(scores)
    e_own = torch.exp(scores_own - m)
    exps = [torch.exp(s - m) for s in parts]
    denom = e_own.sum(-1, keepdim=True)
    for e in exps:
        denom = denom + e.sum(-1, keepdim=True)
    p_own = (e_own / denom).view(R, Hkv, g * L, T)
    if dropout > 0 and module.training:
        p_own = torch.nn.functional.dropout(p_own, p=dropout)
    if g * L == 1:
        out = (p_own.transpose(-1, -2) * value).sum(-2, keepdim=True)  # [R, Hkv, 1, D]
    else:
        out = torch.matmul(p_own, value)  # [R, Hkv, g*L, D]
    for level, e in zip(step.levels, exps):
        G, mr = level.kv.groups, level.rows_per_group
        P = e.shape[-1]
        p = (e / denom).view(G, mr, Hkv, g * L, P).transpose(1, 2).reshape(G, Hkv, mr * g * L, P)
        if dropout > 0 and module.training:
            p = torch.nn.functional.dropout(p, p=dropout)
        out = out + torch.matmul(p, level.kv.values[layer]).view(G, Hkv, mr, g * L, D).transpose(1, 2).reshape(R, Hkv, g * L, D)
    # -> the [R, L, H, D] layout attention modules expect back
    return out.view(R, H, L, D).transpose(1, 2), None


def _fused(module, query: Tensor, key: Tensor, value: Tensor, step: _Step, dropout: float, scale: float):
    """Many queries per row (a prefill, or training): Torch's fused attention over each row's prefixes and
    own keys laid end to end. The prefixes' keys are copied per row here, once per forward pass rather than
    per decoding step; their gradients flow back to the one forward pass that computed them."""
    R, H, L, D = query.shape
    layer, Hkv = module.layer_idx, key.shape[1]
    keys = torch.cat([level.kv.keys[layer].repeat_interleave(level.rows_per_group, dim=0) for level in step.levels]
                     + [key], dim=2)
    values = torch.cat([level.kv.values[layer].repeat_interleave(level.rows_per_group, dim=0) for level in step.levels]
                       + [value], dim=2)
    if H != Hkv:
        keys, values = keys.repeat_interleave(H // Hkv, dim=1), values.repeat_interleave(H // Hkv, dim=1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, keys, values, attn_mask=step.attend_mask(L, key.shape[2], query.device),
        dropout_p=dropout if module.training else 0.0, scale=scale)
    return out.transpose(1, 2), None


def _no_mask(*args, **kwargs):
    return None  # the attention function builds its own masks from the active step


AttentionInterface.register(IMPLEMENTATION, _attention)
AttentionMaskInterface.register(IMPLEMENTATION, _no_mask)


def unsupported_reason(model) -> str | None:
    """Why shared-prefix attention cannot run `model`, or None if it can."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "_supports_attention_backend", False):
        return f"{type(base).__name__} does not route its attention through transformers' attention interface"
    cfg = base.config
    sliding = getattr(cfg, "sliding_window", None)
    if sliding and getattr(cfg, "use_sliding_window", True):
        return f"{type(base).__name__} uses sliding-window attention"
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    return None


def _recomputes_activations(model) -> str | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    on = getattr(base, "is_activation_checkpointing", None)
    if on is None:
        on = getattr(base, "is_gradient_checkpointing", False)
    # The backward pass would recompute attention after the forward pass's prefixes are gone.
    return "gradient checkpointing recomputes attention without the shared prefixes" if on else None


@contextmanager
def _using(model, step: _Step) -> Iterator[None]:
    cfg = model.config
    before = cfg._attn_implementation
    cfg._attn_implementation = IMPLEMENTATION
    _active.step = step
    try:
        yield
    finally:
        cfg._attn_implementation = before
        _active.step = None


def positions_after(prefixes: Sequence[PrefixKV], rows: int) -> Tensor:
    """Where each row's own tokens start: the real length of every prefix it continues."""
    start: Tensor | None = None
    for p in prefixes:
        lengths = p.lengths.repeat_interleave(rows // p.groups)
        start = lengths if start is None else start + lengths
    if start is None:
        raise ValueError("positions_after: no prefix to start after")
    return start


# With `record` the new tokens' PrefixKV comes back, without it None: the two signatures say so to the type checker.
@overload
def forward(model, input_ids: Tensor, mask: Tensor | None = ..., *, prefixes: Sequence[PrefixKV] = ...,
            row_masks: Sequence[Tensor | None] | None = ..., cache: RowCache | None = ...,
            positions: Tensor | None = ..., record: Literal[True], logits_to_keep: int | Tensor = ...,
            hidden: bool = ...) -> tuple[Tensor, PrefixKV]: ...


@overload
def forward(model, input_ids: Tensor, mask: Tensor | None = ..., *, prefixes: Sequence[PrefixKV] = ...,
            row_masks: Sequence[Tensor | None] | None = ..., cache: RowCache | None = ...,
            positions: Tensor | None = ..., record: Literal[False] = ..., logits_to_keep: int | Tensor = ...,
            hidden: bool = ...) -> tuple[Tensor, None]: ...


def forward(model, input_ids: Tensor, mask: Tensor | None = None, *, prefixes: Sequence[PrefixKV] = (),
            row_masks: Sequence[Tensor | None] | None = None, cache: RowCache | None = None,
            positions: Tensor | None = None, record: bool = False, logits_to_keep: int | Tensor = 0,
            hidden: bool = False) -> tuple[Tensor, PrefixKV | None]:
    """Logits of R rows of new tokens ([R, S], `mask` True on real tokens, padding on either side) that
    continue `prefixes` (each of G groups; R is a multiple of G, rows group-major). `row_masks[i]` [R]
    keeps rows that do not continue prefix i out of it (an ordinary row in a batch of rubric rows). With
    a RowCache the rows also attend to, and extend, what earlier calls cached. With `record` the new
    tokens' keys and values are returned as a PrefixKV (differentiable when grad is enabled), for rows
    that continue them in a later call.
    Positions default to: the prefixes' real lengths, then counting the row's real tokens. `logits_to_keep`
    is passed to the model (a boolean [R, S] mask projects only those positions, flattened). With `hidden`
    the decoder's final hidden states [R, S, d] are returned instead of logits (models/heads.py)."""
    R, S = input_ids.shape
    mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.bool()
    start = 0
    if cache is not None:
        start = cache.length
        cache.valid[:, start:start + S] = mask
        own_valid = cache.valid
    else:
        own_valid = mask
    if positions is None:
        offset = positions_after(prefixes, R) if prefixes else torch.zeros(R, dtype=torch.long, device=input_ids.device)
        if prefixes and row_masks is not None:  # rows outside a prefix do not count its length
            # a sum of tensors (from 0): a tensor
            offset = cast(Tensor, sum(p.lengths.repeat_interleave(R // p.groups) * (rm.long() if rm is not None else 1)
                                      for p, rm in zip(prefixes, row_masks)))
        positions = ((mask.long().cumsum(-1) - 1).clamp(min=0) + offset[:, None]) * mask.long()
    levels = [_Level(p, R // p.groups, None if row_masks is None else row_masks[i]) for i, p in enumerate(prefixes)]
    kept = PrefixKV(mask=mask, lengths=mask.sum(-1)) if record else None
    with _using(model, _Step(levels, own_valid, start, cache, kept)):
        if hidden:
            logits = decoder_of(model)(input_ids=input_ids, position_ids=positions, use_cache=False).last_hidden_state
        else:
            logits = model(input_ids=input_ids, position_ids=positions, use_cache=False, logits_to_keep=logits_to_keep).logits
    if cache is not None:
        cache.length = start + S
    if kept is not None and bool(mask.all()):
        kept.mask = None  # no padding: nothing to mask
    return logits, kept
