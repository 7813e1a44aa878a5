"""Seed data from Open Assistant (oasst1), as in Yuan et al. 2024 (SPEC §1.1).

IFT seed: first-turn English conversations, the assistant reply with human rank 0.
EFT seed: prompts with several human-ranked replies; the IFT-only model judges every
reply K times and a set is kept only when its mean scores order the replies as the
humans did (``select_eft``); the over-common score 4 is downsampled.

Input is the oasst1 message export: one JSON object per message, the fields of the hub
dataset ``OpenAssistant/oasst1`` (message_id, parent_id, user_id, created_date, text,
role, lang, review_count, review_result, deleted, rank, synthetic, model_name, detoxify,
message_tree_id, tree_state, emojis, labels). Fields are read with ``.get`` because the
raw ``*.messages.jsonl.gz`` export omits null fields.
"""
from __future__ import annotations

import gzip
import json
import logging
import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from srlm_exp import distributed
from srlm_exp.artifacts import read_jsonl, write_jsonl
from srlm_exp.data.seed_data import EFTJudgingTools, SeedData

__all__ = [
    "Thread", "load_oasst_messages", "first_turn_threads", "ift_rows", "ranked_sets",
    "split_seed_data", "select_eft", "write_split", "OasstSeedData",
]

log = logging.getLogger(__name__)

_LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz")
_ACCEPTED = ("a local .jsonl / .jsonl.gz file (or a directory holding such files), "
             "or a hub dataset name such as 'OpenAssistant/oasst1'")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class Thread:
    """A first-turn prompt and its ranked assistant replies, best first."""

    prompt: str
    replies: list[str]
    ranks: list[int]
    tree_id: str


# ------------------------------------------------------------------------------ loading

def _looks_local(source: str) -> bool:
    """True when ``source`` is meant as a file system path rather than a hub name."""
    if source.endswith(_LOCAL_SUFFIXES + (".gz", ".json")) or not _HUB_NAME.match(source):
        return True
    # "data/oasst" is a valid hub id too; if "data" exists here the user meant a path.
    return "/" in source and Path(source.split("/", 1)[0]).is_dir()


def _flatten_tree(node: dict, parent_id: str | None, tree: dict, out: list[dict]) -> None:
    """Flatten the ``*.trees.jsonl`` export (nested ``replies``) into message rows."""
    msg = {k: v for k, v in node.items() if k != "replies"}
    msg.setdefault("parent_id", parent_id)
    msg.setdefault("message_tree_id", tree.get("message_tree_id"))
    msg.setdefault("tree_state", tree.get("tree_state"))
    out.append(msg)
    for child in node.get("replies") or []:
        _flatten_tree(child, msg.get("message_id"), tree, out)


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    rows: list[dict] = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            if "message_id" not in row and isinstance(row.get("prompt"), dict):
                _flatten_tree(row["prompt"], None, row, rows)
            else:
                rows.append(row)
    return rows


def load_oasst_messages(source: str, split: str = "train") -> list[dict]:
    """Load oasst1 messages as a list of dicts (one per message).

    ``source`` is a local ``.jsonl``/``.jsonl.gz`` file, a directory of such files (read
    in name order; ``split`` is ignored for local sources), or a hub dataset name, loaded
    with ``datasets.load_dataset(source, split=split)`` (needs network or a warm cache).
    The nested ``*.trees.jsonl`` export is flattened to messages too.
    """
    source = str(source)
    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_LOCAL_SUFFIXES))
            if not files:
                raise FileNotFoundError(f"no .jsonl or .jsonl.gz file in directory {source!r}; "
                                        f"expected {_ACCEPTED}")
        elif path.name.endswith(_LOCAL_SUFFIXES):
            files = [path]
        else:
            raise ValueError(f"{source!r} is neither .jsonl nor .jsonl.gz; expected {_ACCEPTED}")
        return [row for f in files for row in _read_jsonl(f)]
    if _looks_local(source):
        raise FileNotFoundError(f"oasst source {source!r} does not exist; expected {_ACCEPTED}")
    import datasets  # deferred: only the hub path needs it

    return [dict(row) for row in datasets.load_dataset(source, split=split)]


