"""Fail early and clearly: a catalogue of bad inputs, each refused before anything is built or trained,
with the key at fault named in the message and an existing job directory left as it was; and a job
directory that refuses to be resumed with a configuration other than its own."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import compose, run_job
from srlm_exp.checks import ConfigError
from srlm_exp.main import run
from srlm_exp.resume import check_resume
from srlm_exp.world import random_model


def _files(d: Path) -> dict[str, str]:
    """Every file of a job directory and its hash; Hydra's own `.hydra/` record is left out: Hydra rewrites
    it for every command on the directory before the job starts (the job's record is resolved_config.yaml)."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file() and ".hydra" not in p.relative_to(d).parts}


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {"empty": tmp / "empty.jsonl", "binary": tmp / "binary.jsonl", "malformed": tmp / "malformed.jsonl",
             "keyless": tmp / "keyless.jsonl", "a_dir": tmp / "a_dir"}
    files["empty"].write_text("")
    files["binary"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    files["malformed"].write_text('{"instruction": "What is the first letter of c a t?"}\n{"instruction": \n')
    files["keyless"].write_text('{"text": "What is the first letter of c a t?"}\n')
    files["a_dir"].mkdir()
    return files


@pytest.fixture(scope="module")
def foreign_models(tmp_path_factory) -> dict[str, str]:
    """Hugging Face checkpoints a user might point model.name_or_path at: a GPT-2 of 1,024 positions, one
    of 128 (too short for the judge prompt), and a directory whose config.json is not a model config."""
    root, texts = tmp_path_factory.mktemp("foreign"), random_model.world_texts()
    random_model.save_random_model("gpt2", texts, root / "gpt2")
    random_model.save_random_model("gpt2", texts, root / "gpt2_short", shape=random_model.Shape(positions=128))
    (root / "not_a_model").mkdir()
    (root / "not_a_model" / "config.json").write_text("{}")
    return {name: str(root / name) for name in ("gpt2", "gpt2_short", "not_a_model")}


# (overrides, the key the message must name); {name} is filled with a bad file from _bad_files.
CATALOGUE = [
    (["train.beta=0"], "train.beta"),                                       # DPO loss constant: nothing learned
    (["callbacks.self_reward.top_p=1.5"], "callbacks.self_reward.top_p"),
    (["data.sizes.ift=0"], "data.sizes.ift"),                               # M1 without instruction data
    (["prompts=dataset", "prompts.path={tmp}/missing.jsonl"], "prompts.path"),
    (["prompts=dataset", "prompts.path={empty}"], "prompts.path"),
    (["prompts=dataset", "prompts.path={binary}"], "prompts.path"),
    (["prompts=dataset", "prompts.path={malformed}"], "prompts.path"),
    (["prompts=dataset", "prompts.path={keyless}"], "prompts.path"),
    (["prompts=dataset", "prompts.path={a_dir}"], "prompts.path"),
    (["train.lr=-1.0"], "train.lr"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.micro_batch_size=999"], "train.micro_batch_size"),             # more rows per pass than the batch has
    (["seed_sft.micro_batch_size=0"], "seed_sft.micro_batch_size"),
    (["judge.temperature=-0.5"], "judge.temperature"),
    (["judge.score_range=[5,0]"], "judge.score_range"),
    (["seed_sft.lr=nan"], "seed_sft.lr"),
    (["callbacks.self_reward.max_new_tokens=0"], "callbacks.self_reward.max_new_tokens"),
    (["model=hf", "model.name_or_path={tmp}/no_such_model"], "model.name_or_path"),
    (["model=hf", "model.name_or_path={a_dir}"], "model.name_or_path"),     # a directory without config.json
    (["trainer.devices=0"], "trainer.devices"),
    (["judge.num_judgments=0"], "judge.num_judgments"),
    (["callbacks.self_reward.n_candidates=1"], "callbacks.self_reward.n_candidates"),
    (["train.loss_type=kto"], "train.loss_type"),
    (["train.reference=m2"], "train.reference"),
    (["seed_sft.min_lr=1.0"], "seed_sft.min_lr"),                            # above lr: the schedule would rise
    (["seed_sft.epochs=0"], "seed_sft.epochs"),
    (["train.max_steps=0"], "train.max_steps"),
    (["train=sft", "train.min_examples=0"], "train.min_examples"),
    (["data.sizes.eval=0"], "data.sizes.eval"),
    (["data.sizes.judge_eval=0"], "data.sizes.judge_eval"),
    (["data.sizes.eft_per_set=7"], "data.sizes.eft_per_set"),
    (["+data.sizes.evals=10"], "data.sizes.evals"),                         # a mistyped size
    (["loop.iterations=-1"], "loop.iterations"),
    (["eval.max_new_tokens=0"], "eval.max_new_tokens"),
    (["eval.sample_top_p=0"], "eval.sample_top_p"),
    (["eval.judge_model={tmp}/no_such_judge"], "eval.judge_model"),
    (["eval.judge_model={gpt2}", "eval.external_judge.num_judgments=0"], "eval.external_judge.num_judgments"),
    (["eval.judge_model={gpt2}", "judge@eval.external_judge=additive5"], "not a pairwise judge"),  # no compare()
    (["prompts=fixed", "prompts.generator_path={tmp}/no_such_generator"], "prompts.generator_path"),
    (["prompts.n_prompts=0"], "prompts.n_prompts"),
    (["prompts=self_instruct", "prompts.max_words=2"], "prompts.max_words"),  # below min_words
    (["judge=holistic5", "judge.top_p=0"], "judge.top_p"),
    (["train.max_len=long"], "train.max_len"),                             # auto or a token count
    (["model=hf", "model.name_or_path={not_a_model}"], "model.name_or_path"),  # config.json without a model_type
    (["model=hf", "model.name_or_path={gpt2}", "seed_sft.max_len=4096"], "seed_sft.max_len"),  # beyond 1,024 positions
    (["model=hf", "model.name_or_path={gpt2}", "train.max_len=2048"], "train.max_len"),
    (["model=hf", "model.name_or_path={gpt2}", "seed_sft.max_len=64"], "seed_sft.max_len"),  # EFT rows cannot fit
    (["model=hf", "model.name_or_path={gpt2}", "eval.max_new_tokens=1024"], "eval.max_new_tokens"),  # no room for a prompt
    (["model=hf", "model.name_or_path={gpt2_short}"], "judge.template"),   # the judge prompt exceeds 128 positions
]


@pytest.fixture(scope="module")
def existing_job(tmp_path_factory):
    """A job directory as a finished smoke job leaves it (its config and some artifacts)."""
    job = tmp_path_factory.mktemp("existing") / "job"
    job.mkdir()
    cfg = compose(["debug=smoke", "logger=none", f"+output_dir={job}"])
    (job / "resolved_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (job / "iteration_1").mkdir()
    (job / "iteration_1" / "eval_responses.jsonl").write_text('{"instruction": "x", "response": "y"}\n')
    (job / "summary.json").write_text('{"status": "finished", "iterations": []}\n')
    return job


def test_the_catalogue_has_at_least_25_cases():
    assert len(CATALOGUE) >= 25 and len({tuple(o) for o, _ in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("overrides,key", CATALOGUE, ids=[" ".join(o) for o, _ in CATALOGUE])
def test_bad_input_is_refused_before_anything_runs(overrides, key, existing_job, foreign_models, tmp_path, monkeypatch):
    files = {k: str(v) for k, v in _bad_files(tmp_path).items()} | foreign_models
    overrides = [o.format(tmp=tmp_path, **files) for o in overrides]
    before = _files(existing_job)
    import srlm_exp.loop

    monkeypatch.setattr(srlm_exp.loop.Loop, "run", lambda self: pytest.fail("the loop started"))
    cfg = compose(["debug=smoke", "logger=none", f"+output_dir={existing_job}", *overrides])
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert key in str(err.value), str(err.value)
    assert _files(existing_job) == before  # nothing written, nothing lost


def test_every_problem_is_reported_at_once(existing_job):
    cfg = compose(["debug=smoke", "logger=none", f"+output_dir={existing_job}", "train.beta=0", "judge.temperature=-1",
                   "data.sizes.ift=0", "trainer.devices=0"])
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert all(k in str(err.value) for k in ("train.beta", "judge.temperature", "data.sizes.ift", "trainer.devices"))


def test_a_changed_config_is_refused_on_resume_and_names_every_changed_key(existing_job):
    before = _files(existing_job)
    cfg = compose(["debug=smoke", "logger=none", f"+output_dir={existing_job}", "train=sft", "judge=holistic5"])
    with pytest.raises(ConfigError) as err:
        run(cfg)
    msg = str(err.value)
    assert "train._target_" in msg and "judge.name" in msg and "resume_anyway=true" in msg and "hydra.run.dir" in msg
    assert _files(existing_job) == before


def test_settings_that_change_no_artifact_do_not_count(existing_job):
    same = compose(["debug=smoke", "logger=wandb", f"+output_dir={existing_job}", "trainer.enable_progress_bar=true",
                    "train.micro_batch_size=1", "seed_sft.micro_batch_size=2"])  # the same steps, in smaller passes
    assert check_resume(existing_job, same) == []


def test_resume_anyway_resumes_and_keeps_the_old_config(tmp_path, existing_job):
    job = tmp_path / "job"
    job.mkdir()
    (job / "resolved_config.yaml").write_text((existing_job / "resolved_config.yaml").read_text())
    cfg = compose(["debug=smoke", "logger=none", f"+output_dir={existing_job}", "train.beta=0.2", "resume_anyway=true"])
    assert check_resume(job, cfg) == ["train.beta"]
    assert "beta: 0.1" in (job / "resolved_config.previous.yaml").read_text()


def test_an_unchanged_rerun_resumes_and_a_changed_one_exits_non_zero(smoke_run, tmp_path):
    """Through the command line, on a finished smoke job: the same command resumes (finished phases read
    back, exit 0); with another judge it exits non-zero before touching the job."""
    import shutil

    job = tmp_path / "job"
    shutil.copytree(smoke_run, job)
    before = _files(job)
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={job}"], tmp_path / "same.log")
    assert (job / "summary.json").exists()
    after_resume = _files(job)
    assert {k: v for k, v in after_resume.items() if "model" in k} == {k: v for k, v in before.items() if "model" in k}
    proc = run_job(["debug=smoke", "logger=none", "judge=holistic5", f"hydra.run.dir={job}"], tmp_path / "changed.log",
                   check=False)
    assert proc.returncode != 0
    log = (tmp_path / "changed.log").read_text()
    assert "judge.name" in log and "resume_anyway=true" in log
    assert _files(job) == after_resume
