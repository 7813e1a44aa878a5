"""Every option of every config group composes (alone and with debug=smoke), its `_target_`s
instantiate without files or models, required values are reported by name, and every YAML file
says what it is in a first-line comment. Options are discovered from conf/<group>/*.yaml, so a new
option is tested without editing this file."""
from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from conftest import CONF_DIR, REPO, compose, config_groups, specialization_groups
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.data.seed_data import GroundTruth, SeedData
from srlm_exp.judging.judge import Judge, JudgeTemplateError
from srlm_exp.judging.scorer import Scorer
from srlm_exp.pairs.rules import PairChoice
from srlm_exp.world import random_model
from srlm_exp.world.judge_prompt import PAPER_JUDGE_PROMPT
from srlm_exp.world.source import WorldSeedData

GROUPS = config_groups()
OPTIONS = [(g, o) for g, opts in GROUPS.items() for o in opts]


def _option_overrides(group: str, option: str, smoke: bool) -> list[str]:
    overrides = [f"{group}={option}"]
    if smoke and group != "debug":
        overrides.append("debug=smoke")
    return overrides


def _cases(with_marks: dict[tuple, Any] | None = None):
    """(group, option, smoke) for every option; marks keyed by (group, option) or (group, option, smoke)."""
    cases = []
    for group, option in OPTIONS:
        for smoke in (False, True):
            if group == "debug" and smoke:
                continue  # debug=<option> is the only debug override
            marks = (with_marks or {}).get((group, option), (with_marks or {}).get((group, option, smoke), ()))
            cases.append(pytest.param(group, option, smoke, marks=marks,
                                      id=f"{group}={option}{'+smoke' if smoke else ''}"))
    return cases


_COMPOSED: dict[tuple[str, ...], DictConfig] = {}


def _compose(overrides: list[str]) -> DictConfig:
    """compose(), memoized: the same overrides are composed once per session (a fresh copy each call)."""
    key = tuple(overrides)
    if key not in _COMPOSED:
        _COMPOSED[key] = compose(overrides)
    return copy.deepcopy(_COMPOSED[key])


def _group_node(cfg: DictConfig, group: str) -> DictConfig:
    """cfg[group]; options of `@package _global_` groups (debug, experiment) have no node of their own."""
    return cfg[group] if group in cfg else OmegaConf.create({})


def _missing_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys of `???` values in `node` (recursively)."""
    out = []
    for key in node.keys():
        if OmegaConf.is_missing(node, key):
            out.append(f"{prefix}{key}")
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            out += _missing_keys(child, f"{prefix}{key}.")
    return out


def _target_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths (tuples of keys) of every sub-config that has a `_target_`."""
    out = []
    if isinstance(node, (dict, DictConfig)):
        if "_target_" in node:
            out.append(prefix)
        for key in node.keys():
            if key == "_target_":
                continue
            child = node._get_node(key) if isinstance(node, DictConfig) else node[key]
            if isinstance(child, (dict, DictConfig)):
                out += _target_paths(child, prefix + (key,))
    return out


def _select(node, path: tuple):
    for key in path:
        node = node[key]
    return node


def _raw(group: str, option: str) -> DictConfig:
    return OmegaConf.load(CONF_DIR / group / f"{option}.yaml")


# ------------------------------------------------------------------------------ discovery

def test_groups_are_discovered():
    # The groups the pipeline instantiates must exist; this also guards the discovery itself.
    for group in ("model", "data", "seed_sft", "train", "judge", "pairs", "prompts", "callbacks", "eval",
                  "logger", "trainer", "debug", "experiment"):
        assert GROUPS.get(group), f"conf/{group}/ has no options"
    assert {"additive5", "holistic5", "oracle", "pairwise"} <= set(GROUPS["judge"])
    assert len(OPTIONS) >= 30


# ------------------------------------------------------------------------------ composing