# ------------------------------------------------------------------------------ threads

def _usable(msg: dict) -> bool:
    # review_result False = rejected by the OA reviewers; None (unreviewed) is kept.
    return not msg.get("deleted") and msg.get("review_result") is not False and bool(
        (msg.get("text") or "").strip())


def first_turn_threads(messages: Iterable[dict], lang: str = "en") -> list[Thread]:
    """First-turn threads: root prompter messages in ``lang`` with their ranked replies.

    A root is a prompter message with no parent. Only its *direct* assistant replies
    count (deeper turns are other conversations' context, not first-turn answers);
    deleted or reviewer-rejected messages and replies without a human rank are dropped,
    and roots left with no ranked reply are skipped. Replies are sorted by rank (then
    message id, for determinism). Threads come in export order.
    Raises ValueError naming what was seen when no thread is usable.
    """
    messages = list(messages)
    roots: list[dict] = []
    children: dict[str, list[dict]] = {}
    for m in messages:
        if m.get("parent_id") is None:
            if m.get("role") == "prompter":
                roots.append(m)
        else:
            children.setdefault(m["parent_id"], []).append(m)

    langs = Counter(r.get("lang") for r in roots)
    n_lang = n_live = 0
    threads: list[Thread] = []
    for root in roots:
        if root.get("lang") != lang:
            continue
        n_lang += 1
        if not _usable(root):
            continue
        n_live += 1
        replies = sorted(
            (c for c in children.get(root["message_id"], [])
             if c.get("role") == "assistant" and c.get("rank") is not None and _usable(c)),
            key=lambda c: (int(c["rank"]), str(c.get("message_id"))))
        if replies:
            threads.append(Thread(
                prompt=root["text"], replies=[c["text"] for c in replies],
                ranks=[int(c["rank"]) for c in replies],
                tree_id=str(root.get("message_tree_id") or root["message_id"])))
    if not threads:
        raise ValueError(
            f"no usable first-turn thread for lang={lang!r}: {len(messages)} messages, "
            f"{len(roots)} root prompts (by lang: {dict(langs.most_common(10))}), {n_lang} in "
            f"{lang!r}, {n_live} of them neither deleted nor rejected, 0 with a ranked reply")
    return threads


def ift_rows(threads: Sequence[Thread], max_n: int | None = None) -> list[dict]:
    """IFT rows ``{"instruction", "response"}`` from the rank-0 reply of each thread.

    Threads whose rank-0 reply is gone (deleted) are skipped rather than promoting the
    runner-up: the paper's IFT seed is human rank 0 only. ``max_n`` keeps the first n.
    """
    rows = [{"instruction": t.prompt, "response": t.replies[0]}
            for t in threads if t.ranks and t.ranks[0] == 0]
    return rows if max_n is None else rows[:max_n]


def _human_scores(ranks: Sequence[int]) -> list[int]:
    # Dense re-ranking: deleted replies leave gaps (ranks 0, 2) and n-1-rank would go
    # negative; with contiguous ranks 0..n-1 this is exactly n-1-rank. Equal ranks tie.
    distinct = sorted(set(ranks))
    top = len(distinct) - 1
    return [top - distinct.index(r) for r in ranks]


def ranked_sets(threads: Sequence[Thread], min_replies: int = 2) -> list[dict]:
    """Human-ranked sets ``{"instruction", "responses", "scores"}``, higher score = better.

    ``scores[j] = n - 1 - rank[j]`` (ranks re-numbered densely after dropped replies);
    responses are best first. Threads with fewer than ``min_replies`` replies are skipped.
    """
    return [{"instruction": t.prompt, "responses": list(t.replies), "scores": _human_scores(t.ranks)}
            for t in threads if len(t.replies) >= max(min_replies, 1)]


# ------------------------------------------------------------------------------ splits

