"""Making AIFT(M(t)), the training data of M(t+1): the generation and judging phase of a self-rewarding
iteration, as one function of explicit inputs.

prompts.jsonl -> candidates.jsonl (N samples per prompt, each judged K times, raw judgments kept)
[-> meta_judgments.jsonl, judge_pairs.jsonl, meta_judge.json, with a meta-judge] -> pairs.jsonl + stats.json.
Each file is a phase: written completely or not at all, and read back instead of redone when a stopped job
is rerun. Under DDP every rank calls this: rank 0 writes the
prompts, each rank samples and judges its share of them, rank 0 writes the gathered results.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Sequence

from srlm_exp import layout
from srlm_exp.artifacts import read_jsonl, write_json, write_jsonl
from srlm_exp.data.seed_data import GroundTruth, SeedData
from srlm_exp.distributed import is_main, rank, share_from_main, split_map, world_size
from srlm_exp.generation.candidates import CandidateSampler
from srlm_exp.generation.curriculum import Curriculum
from srlm_exp.inference.sampler import seed_sampling
from srlm_exp.pairs.build import PairRule, build_pairs
from srlm_exp.phases import PhaseLog
from srlm_exp.records import JudgedCandidate, PromptCandidates

log = logging.getLogger(__name__)


def aift_done(out_dir: Path) -> bool:
    return all((Path(out_dir) / f).exists() for f in layout.AIFT_FILES)


def judged_candidates(model, tokenizer, prompts: Sequence[str], sampler: CandidateSampler, judge,
                      seed_data: SeedData, models, iteration: int) -> list[PromptCandidates]:
    """Sample every prompt's candidates, judge each K times, and grade it where the seed data can.
    `models` (the run's ModelStore) loads what the sampler and the judge need besides M(t) = `model`."""
    if world_size() > 1:
        log.info("rank %d of %d: sampling and judging %d prompts", rank(), world_size(), len(prompts))
    cands, sources = sampler.sample_in_loop(model, tokenizer, prompts, models)
    judged = judge.judge_in_loop(model, tokenizer, prompts, cands, models, iteration, batch_size=sampler.batch_size)
    graded = isinstance(seed_data, GroundTruth)
    rows = []
    for k, (prompt, texts, judgments, row_sources) in enumerate(zip(prompts, cands, judged, sources)):
        entries, family = [], None
        for text, judgment, source in zip(texts, judgments, row_sources):
            gt = seed_data.grade(prompt, text) if isinstance(seed_data, GroundTruth) else None  # = graded, narrowed
            family = family or (gt.family if gt is not None else None)
            entries.append(JudgedCandidate(text, len(tokenizer(text, add_special_tokens=False)["input_ids"]), judgment,
                                           graded=graded, gt_score=None if gt is None else gt.score,
                                           gt_correct=None if gt is None else gt.correct, source=source,
                                           finished=getattr(text, "finished", None)))
        rows.append(PromptCandidates(k, prompt, entries, family, sampler.cut_off))
    return rows


def make_aift(model, tokenizer, *, out_dir: Path, iteration: int, seed: int, prompt_source, sampler: CandidateSampler,
              judge, pair_rule: PairRule, seed_data: SeedData, earlier_prompts: Sequence[str],
              phases: PhaseLog, models, curriculum: Curriculum | None = None, meta_judge=None) -> dict[str, Any]:
    """Write AIFT(M(t)) into `out_dir` (M(t+1)'s iteration dir) with `model` = M(t); return its stats.

    `earlier_prompts` are every prompt of earlier iterations (new prompts must differ from them);
    `phases` records the time of each phase that runs; `models` (the run's ModelStore) loads any model
    besides M(t) that sampling or judging needs; `meta_judge` (Meta-Rewarding) also writes judge_pairs.jsonl."""
    out = Path(out_dir)
    # Separate streams: a resumed job that reads prompts back must still break pair ties the same way; each
    # sampled phase starts torch's stream at its own point (seed_sampling), so a resumed phase samples alike.
    prompt_rng = random.Random(f"self-reward-prompts:{seed}:{iteration}")
    pair_rng = random.Random(f"self-reward-pairs:{seed}:{iteration}")

    def prompts_phase() -> list[str]:
        out.mkdir(parents=True, exist_ok=True)
        if (out / layout.PROMPTS).exists():
            return [r["instruction"] for r in read_jsonl(out / layout.PROMPTS)]
        with phases.phase("prompts"):
            seed_sampling("self-reward-prompts", seed, iteration)  # a model that writes prompts samples them
            prompts = prompt_source.produce(model, tokenizer, seed_data, earlier_prompts, prompt_rng)
            write_jsonl(out / layout.PROMPTS, [{"prompt_id": i, "instruction": p} for i, p in enumerate(prompts)])
        return prompts

    # On rank 0 only: self-instruct filters novelty sequentially; the others get the result.
    prompts = share_from_main(prompts_phase)

    rows: list[PromptCandidates] | None = None
    if not share_from_main((out / layout.CANDIDATES).exists):
        with phases.phase("candidates_and_judging"):
            seed_sampling("self-reward-candidates", seed, iteration)
            rows = split_map(lambda part: judged_candidates(model, tokenizer, part, sampler, judge, seed_data,
                                                            models, iteration), prompts)
            for k, row in enumerate(rows):
                row.prompt_id = k
            if is_main():
                report = judge.loop_report()  # under DDP: rank 0's share of the prompts
                if report is not None:
                    write_json(out / layout.JUDGE_REPORT, report)
                write_jsonl(out / layout.CANDIDATES, [r.to_json() for r in rows])

    if meta_judge is not None and not share_from_main((out / layout.JUDGE_PAIRS).exists):
        with phases.phase("meta_judging"):
            seed_sampling("self-reward-meta-judging", seed, iteration)
            if rows is None:  # read once here, and the pairs phase below uses them too
                rows = [PromptCandidates.from_json(r) for r in read_jsonl(out / layout.CANDIDATES)]
            responses = meta_judge.select(rows)
            battles = meta_judge.battles(responses)
            texts = split_map(lambda part: meta_judge.meta_judgments(model, tokenizer, responses, part,
                                                                      sampler.batch_size), battles)
            if is_main():  # before stats.json: a rerun that finds the stats finds the judge pairs too
                judge_pairs, records, meta_stats = meta_judge.judge_pairs(judge, responses, battles, texts)
                write_jsonl(out / layout.META_JUDGMENTS, records)
                write_json(out / layout.META_JUDGE_STATS, meta_stats)
                write_jsonl(out / layout.JUDGE_PAIRS, judge_pairs)
                log.info("iteration %d meta-judge: %d judge pairs from %d responses (verdicts parsed: %s)", iteration,
                         len(judge_pairs), len(responses), meta_stats["parse_rate"])

    def pairs_phase() -> dict[str, Any]:
        if (out / layout.PAIRS).exists() and (out / layout.STATS).exists():
            return json.loads((out / layout.STATS).read_text())
        judged = rows if rows is not None else [PromptCandidates.from_json(r) for r in read_jsonl(out / layout.CANDIDATES)]
        if any(r.cut_off is not None and r.cut_off != sampler.cut_off for r in judged):
            # The cut-off rule says how candidates are trained on, not how they were made: candidates read back
            # (a branch --with-candidates with another rule) take this job's rule, in the file too, which the
            # stages that train on candidates.jsonl itself (RFT, RLOO, PPO) read.
            log.warning("iteration %d: applying callbacks.self_reward.cut_off=%s to the candidates read back from %s "
                        "(made with %s)", iteration, sampler.cut_off.rule, out / layout.CANDIDATES,
                        sorted({r.cut_off.rule for r in judged if r.cut_off is not None}))
            for r in judged:
                r.cut_off = sampler.cut_off if r.cut_off is not None else None
            write_jsonl(out / layout.CANDIDATES, [r.to_json() for r in judged])
        selected, report = (curriculum or Curriculum()).select(judged)
        if report is not None:  # before pairs.jsonl: a rerun that finds the pairs finds the selection too
            write_json(out / layout.CURRICULUM, report)
        pairs, stats = build_pairs(selected, pair_rule, pair_rng)
        if report is not None:
            stats["curriculum"] = {k: v for k, v in report.items() if k != "selected_prompt_ids"}
        if (out / layout.META_JUDGE_STATS).exists():
            stats["meta_judge"] = json.loads((out / layout.META_JUDGE_STATS).read_text())
        if (out / layout.JUDGE_REPORT).exists():  # the judge's own figures: into the summary and W&B
            stats["judge_report"] = json.loads((out / layout.JUDGE_REPORT).read_text())
        write_jsonl(out / layout.PAIRS, pairs)
        write_json(out / layout.STATS, stats)
        log.info("iteration %d data: %d prompts, %d pairs (%s)", iteration, len(prompts), len(pairs),
                 stats["pairs"]["dropped"])
        return stats

    return share_from_main(pairs_phase)  # also the barrier: the files exist when any rank returns
