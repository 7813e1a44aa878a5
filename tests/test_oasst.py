"""Tests of the Open Assistant seed-data builder on a small committed fixture (no network)."""
from __future__ import annotations

import gzip
import json
import math
import random
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest

from srlm_exp.data.oasst import (
    Thread, first_turn_threads, ift_rows, load_oasst_messages, ranked_sets, select_eft,
    split_seed_data, write_split,
)

FIXTURE = Path(__file__).parent / "fixtures" / "oasst" / "oasst1_sample.jsonl"
FIELDS = {"message_id", "parent_id", "user_id", "created_date", "text", "role", "lang",
          "review_count", "review_result", "deleted", "rank", "synthetic", "model_name",
          "detoxify", "message_tree_id", "tree_state", "emojis", "labels"}
NAN = math.nan


@pytest.fixture(scope="module")
def messages():
    return load_oasst_messages(str(FIXTURE))


@pytest.fixture(scope="module")
def threads(messages):
    return first_turn_threads(messages)


def by_prompt(threads, start):
    (t,) = [t for t in threads if t.prompt.startswith(start)]
    return t


# ------------------------------------------------------------------------------ loading

def test_fixture_has_every_export_field(messages):
    assert FIXTURE.stat().st_size <= 40_000
    assert len(messages) == 62
    assert all(set(m) == FIELDS for m in messages)
    assert {m["role"] for m in messages} == {"prompter", "assistant"}