def split_seed_data(threads: Sequence[Thread], seed: int, n_eval: int, n_judge_eval: int,
                    max_ift: int | None) -> dict[str, list[dict]]:
    """Split threads by message tree into ``ift``, ``eft_candidates``, ``eval``, ``judge_eval``.

    Trees are shuffled with ``seed`` (after sorting by tree id, so the export's order does
    not matter). In that order: the first ``n_judge_eval`` trees with >= 2 ranked replies
    become ``judge_eval`` (held-out ranked sets); the first ``n_eval`` other trees become
    ``eval`` (``{"instruction"}``); of the rest, trees with a rank-0 reply go to ``ift`` up
    to ``max_ift`` (None = no cap: EFT then gets only trees that lost their rank-0 reply; the
    paper capped IFT at 3,200), and every remaining tree
    with >= 2 replies is an EFT candidate. No tree is in two splits, so the IFT-only model
    never judges replies to a prompt it was trained on.
    """
    by_tree: dict[str, list[Thread]] = {}
    for t in threads:
        by_tree.setdefault(t.tree_id, []).append(t)
    order = sorted(by_tree)
    random.Random(f"oasst-split:{seed}").shuffle(order)

    def rankable(tid: str) -> bool:
        return any(len(t.replies) >= 2 for t in by_tree[tid])

    n_rankable = sum(map(rankable, order))
    if n_judge_eval > n_rankable or n_judge_eval + n_eval > len(order):
        raise ValueError(
            f"asked for n_judge_eval={n_judge_eval} + n_eval={n_eval} held-out trees but there "
            f"are {len(order)} trees, {n_rankable} of them with >= 2 ranked replies")
    judge_ids = [tid for tid in order if rankable(tid)][:n_judge_eval]
    held = set(judge_ids)
    rest = [tid for tid in order if tid not in held]
    eval_ids, rest = rest[:n_eval], rest[n_eval:]

    ift: list[dict] = []
    eft_ids: list[str] = []
    for tid in rest:
        rows = ift_rows(by_tree[tid])
        if rows and (max_ift is None or len(ift) < max_ift):
            ift.extend(rows)
        else:
            eft_ids.append(tid)

    def sets(ids: list[str]) -> list[dict]:
        return ranked_sets([t for tid in ids for t in by_tree[tid]])

    return {
        "ift": ift,
        "eft_candidates": sets(eft_ids),
        "eval": [{"instruction": t.prompt} for tid in eval_ids for t in by_tree[tid]],
        "judge_eval": sets(judge_ids),
    }


# ------------------------------------------------------------------------------ EFT filter

def _as_score(x: Any) -> float:
    return math.nan if x is None else float(x)


def _orders_like(means: Sequence[float], human: Sequence[float]) -> bool:
    """Every pair with different human scores is ordered the same way, strictly, by ``means``."""
    n = len(human)
    return all((means[a] - means[b]) * (human[a] - human[b]) > 0
               for a in range(n) for b in range(a + 1, n) if human[a] != human[b])


def _sample_indices(rng: Any, n: int, k: int) -> list[int]:
    if hasattr(rng, "sample"):  # random.Random
        return rng.sample(range(n), k)
    return [int(i) for i in rng.choice(n, size=k, replace=False)]  # numpy Generator


