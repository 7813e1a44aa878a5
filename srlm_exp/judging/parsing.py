"""Parse a judge's verdict (score or preference) from its generated text.

The caller must pass the judge's NEW tokens only: parsing the whole decoded text
(judge prompt + judged response + judgment) lets a response that contains
"Score: 3" poison its own score (SPEC §3). A failed parse is missing data: the score
parser returns NaN, never a default number, so it can't become a "rejected" response.
"""

from __future__ import annotations

import math
import re

_NUM = r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)"
# After the marker: optional markdown emphasis / brackets, the number, then an optional
# denominator ("4/5", "4 out of 5"). Anything after that (".", "**", text) is ignored.
_SCORE_VALUE = re.compile(
    rf"[\s*_\[(]*(?P<num>{_NUM})(?:\s*(?:/|out\s+of)\s*(?P<den>{_NUM}))?", re.IGNORECASE
)
# "A"/"B" are case-sensitive so that "Better: a tie" is not read as a vote for A.
_PREF_VALUE = re.compile(r"""[\s*_"'\[(]*(?:(?i:response)\s+)?(?P<ab>[AB])\b""")


def _last_marker_end(judgment: str, pattern: str) -> int | None:
    """End offset of the last case-insensitive match of `pattern`, or None."""
    end = None
    for m in re.finditer(pattern, judgment or "", re.IGNORECASE):
        end = m.end()
    return end


def parse_score(judgment: str, pattern: str = r"Score:\s*", low: float = 0, high: float = 5) -> float:
    """Return the score in `judgment` (the judge's new tokens only), or NaN.

    The LAST occurrence of `pattern` decides, so a response quoted earlier in the
    judgment cannot override the judge's own verdict; if that last marker is not
    followed by a number the result is NaN (no falling back to an earlier, possibly
    quoted, score). Accepts "4", "4.5", "4/5" and "4 out of 5" (denominator must equal
    `high`, otherwise it is another scale -> NaN), markdown bold and trailing
    punctuation. Scores outside [low, high] -> NaN.
    """
    end = _last_marker_end(judgment, pattern)
    if end is None:
        return math.nan
    m = _SCORE_VALUE.match(judgment, end)
    if m is None:
        return math.nan
    if m["den"] is not None and float(m["den"]) != high:
        return math.nan
    score = float(m["num"])
    return score if low <= score <= high else math.nan


def parse_preference(judgment: str, pattern: str = r"Better:\s*") -> str | None:
    """Return "A" or "B" from the LAST occurrence of `pattern`; None if missing/unparsable.

    Accepts "Better: A", "Better: **B**", "Better: Response A", "Better: (A)".
    """
    end = _last_marker_end(judgment, pattern)
    if end is None:
        return None
    m = _PREF_VALUE.match(judgment, end)
    return m["ab"] if m else None
