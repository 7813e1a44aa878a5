"""Branch a job after M(t): a new job directory holding another job's seed data and models M0..M(t) with
their evaluations, which a rerun with other settings resumes from.

The paper's comparisons start every variant from the same M1 (its SFT baseline); an ablation of the judge,
the pair rule or the trainer changes nothing before AIFT(M1). On a real model the seed data, M0's and M1's
evaluations and M1's SFT are half of a job, so the variants branch from one finished M1 instead of each
remaking it:

    python -m srlm_exp.branch outputs/add_s0 outputs/oracle_s0            # after M1 (--through 1)
    python run.py <the first job's settings> judge=oracle hydra.run.dir=outputs/oracle_s0 resume_anyway=true

An ablation of M1's own training (no EFT: `data.eft=false`; IFT only from M0's passing answers; the SFT
settings) branches after M0 instead, keeping the seed data and M0's evaluation and training its own M1:

    python -m srlm_exp.branch outputs/add_s0 outputs/no_eft_s0 --through 0
    python run.py <the first job's settings> data.eft=false hydra.run.dir=outputs/no_eft_s0 resume_anyway=true

A kept evaluation is kept as it was: M0's judge metrics were taken with the source job's judge prompt, so a
variant with another judge prompt (judge=holistic5) runs its own job instead of branching.

The rerun lists the settings that differ from the first job's (`resume_anyway` keeps that job's config as
resolved_config.previous.yaml) and starts at M1's SFT (after M0) or at AIFT(M(t)). The source is only read.
What M(t) generated after it was evaluated (AIFT(M(t)), iteration_{t+1}/) is not copied: the branch makes its
own, unless `--with-candidates` copies its prompts and judged candidates too: variants of the trainer, the pair
rule or the cut-off rule (SFT vs DPO, RFT, `callbacks.self_reward.cut_off`) then train on the very same
candidates, which on a real model are the costliest phase of an iteration:

    python -m srlm_exp.branch outputs/oracle_s0 outputs/oracle_dpo_s0 --with-candidates
    python run.py <the first job's settings> train=dpo hydra.run.dir=outputs/oracle_dpo_s0 resume_anyway=true

The rerun then refuses any change to what made those candidates (the judge, the sampling, the prompts, the
model, the data, the seed: `resume.CANDIDATE_SETTINGS`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from srlm_exp import layout
from srlm_exp.artifacts import write_json
from srlm_exp.models.loading import is_model_dir




class BranchError(ValueError):
    """A branch that cannot be made; the message names the problem and the fix."""


def branch(source: str | Path, target: str | Path, through: int = 1, with_candidates: bool = False) -> Path:
    """Copy `source`'s data/, iteration_0..`through`/, its config and the summary entries of M0..M(through)
    (without AIFT(M(through))'s statistics, which the branch remakes) into the new directory `target`; with
    `with_candidates`, also AIFT(M(through))'s prompts and judged candidates (its pairs are remade)."""
    src, dst = Path(source), Path(target)
    summary_file = src / layout.SUMMARY
    if not summary_file.exists():
        raise BranchError(f"{src} is not a job directory (no summary.json): pass the directory a run.py job wrote")
    entries = {e["iteration"]: e for e in json.loads(summary_file.read_text()).get("iterations", [])}
    missing = [f"M{t}" for t in range(through + 1) if t not in entries]
    if through < 0:
        raise BranchError(f"--through {through}: branch after an evaluated model (0 = M0, 1 = M1, the paper's "
                          "shared SFT baseline)")
    # M0 lives in the cache or is the pretrained checkpoint: its iteration directory holds only its evaluation.
    if missing or (through >= 1 and not is_model_dir(layout.iteration_dir(src, through) / layout.MODEL)):
        raise BranchError(f"{src} has not evaluated M{through} yet (missing: {', '.join(missing) or 'its model'}): "
                          f"wait for the job to pass M{through}'s evaluation, or branch after an earlier model")
    aift_dir = layout.iteration_dir(src, through + 1)
    if with_candidates and (through < 1 or not (aift_dir / layout.CANDIDATES).exists()):
        raise BranchError(f"--with-candidates: {aift_dir / layout.CANDIDATES} does not exist (AIFT(M{through}) has not "
                          f"judged its candidates yet{'; M0 makes none' if through < 1 else ''}): wait for that phase, or "
                          "branch without --with-candidates so the rerun samples its own")
    if dst.exists() and any(dst.iterdir()):
        raise BranchError(f"{dst} exists and is not empty: branch into a new directory (nothing was copied)")
    dst.mkdir(parents=True, exist_ok=True)
    for part in [src / layout.DATA] + [layout.iteration_dir(src, t) for t in range(through + 1)]:
        if part.exists():
            shutil.copytree(part, dst / part.name)
    if with_candidates:  # not the pairs and their stats: the rerun makes them with its own rules
        (dst / aift_dir.name).mkdir()
        for name in (layout.PROMPTS, layout.CANDIDATES, layout.JUDGE_REPORT):
            if (aift_dir / name).exists():
                shutil.copy2(aift_dir / name, dst / aift_dir.name / name)
    shutil.copy2(src / layout.RESOLVED_CONFIG, dst / layout.RESOLVED_CONFIG)
    kept = [entries[t] for t in range(through + 1)]
    kept[-1] = {k: v for k, v in kept[-1].items() if k != "aift"}
    # The rerun writes its own job entry into summary.json; where its first models came from stays here.
    write_json(dst / layout.BRANCHED_FROM, {"source": str(src.resolve()), "through": f"M{through}",
                                            **({"candidates": f"AIFT(M{through})"} if with_candidates else {})})
    write_json(dst / layout.SUMMARY, {"job": {}, "status": "branched", "iterations": kept})
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m srlm_exp.branch", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a job directory that has evaluated M(through)")
    p.add_argument("target", help="the new job directory (must not exist or be empty)")
    p.add_argument("--through", type=int, default=1,
                   help="the last model copied (default 1: M1; 0: M0 only, the rerun trains its own M1)")
    p.add_argument("--with-candidates", action="store_true",
                   help="also copy AIFT(M(through))'s prompts and judged candidates: the rerun varies only how they are "
                        "trained on (train=, the pair rule, callbacks.self_reward.cut_off)")
    args = p.parse_args(argv)
    try:
        dst = branch(args.source, args.target, args.through, args.with_candidates)
    except BranchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shared = f" and the candidates of AIFT(M{args.through})" if args.with_candidates else ""
    print(f"{dst}: M0..M{args.through}{shared} of {args.source}. Resume it with other settings:\n"
          f"  python run.py <settings> hydra.run.dir={dst} resume_anyway=true")
    return 0


if __name__ == "__main__":
    sys.exit(main())