@pytest.mark.parametrize("group,option,smoke", _cases())
def test_every_option_composes(group, option, smoke):
    cfg = _compose(_option_overrides(group, option, smoke))
    # Every interpolation resolves (??? values are reported separately, see below).
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    raw = _raw(group, option)
    # The option is what is in effect: each `_target_` of its file is there, at the same place.
    for path in _target_paths(raw):
        assert _select(_group_node(cfg, group), path)["_target_"] == _select(raw, path)["_target_"], (group, option, path)
    if "name" in raw and group != "debug":
        assert _group_node(cfg, group).name == raw.name
    if smoke:
        assert cfg.model.get("architecture") is None or cfg.model.architecture.hidden_size <= 64
        assert cfg.data.sizes.corpus <= 200 and cfg.seed_sft.max_steps <= 200
        if group != "prompts":
            assert cfg.prompts._target_.endswith("InstructionPoolPrompts"), "debug=smoke takes prompts from the world pool"


def test_command_line_prompts_beat_the_smoke_default():
    cfg = compose(["debug=smoke", "prompts=self_instruct"])
    assert cfg.prompts._target_.endswith("SelfInstructPrompts")
    assert cfg.prompts.n_prompts == 8  # the smoke shrinking still applies


def test_smoke_shrinks_the_default_run():
    full, smoke = compose([]), compose(["debug=smoke"])
    assert smoke.model.architecture.hidden_size < full.model.architecture.hidden_size
    assert full.data.sizes.corpus == 0 < smoke.data.sizes.corpus  # smoke still runs the pretraining path
    assert smoke.loop.iterations == full.loop.iterations == 2
    assert full.prompts._target_.endswith("InstructionPoolPrompts")  # the paper's fixed-generator analogue


def test_cache_dir_follows_the_environment(isolated_env):
    assert compose([]).paths.cache_dir == isolated_env["SRLM_EXP_CACHE"]


# ------------------------------------------------------------------------------ validation

