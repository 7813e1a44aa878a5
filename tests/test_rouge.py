import pytest

from srlm_exp.generation.rouge import NoveltyFilter, rouge_l


def test_identical_and_case_punctuation():
    assert rouge_l("Write a poem about cats.", "write a poem about cats") == 1.0


def test_disjoint_and_empty():
    assert rouge_l("alpha beta", "gamma delta") == 0.0
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("anything", "") == 0.0
    assert rouge_l("...", "...") == 0.0  # no word tokens


def test_known_partial_lcs():
    # LCS = "the cat on mat" (4 of 6 and 6): F = 2*4/12
    assert rouge_l("the cat sat on the mat", "the cat lay on a mat") == pytest.approx(2 / 3)
    # classic example: LCS "the gunman" = 2 of 4 and 4 -> 0.5 (order matters, unlike overlap)
    assert rouge_l("police killed the gunman", "the gunman kill police") == pytest.approx(0.5)
    # unequal lengths: LCS 2, P = 2/2, R = 2/4 -> F = 2PR/(P+R) = 2/3
    assert rouge_l("a b c d", "a c") == pytest.approx(2 / 3)
    assert rouge_l("a c", "a b c d") == rouge_l("a b c d", "a c")


def test_novelty_filter_threshold_and_existing():
    f = NoveltyFilter(threshold=0.7, existing=["Write a poem about cats"])
    assert len(f) == 1
    assert not f.is_novel("write a poem about cats!")
    assert not f.is_novel("Write a short poem about cats")  # 2*5/11 = 0.91
    assert f.is_novel("Explain how vaccines work")
    # exactly at threshold is not novel: LCS 7 of 10 and 10 -> 0.7
    g = NoveltyFilter(0.7, ["a b c d e f g h i j"])
    assert not g.is_novel("a b c d e f g x y z")
    assert g.is_novel("a b c d e f x y z w")  # 0.6


def test_filter_removes_in_batch_duplicates():
    f = NoveltyFilter(existing=["What is the capital of France?"])
    batch = [
        "What is the capital of France",  # duplicate of existing
        "Name three prime numbers.",
        "name three prime numbers",  # duplicate within the batch
        "Translate 'hello' into Spanish.",
        "",
    ]
    assert f.filter(batch) == ["Name three prime numbers.", "Translate 'hello' into Spanish.", ""]
    assert len(f) == 4
    assert f.filter(["Name three prime numbers"]) == []
