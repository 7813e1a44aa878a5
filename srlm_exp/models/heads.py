"""A causal LM as its two parts: the decoder (tokens -> final hidden states) and the output head (hidden
states -> vocabulary logits). Training and scoring need the log-probs of a few labelled positions only, so
they run the decoder over every token and the head over those positions (training/label_logps.py)."""
from __future__ import annotations

from typing import Any

from torch import nn

# Config fields of models whose logits are more than the head's projection of the hidden states.
_NOT_PLAIN = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def _base(model: nn.Module) -> Any:
    """The transformers model (PEFT: LoRA layers are inside), typed Any: the methods called on it (get_decoder,
    get_output_embeddings) are its own class's, which nn.Module's typing does not know."""
    unwrap = getattr(model, "get_base_model", None)  # a PEFT model's
    return unwrap() if unwrap is not None else model


def decoder_of(model: nn.Module) -> nn.Module:
    """The decoder stack whose `last_hidden_state` (after the final norm) the head projects."""
    return _base(model).get_decoder()


def output_head(model: nn.Module) -> nn.Module:
    """The module that projects hidden states onto the vocabulary (tied to the embeddings or not)."""
    return _base(model).get_output_embeddings()


def plain_projection_problem(model: nn.Module) -> str | None:
    """Why the model's logits are not `output_head(model)(decoder_of(model)(...).last_hidden_state)`, or None."""
    base = _base(model)
    cfg = getattr(base, "config", None)
    for name in _NOT_PLAIN:
        value = getattr(cfg, name, None)
        if value not in (None, 1, 1.0):
            return f"{type(base).__name__} transforms its logits ({name}={value})"
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError) as exc:
        return f"{type(base).__name__} does not expose its decoder and output head ({exc})"
    if decoder is None or decoder is base or not isinstance(head, nn.Module):
        return f"{type(base).__name__} does not expose its decoder and output head"
    return None