def test_gz_and_directory_sources_match_plain_jsonl(tmp_path, messages):
    gz = tmp_path / "dir" / "2023-04-12_oasst_ready.messages.jsonl.gz"
    gz.parent.mkdir()
    with open(FIXTURE, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert load_oasst_messages(str(gz)) == messages
    assert load_oasst_messages(str(gz.parent)) == messages


def test_missing_path_names_it_and_the_accepted_forms(tmp_path):
    missing = tmp_path / "nope" / "oasst.jsonl.gz"
    with pytest.raises(FileNotFoundError) as e:
        load_oasst_messages(str(missing))
    msg = str(e.value)
    assert str(missing) in msg and ".jsonl.gz" in msg and "hub dataset" in msg
    with pytest.raises(FileNotFoundError, match="no .jsonl"):
        load_oasst_messages(str(tmp_path))  # exists but holds no export


def test_hub_name_goes_to_datasets_load_dataset(monkeypatch):
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return [{"message_id": "m", "parent_id": None}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_oasst_messages("OpenAssistant/oasst1", split="validation") == [
        {"message_id": "m", "parent_id": None}]
    assert calls == [("OpenAssistant/oasst1", "validation")]


def test_trees_export_is_flattened(tmp_path):
    tree = {"message_tree_id": "t1", "tree_state": "ready_for_export", "prompt": {
        "message_id": "p", "role": "prompter", "text": "Hi?", "lang": "en", "replies": [
            {"message_id": "a", "role": "assistant", "text": "Hello.", "lang": "en", "rank": 0},
            {"message_id": "b", "role": "assistant", "text": "Go away.", "lang": "en", "rank": 1}]}}
    path = tmp_path / "x.trees.jsonl"
    path.write_text(json.dumps(tree) + "\n")
    (t,) = first_turn_threads(load_oasst_messages(str(path)))
    assert (t.prompt, t.replies, t.ranks, t.tree_id) == ("Hi?", ["Hello.", "Go away."], [0, 1], "t1")


# ------------------------------------------------------------------------------ threads

def test_first_turn_threads_filters(threads, messages):
    assert len(threads) == 12  # en01..en12
    prompts = {t.prompt for t in threads}
    assert not any(p.startswith(("Wie ", "¿")) for p in prompts)           # other languages
    assert "Tell me a joke about programmers." not in prompts               # no ranks
    assert "Is this prompt deleted?" not in prompts                         # deleted root
    assert len({t.tree_id for t in threads}) == 12
    roots = {m["message_tree_id"] for m in messages if m["parent_id"] is None}
    assert {t.tree_id for t in threads} <= roots
    for t in threads:
        assert t.ranks == sorted(t.ranks) and len(t.replies) == len(t.ranks)


def test_only_first_turn_replies(threads):
    haiku = by_prompt(threads, "Write a haiku")
    assert len(haiku.replies) == 2 and haiku.replies[0].startswith("Crimson leaves")
    assert not any("Winter" in r or "Silent snowfall" in r for t in threads for r in t.replies)
    assert all("Now one about winter." != t.prompt for t in threads)


def test_deleted_rejected_and_unranked_replies_dropped(threads):
    rev = by_prompt(threads, "How do I reverse")
    assert rev.ranks == [1, 2] and rev.replies[0] == "You can write my_list[::-1]."
    bakery = by_prompt(threads, "Suggest a name")
    assert bakery.replies == ["How about 'Rise & Shine Bakery'? It hints at bread rising and mornings.",
                              "Bread Place."]  # rank 2 was rejected by reviewers
    book = by_prompt(threads, "Recommend a book")
    assert book.ranks == [0] and len(book.replies) == 1


def test_wrong_language_error_names_counts(messages):
    with pytest.raises(ValueError) as e:
        first_turn_threads(messages, lang="fr")
    msg = str(e.value)
    assert "'fr'" in msg and "62 messages" in msg and "16 root prompts" in msg and "'en': 14" in msg
    assert len(first_turn_threads(messages, lang="de")) == 1


# ------------------------------------------------------------------------------ rows

def test_ift_takes_rank_zero_reply(threads):
    rows = ift_rows(threads)
    assert len(rows) == 11  # en03 lost its rank-0 reply: no runner-up promotion
    assert all(set(r) == {"instruction", "response"} for r in rows)
    by = {r["instruction"]: r["response"] for r in rows}
    assert by["How many legs does a spider have?"] == "Spiders have eight legs."
    assert by["What is the capital of Australia?"].startswith("The capital of Australia is Canberra")
    assert "How do I reverse a list in Python?" not in by
    assert ift_rows(threads, max_n=3) == rows[:3]


def test_ranked_set_scores(threads):
    sets = ranked_sets(threads)
    assert len(sets) == 11  # en11 has one ranked reply
    by = {s["instruction"]: s for s in sets}
    sky = by["Why is the sky blue?"]
    assert sky["scores"] == [3, 2, 1, 0] and sky["responses"][0].startswith("Sunlight is scattered")
    assert by["Translate 'good morning' into French."]["scores"] == [1, 0]
    assert by["How do I reverse a list in Python?"]["scores"] == [1, 0]  # ranks 1, 2 after a deletion
    assert len(ranked_sets(threads, min_replies=4)) == 2
    tie = Thread("q", ["a", "b", "c"], [0, 0, 1], "t")
    assert ranked_sets([tie])[0]["scores"] == [1, 1, 0]


# ------------------------------------------------------------------------------ split

def _trees_of(rows, index):
    return {index[r["instruction"]] for r in rows}


def test_split_disjoint_by_tree_and_deterministic(threads):
    index = {t.prompt: t.tree_id for t in threads}
    a = split_seed_data(threads, seed=3, n_eval=2, n_judge_eval=2, max_ift=4)
    assert [len(a[k]) for k in ("ift", "eval", "judge_eval")] == [4, 2, 2]
    trees = {k: _trees_of(v, index) for k, v in a.items()}
    names = list(trees)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            assert not trees[x] & trees[y], (x, y)
    assert len(set().union(*trees.values())) >= 11
    assert all(len(s["responses"]) >= 2 for s in a["judge_eval"] + a["eft_candidates"])
    assert all(set(r) == {"instruction"} for r in a["eval"])
    assert split_seed_data(threads, 3, 2, 2, 4) == a
    assert split_seed_data(list(reversed(threads)), 3, 2, 2, 4) == a  # export order irrelevant
    assert any(split_seed_data(threads, s, 2, 2, 4) != a for s in range(4, 10))


def test_split_rejects_too_many_held_out(threads):
    with pytest.raises(ValueError, match="12 trees, 11 of them"):
        split_seed_data(threads, 0, n_eval=5, n_judge_eval=8, max_ift=None)


# ------------------------------------------------------------------------------ select_eft

def _cand(n=3):
    return {"instruction": "q", "responses": [f"r{j}" for j in range(n)],
            "scores": list(range(n - 1, -1, -1))}


def _texts(scores):
    return [[[f"judgment {s}" for s in ks] for ks in set_] for set_ in scores]


def test_select_eft_keeps_agreeing_sets_only():
    cands = [_cand(), _cand(), _cand(), _cand()]
    scores = [
        [[5, 4, 5], [3, 3, 4], [1, 2, 1]],            # agrees
        [[3, 3, 3], [4, 4, 4], [1, 1, 1]],            # disagrees
        [[5, 5, 5], [NAN, NAN, None], [1, 1, 1]],     # a reply never parsed
        [[5, 5, 5], [4, 4, 4], [4, 4, 4]],            # tie where humans differ
    ]
    rows = select_eft(cands, scores, _texts(scores), random.Random(0), downsample_score=None)
    assert [(r["response"], r["score"], r["judgment"]) for r in rows] == [
        ("r0", 5, "judgment 5"), ("r1", 3, "judgment 3"), ("r2", 1, "judgment 1")]
    assert set(rows[0]) == {"instruction", "response", "judgment", "score"}


def test_select_eft_partial_nan_and_human_ties():
    cand = {"instruction": "q", "responses": ["a", "b", "c"], "scores": [1, 1, 0]}
    scores = [[[NAN, 4, 5], [5, 5, NAN], [2, NAN, NAN]]]  # a/b tie for humans: any order ok
    rows = select_eft([cand], scores, _texts(scores), random.Random(0), downsample_score=None)
    assert [(r["score"], r["judgment"]) for r in rows] == [
        (5, "judgment 5"), (5, "judgment 5"), (2, "judgment 2")]  # 4.5 -> judgment scoring 5


def test_select_eft_judgment_and_score_agree():
    scores = [[[4, 4, 2], [1, 1, 1]]]  # mean 3.33: no sample scored 3
    rows = select_eft([_cand(2)], scores, _texts(scores), random.Random(0), downsample_score=None)
    assert (rows[0]["score"], rows[0]["judgment"]) == (4, "judgment 4")


def test_select_eft_shape_errors():
    with pytest.raises(ValueError, match="candidate sets"):
        select_eft([_cand()], [], [], random.Random(0))
    with pytest.raises(ValueError, match="candidate set 0"):
        select_eft([_cand()], [[[1], [2]]], [[["x"], ["y"]]], random.Random(0))


@pytest.mark.parametrize("rng_factory", [random.Random, np.random.default_rng])
def test_downsampling_score_four(rng_factory):
    cands, scores = [], []
    for i in range(20):  # 20 sets: 18 rows scoring 4, 22 others
        cands.append({"instruction": f"q{i}", "responses": ["a", "b"], "scores": [1, 0]})
        scores.append([[4, 4, 4] if i < 18 else [5, 5, 5], [2, 2, 2] if i % 2 else [1, 2, 1]])
    full = select_eft(cands, scores, _texts(scores), rng_factory(0), downsample_score=None)
    assert Counter(r["score"] for r in full)[4] == 18
    rows = select_eft(cands, scores, _texts(scores), rng_factory(0), max_share=0.3)
    n4 = sum(r["score"] == 4 for r in rows)
    assert n4 == 9 and n4 <= 0.3 * len(rows) and len(rows) == 31  # floor(22 * 0.3 / 0.7) = 9
    assert select_eft(cands, scores, _texts(scores), rng_factory(0), max_share=0.3) == rows
    assert [r for r in full if r["score"] != 4] == [r for r in rows if r["score"] != 4]
    again = [select_eft(cands, scores, _texts(scores), rng_factory(s)) for s in range(1, 6)]
    assert any(x != rows for x in again)


# ------------------------------------------------------------------------------ write

def test_write_split_round_trips_through_datasets(tmp_path, threads):
    split = split_seed_data(threads, seed=0, n_eval=2, n_judge_eval=2, max_ift=4)
    paths = write_split(split, tmp_path / "seed")
    assert set(paths) == set(split)
    assert sorted(p.name for p in (tmp_path / "seed").iterdir()) == sorted(f"{k}.jsonl" for k in split)
    for name, path in paths.items():
        ds = datasets.load_dataset("json", data_files=str(path), split="train",
                                   cache_dir=str(tmp_path / "cache"))
        assert ds.to_list() == split[name]


def test_write_split_refuses_empty(tmp_path):
    with pytest.raises(ValueError, match="'eft'"):
        write_split({"ift": [{"instruction": "a", "response": "b"}], "eft": []}, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written

