"""From a composed config to the run's components, checked before anything is built or trained.

`build_components(cfg)` instantiates every configured component (seed data, M0 source, stages, judge,
pair rule, prompt source, candidate sampler) and collects *every* problem at once — a `???` value, a
value a component refuses, a component that needs a capability the seed data lacks — into one
`ConfigError` whose lines each name the key and the fix. A component owns the rules of its own
settings (its constructor raises `ConfigError` through `check`); requirements between components are
declared as capabilities (`requires = (GroundTruth,)`) and checked here, never by option name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from srlm_exp.checks import ConfigError, Problem, at_least, check, model_path_problem, require
from srlm_exp.data.seed_data import GroundTruth, RankedResponses, SeedData
from srlm_exp.generation.candidates import CandidateSampler
from srlm_exp.generation.curriculum import Curriculum
from srlm_exp.generation.prompts import PromptSource
from srlm_exp.inference.backend import generation_problems
from srlm_exp.judging.meta_judge import MetaJudge, meta_judge_problems
from srlm_exp.judging.pairwise import PairwiseJudge
from srlm_exp.judging.scorer import Scorer
from srlm_exp.models.context import context_problems
from srlm_exp.models.sources import ModelSource
from srlm_exp.pairs.build import PairRule
from srlm_exp.training.seed_sft import SeedSFTStage
from srlm_exp.training.stage import TrainStage

# `${srlm.if:COND,A,B}` in a config: A where COND is true, else B. A model's defaults use it for settings that
# depend on another (LoRA trains adapters that start at zero: a ~10x larger step than full fine-tuning).
if not OmegaConf.has_resolver("srlm.if"):
    OmegaConf.register_new_resolver("srlm.if", lambda cond, yes, no: yes if cond else no)


@dataclass
class Components:
    """Everything a run is composed of, instantiated from the config."""

    seed_data: SeedData
    model_source: ModelSource
    seed_sft: SeedSFTStage
    train_stage: TrainStage
    judge: Scorer
    pair_rule: PairRule
    prompt_source: PromptSource
    sampler: CandidateSampler
    curriculum: Curriculum
    meta_judge: MetaJudge | None = None   # None: meta_judge=none
    external_judge: PairwiseJudge | None = None  # eval.external_judge, built only where eval.judge_model is set


# config key -> component name; each node has a `_target_`
COMPONENT_KEYS = {
    "data": "seed_data", "model.source": "model_source", "seed_sft": "seed_sft", "train": "train_stage",
    "judge": "judge", "pairs": "pair_rule", "prompts": "prompt_source", "callbacks.self_reward": "sampler",
    "curriculum": "curriculum", "meta_judge": "meta_judge",
}


def _choice(cfg: DictConfig, key: str) -> str:
    """How the user names a node's option in a message: `prompts=world_pool` (Hydra's choice, or the
    option's `name`), else the key."""
    group = key.split(".")[0]
    if HydraConfig.initialized():
        chosen = HydraConfig.get().runtime.choices.get(group)
        if chosen:
            return f"{group}={chosen}"
    node = OmegaConf.select(cfg, group)
    name = node.get("name") if isinstance(node, DictConfig) else None
    return f"{group}={name}" if name else key


def _missing(cfg: DictConfig, key: str) -> list[Problem]:
    node = OmegaConf.select(cfg, key)
    out = []
    for sub in node.keys() if isinstance(node, DictConfig) else ():  # typed any key type (bytes too): !s prints it
        if OmegaConf.is_missing(node, sub):
            out.append(Problem(f"{key}.{sub!s}", f"is required by {_choice(cfg, key)}", f"set {key}.{sub!s}=..."))
        elif isinstance(node._get_node(sub), DictConfig):
            out += _missing(cfg, f"{key}.{sub!s}")
    return out


def _instantiate(cfg: DictConfig, key: str, **extra) -> tuple[Any, list[Problem]]:
    """The component at `key`, or the problems that kept it from being built."""
    try:
        return instantiate(OmegaConf.select(cfg, key), **extra), []
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, ConfigError):
            return None, cause.under(key).problems
        return None, [Problem(key, f"{_choice(cfg, key)} could not be built: {cause or exc}", f"correct {key}")]
    except ConfigError as exc:
        return None, exc.under(key).problems


def _capability_problems(cfg: DictConfig, key: str, seed_data: Any) -> list[Problem]:
    """What the component at `key` requires of the seed data (its class's `requires`) and it lacks."""
    cls = get_object(OmegaConf.select(cfg, key)._target_)
    out = []
    for capability in getattr(cls, "requires", ()):
        if not isinstance(seed_data, capability):
            what = (capability.__doc__ or "").strip().splitlines()[0].rstrip(".")
            out.append(Problem(
                "data", f"{_choice(cfg, key)} needs {capability.__name__} ({what}), which {_choice(cfg, 'data')} "
                        "does not offer",
                f"choose another {key.split('.')[0]} option, or seed data that offers it (data=world offers every "
                "capability)"))
    return out


