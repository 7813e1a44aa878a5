"""ROUGE-L similarity and a novelty filter for de-duplicating generated prompts
(self-instruct keeps a new instruction only if its ROUGE-L to every kept one is < 0.7)."""

from __future__ import annotations

import re
from typing import Iterable


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (O(len(a)*len(b)) time, O(len(b)) memory)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for k, y in enumerate(b):
            cur.append(prev[k] + 1 if x == y else max(prev[k + 1], cur[k]))
        prev = cur
    return prev[-1]


def _f(a: list[str], b: list[str]) -> float:
    if not a or not b:
        return 0.0
    lcs = _lcs(a, b)
    return 2 * lcs / (len(a) + len(b))  # F1 of P = lcs/len(b), R = lcs/len(a)


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of the LCS over lowercased word tokens; 0.0 if either is empty."""
    return _f(_tokens(a), _tokens(b))


class NoveltyFilter:
    """Keeps texts whose ROUGE-L to every kept text is below `threshold`."""

    def __init__(self, threshold: float = 0.7, existing: Iterable[str] = ()):
        self.threshold = threshold
        self._kept: list[list[str]] = []
        for text in existing:
            self.add(text)

    def is_novel(self, text: str) -> bool:
        """True if max ROUGE-L of `text` against every kept text is < threshold."""
        t = _tokens(text)
        for k in self._kept:
            # F <= 2*min(len)/(sum len): skip the quadratic LCS when it can't reach threshold
            if 2 * min(len(t), len(k)) / max(len(t) + len(k), 1) < self.threshold:
                continue
            if _f(t, k) >= self.threshold:
                return False
        return True

    def add(self, text: str) -> None:
        """Remember `text` as kept."""
        self._kept.append(_tokens(text))

    def filter(self, texts: Iterable[str]) -> list[str]:
        """Return the novel texts, adding each as it is kept (so in-batch duplicates go too)."""
        out = []
        for text in texts:
            if self.is_novel(text):
                self.add(text)
                out.append(text)
        return out

    def __len__(self) -> int:
        return len(self._kept)
