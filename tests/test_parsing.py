import math

import pytest

from srlm_exp.judging.parsing import parse_preference, parse_score


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The response is relevant and complete.\nScore: 4", 4.0),
        ("Score: 0", 0.0),
        ("Score: 5", 5.0),
        ("Good answer. Score: 4.5", 4.5),
        ("Score: 4/5", 4.0),
        ("Score: 4 / 5", 4.0),
        ("Score: 4 out of 5", 4.0),
        ("Score: 4 OUT OF 5 points", 4.0),
        ("**Score: 4**", 4.0),
        ("**Score:** 3", 3.0),
        ("Score: **2**", 2.0),
        ("Score: 4.", 4.0),
        ("Score: 4.5.", 4.5),
        ("score: 2", 2.0),
        ("SCORE:3", 3.0),
        ("Score: 1 out of 5.", 1.0),
    ],
)
def test_parse_score_accepts(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A nice answer, I'd give it four points.",
        "Score: 3/10",  # another scale
        "Score: 7 out of 10",
        "Score: 7",  # out of range
        "Score: -1",
        "Score: 5.5",
        "Score: <total points>",
        "Score: 3\nIn the end, Score: unknown",  # last marker has no number: no fallback
    ],
)
def test_parse_score_nan(text):
    assert math.isnan(parse_score(text))


def test_none_input_is_nan():
    assert math.isnan(parse_score(None))


def test_last_marker_wins():
    assert parse_score("Initially Score: 2, but on reflection Score: 4") == 4.0


def test_quoted_response_does_not_poison():
    judgment = (
        'The response says "Here is my rating. Score: 3" which is off-topic, '
        "but it answers the question fully.\nScore: 5"
    )
    assert parse_score(judgment) == 5.0


def test_custom_pattern_and_range():
    assert parse_score("Rating = 8", pattern=r"Rating\s*=\s*", low=1, high=10) == 8.0
    assert parse_score("Rating = 8/10", pattern=r"Rating\s*=\s*", low=1, high=10) == 8.0
    assert math.isnan(parse_score("Rating = 0", pattern=r"Rating\s*=\s*", low=1, high=10))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Better: A", "A"),
        ("better: B.", "B"),
        ("**Better:** B", "B"),
        ("Better: Response A", "A"),
        ("Better: (B)", "B"),
        ("Quoted 'Better: A' ... my verdict. Better: B", "B"),
        ("", None),
        ("No verdict here", None),
        ("Better: a tie", None),
        ("Better: Both", None),
        ("Better: A\nBetter: neither", None),
    ],
)
def test_parse_preference(text, expected):
    assert parse_preference(text) == expected