# Complete options that make a valid job only with settings of other groups: those settings ("<model>": a
# model directory), and why the defaults do not do. Every other complete option validates as it is.
NEEDS_OTHER_SETTINGS = {
    ("data", "oasst"): (["model=hf", "model.name_or_path=<model>", "prompts=self_instruct"],
                        "Open Assistant has no corpus to pretrain model=tiny's M0 on and no instruction pool for "
                        "prompts=world_pool"),
    ("data", "ifeval"): (["model=hf", "model.name_or_path=<model>"],
                         "the IFEval world has no corpus to pretrain model=tiny's M0 on: it needs a model that can "
                         "already answer (experiment=ifeval_cpu uses model=smollm2)"),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return _existing("name_or_path", tmp_path_factory.mktemp("model_dir"))


@pytest.mark.parametrize("group,option,smoke", _cases())
def test_validate_every_option(group, option, smoke, request):
    """validate() accepts every complete option, with the other groups' settings NEEDS_OTHER_SETTINGS lists
    for it (without them, the error names this group); an option with `???` values gets a ConfigError
    naming the key."""
    overrides = _option_overrides(group, option, smoke)
    cfg = _compose(overrides)
    missing = _missing_keys(_group_node(cfg, group))
    if missing:
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        assert any(f"{group}.{k}" in str(err.value) for k in missing), (missing, str(err.value))
        return
    if (group, option) not in NEEDS_OTHER_SETTINGS:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert f"{group}={option}" in str(err.value), str(err.value)
    extra, _why = NEEDS_OTHER_SETTINGS[(group, option)]
    model = request.getfixturevalue("model_dir")
    validate(compose(overrides + [e.replace("<model>", model) for e in extra]))


@pytest.mark.parametrize("group,option,key", [
    ("prompts", "fixed", "generator_path"),
    ("prompts", "dataset", "path"),
    ("model", "hf", "name_or_path"),
])
@pytest.mark.parametrize("smoke", [False, True], ids=["full", "smoke"])
def test_required_values_are_missing_until_given(group, option, key, smoke, tmp_path):
    cfg = compose(_option_overrides(group, option, smoke))
    assert OmegaConf.is_missing(cfg[group], key)
    given = compose(_option_overrides(group, option, smoke) + [f"{group}.{key}={_existing(key, tmp_path)}"])
    assert not OmegaConf.is_missing(given[group], key)
    validate(given)


def _existing(key: str, tmp_path) -> str:
    """A value the checks accept: a prompt file for `path`, a model directory for a model path."""
    if key == "path":
        (tmp_path / "prompts.jsonl").write_text('{"instruction": "What is the first letter of c a t?"}\n')
        return str(tmp_path / "prompts.jsonl")
    if not (tmp_path / "model").is_dir():
        random_model.save_random_model("gpt2", random_model.world_texts(), tmp_path / "model")
    return str(tmp_path / "model")


def test_model_hf_without_name_or_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.name_or_path"):
        validate(compose(["model=hf"]))
    with pytest.raises(ConfigError, match=r"model\.name_or_path: no such directory: /models/llama"):
        validate(compose(["model=hf", "model.name_or_path=/models/llama"]))
    validate(compose(["model=hf", f"model.name_or_path={_existing('name_or_path', tmp_path)}"]))
    validate(compose(["model=hf", "model.name_or_path=Qwen/Qwen2-0.5B"]))  # a hub name: the loader's to resolve


@pytest.mark.parametrize("option,key", [("fixed", "generator_path"), ("dataset", "path")])
def test_prompts_without_required_value_cannot_be_instantiated(option, key):
    cfg = compose([f"prompts={option}"])
    with pytest.raises((InstantiationException, MissingMandatoryValue), match=key):
        instantiate(cfg.prompts)


@pytest.mark.parametrize("overrides,match", [
    (["loop.iterations=-1"], r"loop\.iterations"),
    (["callbacks.self_reward.n_candidates=1"], r"n_candidates"),
])
def test_validate_rejects_bad_values(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose(overrides))


# ------------------------------------------------------------------------------ instantiation

def _check_prompt(prompt: Judge, node: DictConfig) -> None:
    for placeholder in prompt.required_placeholders:
        assert placeholder in prompt.template
    assert prompt.num_judgments == node.get("num_judgments", prompt.num_judgments) >= 1
    assert prompt.low < prompt.high


def _check_object(group: str, option: str, path: tuple, node: DictConfig, obj: Any) -> None:
    if group == "judge":
        # Every option and component scores candidates in the loop; a judge option (path ()) also gives the
        # judge prompt the model learns and is evaluated with (itself, or the prompt it extends).
        assert isinstance(obj, Scorer), f"judge={option}: {path} cannot score candidates"
        prompt = obj.model_judge() if not path else obj
        if isinstance(prompt, Judge):
            assert obj.name == node.name
            _check_prompt(prompt, node)
        else:
            assert path, f"judge={option} gives no judge prompt for the model to learn"
    elif isinstance(obj, Judge):
        assert obj.name == node.name
        _check_prompt(obj, node)
    elif group == "pairs":
        assert callable(obj)
        scores, lengths = [1.0, 4.0, 2.5, math.nan], [3, 9, 5, 4]
        choice = obj(scores, lengths, random.Random(0))
        assert isinstance(choice, PairChoice) and choice.pairs, option
        for c, r in choice.pairs:
            assert c != r and scores[c] > scores[r] and not math.isnan(scores[r])
    elif group == "train":
        assert callable(getattr(obj, "fit", None)) and obj.name == option
        assert obj.min_examples == node.min_examples
    elif group == "callbacks":
        assert callable(getattr(obj, "sample", None))
        assert obj.n_candidates == node.n_candidates >= 2
    elif group == "prompts":
        assert callable(getattr(obj, "produce", None))
        assert obj.n_prompts == node.n_prompts
    elif group == "data":
        assert isinstance(obj, SeedData) and obj.name == option and obj.use_eft is bool(node.eft)
        if isinstance(obj, WorldSeedData):
            assert isinstance(obj, GroundTruth) and obj.sizes.ift == node.sizes.ift
    elif group == "model":
        assert path == ("source",) and callable(getattr(obj, "m0", None))


def _instantiate(node: DictConfig):
    """instantiate(node), handing a component that needs a seed-data capability the embedded world (as the
    run does)."""
    from hydra.utils import get_object

    from srlm_exp.config import CAPABILITY_ARGUMENTS

    requires = getattr(get_object(node._target_), "requires", ())
    world = WorldSeedData("world", 0, True, {})
    return instantiate(node, **{CAPABILITY_ARGUMENTS[c]: world for c in requires if c in CAPABILITY_ARGUMENTS})


@pytest.mark.parametrize("group,option,smoke", _cases())
def test_every_target_instantiates(group, option, smoke):
    """Every `_target_` of the option instantiates (none of them needs files or a model to exist);
    one whose config still has `???` values refuses to."""
    cfg = _compose(_option_overrides(group, option, smoke))
    paths = _target_paths(_group_node(cfg, group))
    if group in ("judge", "pairs", "train", "prompts", "data"):
        assert paths and paths[0] == (), f"{group}={option} has no _target_"
    for path in paths:
        node = _select(_group_node(cfg, group), path)
        if _missing_keys(node):
            with pytest.raises((InstantiationException, MissingMandatoryValue)):
                instantiate(node)
            continue
        _check_object(group, option, path, node, _instantiate(node))


def test_callbacks_group_configures_the_candidate_sampler():
    cfg = compose(["debug=smoke"])
    sampler = instantiate(cfg.callbacks.self_reward)
    assert sampler.n_candidates == 3 and sampler.sampling.max_new_tokens == 12


# ------------------------------------------------------------------------------ judges

@pytest.mark.parametrize("option", ["additive5", "oracle"])
def test_additive5_template_is_the_papers_prompt_verbatim(option):
    cfg = compose([f"judge={option}"])
    assert cfg.judge.template == PAPER_JUDGE_PROMPT
    judge = _instantiate(cfg.judge)
    # The oracle still trains and evaluates the model's own judging with the paper's prompt.
    assert judge.model_judge().template == PAPER_JUDGE_PROMPT
    assert (judge.low, judge.high) == (0.0, 5.0)


def test_all_four_judges_instantiate_with_distinct_behaviour():
    judges = {o: _instantiate(compose([f"judge={o}"]).judge) for o in ("additive5", "holistic5", "oracle", "pairwise")}
    assert {type(j).__name__ for j in judges.values()} == {"Judge", "OracleJudge", "PairwiseJudge"}
    # The oracle scores with the grader; the model still learns and is evaluated with the prompt it extends.
    assert type(judges["oracle"].model_judge()) is Judge and judges["additive5"].model_judge() is judges["additive5"]
    assert (judges["holistic5"].low, judges["holistic5"].high) == (1.0, 5.0)
    rendered = judges["additive5"].render("Add 2 and 3.", "The answer is 5.")
    assert "User: Add 2 and 3." in rendered and "<response>The answer is 5.</response>" in rendered
    pair = judges["pairwise"].render_pair("Add 2 and 3.", "five", "six")
    assert "<response_a>five</response_a>" in pair and "<response_b>six</response_b>" in pair


@pytest.mark.parametrize("option", GROUPS["judge"])
def test_judge_template_without_a_placeholder_is_rejected_by_name(option):
    cfg = compose([f"judge={option}"])
    placeholders = _instantiate(cfg.judge).model_judge().required_placeholders  # the prompt every option carries
    assert placeholders
    for placeholder in placeholders:
        broken = cfg.judge.copy()
        broken.template = cfg.judge.template.replace(placeholder, "")
        with pytest.raises(InstantiationException) as err:
            _instantiate(broken)
        cause = err.value.__cause__
        assert isinstance(cause, JudgeTemplateError), repr(cause)
        assert placeholder in str(cause)
        assert [p for p in placeholders if p != placeholder and p in str(cause).split("must contain")[0]] == []


# ------------------------------------------------------------------------------ model specialisations

@pytest.mark.parametrize("group", sorted(specialization_groups()))
def test_every_specialization_file_names_options_that_exist(group):
    """conf/model_defaults/<model>.yaml and conf/model_debug/<model>_<debug>.yaml are picked by name: a file
    whose model or debug option was renamed would silently stop applying."""
    pattern = specialization_groups()[group]
    files = sorted((CONF_DIR / group).glob("*.yaml"))
    assert files, f"conf/{group}/ is empty"
    for f in files:
        if pattern == "${model}":
            assert f.stem in GROUPS["model"], f"{f}: no model option {f.stem}"
        else:
            model, _, debug = f.stem.rpartition("_")
            assert model in GROUPS["model"] and debug in GROUPS["debug"], f"{f}: no model {model} / debug {debug}"


def test_a_model_brings_its_own_defaults_and_smoke_preset_and_the_command_line_wins():
    tiny, smoll = compose(["debug=smoke"]), compose(["model=smollm2", "debug=smoke"])
    assert tiny.seed_sft.lr == 1e-2 and tiny.model.architecture.hidden_size == 64
    assert smoll.seed_sft.lr == 1e-4 and "architecture" not in smoll.model  # pretrained weights kept as they are
    assert compose(["model=smollm2", "debug=smoke", "model.lora.enabled=true"]).seed_sft.lr == 1e-3  # LoRA: 10x
    assert compose(["model=smollm2"]).data.sizes.ift == 192 < compose([]).data.sizes.ift
    assert compose(["model=smollm2", "debug=smoke", "seed_sft.lr=3e-5"]).seed_sft.lr == 3e-5


# ------------------------------------------------------------------------------ YAML files

YAML_FILES = sorted(CONF_DIR.rglob("*.yaml")) + sorted((REPO / "sweeps").rglob("*.yaml"))


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_starts_with_a_comment(path: Path):
    lines = path.read_text().splitlines()
    assert lines and lines[0].startswith("#"), f"{path}: first line must be a '#' comment saying what the file is"
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    descriptive = [h for h in header if h and not h.startswith("@package")]
    assert descriptive and len(descriptive[0]) >= 10, f"{path}: the leading comment says nothing: {header}"


def test_validate_reports_every_problem_at_once_each_with_its_key_and_fix():
    cfg = compose(["loop.iterations=-1", "callbacks.self_reward.n_candidates=1", "train.loss_type=bogus",
                   "train.reference=m2", "data=oasst", "judge=oracle"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    problems = err.value.problems
    assert [p.key for p in problems] == ["loop.iterations", "data", "train.reference", "train.loss_type", "data",
                                         "callbacks.self_reward.n_candidates"]
    assert all(p.fix for p in problems)
    text = str(err.value)
    assert text.startswith("6 problem(s)") and "PretrainingCorpus" in text and "GroundTruth" in text


class GradedSource(SeedData):
    """Seed data of a user's own that has a grader (and nothing else of the world)."""

    def __init__(self, name: str = "mine"):
        self.name, self.use_eft, self.files = name, False, {}

    def build(self, out_dir):
        return self

    def eft_graded(self):
        return []

    def eft_preference_pairs(self):
        return []

    def grade(self, instruction, response):
        return None


def test_what_a_component_needs_is_asked_of_the_seed_data_by_capability_not_by_name():
    cfg = compose(["model=hf", "model.name_or_path=org/m", "judge=oracle", "prompts=self_instruct"])
    cfg.data = OmegaConf.create({"_target_": f"{__name__}.GradedSource"})
    validate(cfg)  # the oracle judge only needs a grader
    cfg.prompts = compose(["prompts=world_pool"]).prompts
    with pytest.raises(ConfigError, match="InstructionPool"):
        validate(cfg)  # drawing prompts from the seed data's tasks needs a pool it does not have


def test_world_code_reaches_the_framework_only_through_the_seed_data_interface():
    # random_model is the command that builds foreign checkpoints with a tokenizer for the embedded world.
    allowed = {"srlm_exp/world/random_model.py"}
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "srlm_exp").rglob("*.py")
                 if "world" not in p.relative_to(REPO / "srlm_exp").parts[:1]
                 and "srlm_exp.world" in p.read_text() and str(p.relative_to(REPO)) not in allowed]
    assert offenders == []
