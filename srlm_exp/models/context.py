"""How long a sequence a model takes, and whether the configured budgets fit it.

Sequence budgets (`seed_sft.max_len`, `train.max_len`) default to `auto`: the model's own context
(`max_position_embeddings`, or GPT-2's `n_positions`). Batches are padded to their longest row, so
`auto` costs nothing over a tighter cap; a number sized for one tokenizer (768 tokens of ours) would
reject the same rows written in a less compact one (byte-level BPE), which is why it is not the default.

`context_problems(cfg, judge, model_source)` is the configure-time half, for a local checkpoint (a directory,
or a GGUF file's cached conversion): every
budget above the model's context, and a judge prompt that with its judgment does not fit, is reported
with the other config problems before anything is built or trained.
"""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from srlm_exp.chat import prompt_ids
from srlm_exp.checks import AUTO, ConfigError, Problem
from srlm_exp.models.loading import load_tokenizer

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
BUDGET_KEYS = ("seed_sft.max_len", "train.max_len")
# Sampled generations: the prompt comes on top of these, so each must leave room for one.
GENERATION_KEYS = ("callbacks.self_reward.max_new_tokens", "eval.max_new_tokens", "judge.max_new_tokens")


def context_length(model_config: Any) -> int | None:
    """The positions a model's config declares (None when it declares none, e.g. rotary-only configs)."""
    for key in CONTEXT_KEYS:
        value = getattr(model_config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def sequence_budget(max_len: Any, model: Any, key: str) -> int:
    """The token budget of a training stage for `model`: `auto` = its context; a number must fit it."""
    context = context_length(model.config)
    if max_len == AUTO:
        if context is None:
            raise ConfigError([Problem(key, "is auto, but the model's config declares no context length "
                                            f"({' / '.join(CONTEXT_KEYS)})", f"set {key} to a token count")])
        return context
    if context is not None and max_len > context:
        raise ConfigError([Problem(key, f"is {max_len}, beyond the model's {context} positions",
                                   f"set {key}=auto (the model's context) or at most {context}")])
    return int(max_len)


def context_problems(cfg: DictConfig, judge: Any, model_source: Any) -> list[Problem]:
    """For a local checkpoint (`model_source.checkpoint_dir`): budgets beyond the model's context, and a
    judge prompt (its fixed part, with this model's tokenizer and chat template) that leaves no room for the
    instruction, the response and `judge.max_new_tokens`. A hub name is checked when it is loaded, a GGUF
    file once converted."""
    if "name_or_path" in cfg.model and OmegaConf.is_missing(cfg.model, "name_or_path"):
        return []  # reported as a missing value
    name = model_source.checkpoint_dir(cfg.model, cfg.paths.cache_dir) if model_source is not None else None
    if name is None:
        return []
    from transformers import AutoConfig


    trust = bool(cfg.model.get("trust_remote_code", False))
    try:
        context = context_length(AutoConfig.from_pretrained(str(name), trust_remote_code=trust))
        tok = load_tokenizer(name, cfg.model.get("chat_template"), trust)
    except Exception as exc:  # reported with the other problems, before anything is built
        return [Problem("model.name_or_path", f"{name} could not be read as a model: {exc}",
                        "point model.name_or_path at the directory save_pretrained() wrote (config.json and tokenizer), "
                        "and set model.chat_template if its tokenizer ships none")]
    if context is None:
        return [Problem(k, f"is auto, but {name} declares no context length", f"set {k} to a token count")
                for k in BUDGET_KEYS if OmegaConf.select(cfg, k, default=None) == AUTO]
    out: list[Problem] = []
    for key in BUDGET_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, int) and value > context:
            out.append(Problem(key, f"is {value}, beyond the {context} positions of {name}",
                               f"set {key}=auto (the model's context) or at most {context}"))
    for key in GENERATION_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, int) and value >= context:
            out.append(Problem(key, f"is {value}, leaving no room for a prompt in the {context} positions of {name}",
                               f"set {key} well below {context}"))
    model_judge = judge.model_judge() if judge is not None else None  # the prompt the model learns and answers
    if model_judge is not None:
        fixed = model_judge.template
        for placeholder in model_judge.required_placeholders:
            fixed = fixed.replace(placeholder, "")
        needed = len(prompt_ids(tok, fixed)) + model_judge.sampling.max_new_tokens
        if needed > context:
            out.append(Problem("judge.template", f"the judge prompt alone is {needed - model_judge.sampling.max_new_tokens} "
                                                 f"tokens with the tokenizer of {name}; with judge.max_new_tokens="
                                                 f"{model_judge.sampling.max_new_tokens} it exceeds the model's "
                                                 f"{context} positions",
                               "choose a shorter judge prompt (e.g. judge=holistic5) or a model with a longer context"))
        sft_budget = OmegaConf.select(cfg, "seed_sft.max_len", default=None)
        if isinstance(sft_budget, int) and cfg.data.get("eft", True) and needed > sft_budget:
            out.append(Problem("seed_sft.max_len", f"is {sft_budget}, shorter than the judge prompt and judgment "
                                                   f"({needed} tokens with the tokenizer of {name}) that EFT trains on",
                               f"set seed_sft.max_len=auto (the model's {context} positions)"))
    return out