def select_eft(candidates: list[dict], judged_scores: list[list[list[float]]],
               judgments: list[list[list[str]]], rng: Any,
               downsample_score: int | None = 4, max_share: float = 0.3) -> list[dict]:
    """Keep the EFT examples whose judge scores agree with the human ranking (the paper's filter).

    ``judged_scores[i][j]`` are the K parsed scores (NaN/None = unparseable) the IFT-only
    model gave reply j of ``candidates[i]``, ``judgments[i][j]`` the matching raw texts.
    A set is kept only if every reply has a valid score and the mean scores order the
    replies strictly as the human ``scores`` do for every differently-ranked pair. Each
    reply of a kept set yields ``{"instruction", "response", "judgment", "score"}`` with
    the judgment whose parsed score is closest to the mean (ties go to one scoring
    round(mean), then the first). ``score`` is that judgment's parsed score, which equals
    round(mean) whenever any sample scored round(mean); it differs only when none did
    (e.g. 4, 4, 2), and then the training text and the label still agree.
    Rows scoring ``downsample_score`` are then randomly thinned (``rng``: random.Random or
    numpy Generator) to at most ``max_share`` of the result, order preserved.
    """
    if not (len(candidates) == len(judged_scores) == len(judgments)):
        raise ValueError(f"{len(candidates)} candidate sets but {len(judged_scores)} score "
                         f"lists and {len(judgments)} judgment lists")
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share must be in [0, 1], got {max_share}")
    rows: list[dict] = []
    dropped: Counter[str] = Counter()
    for i, (cand, set_scores, set_texts) in enumerate(zip(candidates, judged_scores, judgments)):
        n = len(cand["responses"])
        if len(set_scores) != n or len(set_texts) != n or len(cand["scores"]) != n:
            raise ValueError(f"candidate set {i}: {n} responses, {len(cand['scores'])} human scores, "
                             f"{len(set_scores)} score lists, {len(set_texts)} judgment lists")
        valid: list[list[tuple[float, str]]] = []
        for j, (ks, ts) in enumerate(zip(set_scores, set_texts)):
            if len(ks) != len(ts):
                raise ValueError(f"candidate set {i} reply {j}: {len(ks)} scores but {len(ts)} judgments")
            valid.append([(s, t) for s, t in zip(map(_as_score, ks), ts) if not math.isnan(s)])
        if not all(valid):
            dropped["unparseable"] += 1
            continue
        means = [sum(s for s, _ in v) / len(v) for v in valid]
        if not _orders_like(means, cand["scores"]):
            dropped["disagree"] += 1
            continue
        for response, v, mean in zip(cand["responses"], valid, means):
            target = math.floor(mean + 0.5)  # half up: Python's round() sends 2.5 to 2
            score, text = min(v, key=lambda st: (abs(st[0] - mean), st[0] != target))
            rows.append({"instruction": cand["instruction"], "response": response, "judgment": text,
                         "score": int(score) if float(score).is_integer() else score})

    n_before = len(rows)
    if downsample_score is not None and max_share < 1.0:
        common = [k for k, r in enumerate(rows) if r["score"] == downsample_score]
        n_other = len(rows) - len(common)
        # Largest c with c <= max_share * (c + n_other); the epsilon absorbs float error at exact shares.
        cap = int(math.floor(n_other * max_share / (1.0 - max_share) + 1e-9))
        if len(common) > cap:
            keep = set(_sample_indices(rng, len(common), cap))
            drop = {k for pos, k in enumerate(common) if pos not in keep}
            rows = [r for k, r in enumerate(rows) if k not in drop]
    log.info("select_eft: kept %d of %d sets (%d unparseable, %d disagreeing with humans); "
             "%d rows, %d after downsampling score %s", len(candidates) - sum(dropped.values()),
             len(candidates), dropped["unparseable"], dropped["disagree"], n_before, len(rows),
             downsample_score)
    return rows


# ------------------------------------------------------------------------------ writing

def write_split(rows_by_name: dict[str, list[dict]], out_dir: str | Path) -> dict[str, Path]:
    """Write each split to ``out_dir/<name>.jsonl`` atomically; return the paths.

    Files load with ``datasets.load_dataset("json", data_files=..., split="train")``.
    An empty split is an error: the json loader cannot read an empty file, and an empty
    seed set must stop the run here rather than at training time.
    """
    out_dir = Path(out_dir)
    for name, rows in rows_by_name.items():
        if not name or Path(name).name != name:
            raise ValueError(f"split name {name!r} must be a plain file name")
        if not rows:
            raise ValueError(f"split {name!r} has no rows; refusing to write an empty file")
    return {name: write_jsonl(out_dir / f"{name}.jsonl", rows) for name, rows in rows_by_name.items()}


# ------------------------------------------------------------------------------ the seed-data source

