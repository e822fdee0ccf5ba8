"""BM25 over messages, and the light stemmer both it and the reranker use.

Hand-written instead of depending on rank-bm25 or nltk: the engine stays free of third-party
code at import time (it runs inside the workflow sandbox), and the scores are deterministic
floats in input order.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from memory.text import scripts_on, terms

__all__ = ["BM25Index", "bm25_scores", "stem", "stem_terms"]

_VOWELS = frozenset("aeiouy")
# Porter's step-2/3 derivational suffixes (the common ones), longest first.
_DERIVED = (("ational", "ate"), ("ization", "ize"), ("fulness", "ful"), ("ousness", "ous"),
            ("iveness", "ive"), ("tional", "tion"), ("biliti", "ble"), ("ation", "ate"),
            ("alism", "al"), ("aliti", "al"), ("iviti", "ive"), ("ement", ""), ("ness", ""),
            ("ment", ""), ("ful", ""), ("ical", "ic"), ("ator", "ate"))


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel-consonant sequences."""
    shape = "".join("v" if c in _VOWELS else "c" for c in stem)
    return len(re.findall(r"v+c+", shape))


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light Porter-style stemmer (plurals, -ed/-ing, -ly, common derivations), so that
    "painting", "painted" and "paints" meet, as they do in Postgres's `english` config.
    Not Snowball-exact; it only has to map a word's variants to one key consistently."""
    w = word.lower()
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ingly", "edly", "ing", "ed"):
        if w.endswith(suffix) and set(w[: -len(suffix)]) & _VOWELS and len(w) - len(suffix) > 2:
            w = w[: -len(suffix)]
            if w.endswith(("at", "bl", "iz")):
                w += "e"
            elif len(w) > 2 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]
            break
    if w.endswith("ly") and len(w) > 5:
        w = w[:-2]
    for suffix, repl in _DERIVED:
        if w.endswith(suffix) and _measure(w[: -len(suffix)]) > 0:
            w = w[: -len(suffix)] + repl
            break
    if w.endswith("y") and len(w) > 3 and w[-2] not in _VOWELS:
        w = w[:-1] + "i"
    if w.endswith("e") and _measure(w[:-1]) > 1:
        w = w[:-1]
    return w


def stem_terms(text: str) -> list[str]:
    """`memory.text.terms` (lower case, stop words out), stemmed."""
    return list(_stem_terms(text, scripts_on()))


@lru_cache(maxsize=16384)
def _stem_terms(text: str, scripts: bool) -> tuple[str, ...]:  # scripts: part of the key
    # Cached: the reranker and the near-duplicate pass see the same candidates on every call.
    return tuple(stem(t) for t in terms(text))


def bm25_scores(query: str, docs: Sequence[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Each document's Okapi BM25 score for `query`, in input order (`BM25Index`, built once)."""
    index = BM25Index(k1, b)
    for doc in docs:
        index.add(doc)
    scores = index.scores(query)
    return [scores.get(i, 0.0) for i in range(len(docs))]


class BM25Index:
    """BM25 over documents added one at a time: a library session of months searches it
    without re-tokenizing every message (that was 80% of a 50,000-message session's
    `get_context`, 943 ms). Scores are added per document in query order, so
    `bm25_scores` gives the floats its earlier, one-shot form gave."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self._k1, self._b = k1, b
        self._lengths: list[int] = []
        self._total = 0
        self._postings: dict[str, dict[int, int]] = {}  # term → document → its count there

    def add(self, doc: str) -> None:
        tokens = terms(doc)
        index = len(self._lengths)
        self._lengths.append(len(tokens))
        self._total += len(tokens)
        for term, count in Counter(tokens).items():
            self._postings.setdefault(term, {})[index] = count

    def scores(self, query: str) -> dict[int, float]:
        """Each document's score that has a query term (the others score 0), by position."""
        q = terms(query)
        n = len(self._lengths)
        if not n or not q:
            return {}
        k1, b = self._k1, self._b
        avg = self._total / n or 1.0
        out: dict[int, float] = {}
        for term in q:  # per document, in query order
            posting = self._postings.get(term)
            if not posting:
                continue
            df = len(posting)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for index, f in posting.items():
                out[index] = out.get(index, 0.0) + idf * f * (k1 + 1) / (
                    f + k1 * (1 - b + b * self._lengths[index] / avg))
        return out