# Components that use a capability of the seed data get it as this constructor argument.
CAPABILITY_ARGUMENTS = {GroundTruth: "ground_truth", RankedResponses: "ranked_data"}
# Used only by self-rewarding iterations: with loop.iterations=0 (M1 only) what they need is not checked.
SELF_REWARDING_ONLY = ("train", "pairs", "prompts", "callbacks.self_reward", "curriculum")
GROUPS_WITH_REQUIRED_VALUES = ("data", "model", "seed_sft", "train", "judge", "pairs", "prompts", "callbacks", "eval")


def _run_level_problems(cfg: DictConfig) -> list[Problem | None]:
    """Settings read by the loop itself rather than by one component: devices, evaluation, model paths."""
    out: list[Problem | None] = list(generation_problems(cfg))
    devices = cfg.trainer.get("devices", 1) if "trainer" in cfg else 1
    if isinstance(devices, int) and not isinstance(devices, bool):  # "auto" and device lists are Lightning's to read
        out.append(at_least(devices, 1, "trainer.devices", "set trainer.devices to 1 or more (or auto)"))
    if "eval" in cfg:
        ev = cfg.eval
        out += [at_least(ev.max_new_tokens, 1, "eval.max_new_tokens"), at_least(ev.batch_size, 1, "eval.batch_size"),
                at_least(ev.judge_batch_size, 1, "eval.judge_batch_size"),
                at_least(ev.get("sample_temperature", 0), 0, "eval.sample_temperature", "set it >= 0 (0 = greedy only)"),
                require(0 < ev.get("sample_top_p", 1) <= 1, "eval.sample_top_p",
                        f"is {ev.get('sample_top_p')}, must be in (0, 1]", "set eval.sample_top_p=0.9")]
        if ev.get("judge_model"):
            out.append(model_path_problem(ev.judge_model, "eval.judge_model"))
    name = OmegaConf.select(cfg, "model.name_or_path", default=None)
    if name is not None and not OmegaConf.is_missing(cfg.model, "name_or_path"):
        out.append(model_path_problem(name, "model.name_or_path"))
    return out


def build_components(cfg: DictConfig) -> Components:
    """Instantiate every component of `cfg`; raise one ConfigError listing every problem found."""
    problems = [p for p in (require(cfg.loop.iterations >= 0, "loop.iterations", f"is {cfg.loop.iterations}, must be >= 0",
                                    "set loop.iterations=2 for M2 and M3 as in the paper, 0 for M1 only"),
                            *_run_level_problems(cfg)) if p]
    missing = [p for group in GROUPS_WITH_REQUIRED_VALUES if group in cfg for p in _missing(cfg, group)]
    problems += missing

    def complete(key: str) -> bool:
        return not any(p.key.startswith(f"{key}.") for p in missing)

    built: dict[str, Any] = dict.fromkeys(COMPONENT_KEYS.values())
    if complete("data"):
        built["seed_data"], errs = _instantiate(cfg, "data")
        problems += errs
    seed_data = built["seed_data"]
    for key, name in COMPONENT_KEYS.items():
        if key == "data" or not complete(key):
            continue
        if seed_data is not None and (cfg.loop.iterations > 0 or key not in SELF_REWARDING_ONLY):
            lacking = _capability_problems(cfg, key, seed_data)
            if lacking:
                problems += lacking
                continue
        requires = getattr(get_object(OmegaConf.select(cfg, key)._target_), "requires", ())
        if any(c in CAPABILITY_ARGUMENTS for c in requires) and seed_data is None:
            continue  # the seed data's own problems are reported above
        extra = {CAPABILITY_ARGUMENTS[c]: seed_data for c in requires if c in CAPABILITY_ARGUMENTS}
        built[name], errs = _instantiate(cfg, key, **extra)
        problems += errs
    if OmegaConf.select(cfg, "eval.judge_model"):  # built now: its errors must not wait for M1's evaluation
        built["external_judge"], errs = _instantiate(cfg, "eval.external_judge")
        problems += errs
        if built["external_judge"] is not None and not callable(getattr(built["external_judge"], "compare", None)):
            problems.append(Problem("eval.external_judge", "is not a pairwise judge: the head-to-head compares two "
                                    "responses", "keep eval's default (judge@eval.external_judge=pairwise)"))
    if not problems:
        problems += [p for p in meta_judge_problems(built["meta_judge"], built["judge"], built["train_stage"]) if p]
    if not problems:  # the model's context is read only once the rest is known to be sound
        problems += context_problems(cfg, built["judge"], built["model_source"])
    check(*problems)
    return Components(**built)


def validate(cfg: DictConfig) -> None:
    """Check a composed config without running anything (the same checks a job makes first)."""
    build_components(cfg)