class OasstSeedData(SeedData):
    """Open Assistant seed data (SPEC §1.1). IFT: first-turn English replies of human rank 0.
    EFT the paper's way (ModelJudgedEFT): before M1, an IFT-only SFT model judges ranked replies K
    times; only sets whose scores order the replies like the humans are kept."""

    def __init__(self, name: str, source: str, seed: int, eft: bool = True, lang: str = "en", n_eval: int = 253,
                 n_judge_eval: int = 100, max_ift: int | None = 3200, max_eft_sets: int | None = 1000,
                 downsample_score: int | None = 4, max_share: float = 0.3, sizes: dict | None = None):
        if sizes:  # debug=smoke shrinks every data source through data.sizes
            max_ift, n_eval = sizes.get("ift", max_ift), sizes.get("eval", n_eval)
            n_judge_eval = sizes.get("judge_eval", n_judge_eval)
            max_eft_sets = sizes.get("eft", max_eft_sets)
        self.name, self.source, self.seed, self.use_eft, self.lang = name, source, int(seed), bool(eft), lang
        self.n_eval, self.n_judge_eval, self.max_ift, self.max_eft_sets = n_eval, n_judge_eval, max_ift, max_eft_sets
        self.downsample_score, self.max_share = downsample_score, max_share
        self.files: dict[str, Path] = {}

    def build(self, out_dir: str | Path) -> "OasstSeedData":
        out_dir = Path(out_dir)
        names = ("ift", "eft_candidates", "eval", "judge_eval")
        if all((out_dir / f"{n}.jsonl").exists() for n in names):
            self.files = {n: out_dir / f"{n}.jsonl" for n in names}
        else:
            threads = first_turn_threads(load_oasst_messages(self.source), lang=self.lang)
            splits = split_seed_data(threads, self.seed, self.n_eval, self.n_judge_eval, self.max_ift)
            if self.max_eft_sets is not None:
                splits["eft_candidates"] = splits["eft_candidates"][: self.max_eft_sets]
            self.files = write_split(splits, out_dir)
        self.files["eft_graded"] = out_dir / "eft_graded.jsonl"
        return self

    def eft_candidates(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files["eft_candidates"])

    def ranked_sets(self) -> list[dict[str, Any]]:
        """Human-ranked reply sets for a reward model (RankedResponses): the EFT candidates, never the
        held-out judge_eval trees."""
        return self.eft_candidates()

    def build_eft(self, tools: EFTJudgingTools) -> None:
        """Make data/eft_graded.jsonl (once: a resumed job finds it): the IFT-only model judges every
        ranked set K times and the sets it orders like the humans become EFT rows."""
        target = self.files["eft_graded"]
        if not self.use_eft or distributed.share_from_main(target.exists):
            return
        model = tools.load(tools.train_ift_only())
        sets = self.eft_candidates()
        judged = distributed.split_map(lambda part: tools.judge.judge(
            model, tools.tokenizer, [s["instruction"] for s in part], [s["responses"] for s in part],
            batch_size=tools.batch_size, desc="EFT judging"), sets)
        tools.release(model)
        rows = select_eft(sets, [[j.scores for j in js] for js in judged], [[j.texts for j in js] for js in judged],
                          random.Random(self.seed), downsample_score=self.downsample_score, max_share=self.max_share)
        if distributed.is_main():
            write_jsonl(target, rows)
        distributed.barrier()
        log.info("EFT: kept %d judged replies from %d ranked sets", len(rows), len(sets))

    def eft_graded(self) -> list[dict[str, Any]]:
        if not self.use_eft:
            return []
        if not self.files["eft_graded"].exists():
            raise FileNotFoundError(f"{self.files['eft_graded']} is made by the IFT-only model's judging stage "
                                    "(build_eft), which the loop runs before M1")
        return read_jsonl(self.files["eft_graded"])

    def eft_preference_pairs(self) -> list[dict[str, Any]]:
        """Best vs worst human-ranked reply of each EFT set (pairwise judges)."""
        if not self.use_eft:
            return []
        return [{"instruction": s["instruction"],
                 "chosen": s["responses"][max(range(len(s["scores"])), key=s["scores"].__getitem__)],
                 "rejected": s["responses"][min(range(len(s["scores"])), key=s["scores"].__getitem__)]}
                for s in self.eft_candidates() if len(set(s["scores"])) > 1]
