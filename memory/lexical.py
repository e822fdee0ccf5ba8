"""BM25 over messages, for in-process retrieval and the benchmark baseline.

Hand-written (about twenty lines) instead of depending on rank-bm25: the engine stays free of
third-party code at import time, and the scores are deterministic floats in input order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from memory.text import terms

__all__ = ["bm25_scores"]


def bm25_scores(query: str, docs: Sequence[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    tokenized = [terms(d) for d in docs]
    q = terms(query)
    n = len(docs)
    if not n or not q:
        return [0.0] * n
    avg = sum(len(t) for t in tokenized) / n or 1.0
    df: Counter[str] = Counter()
    for t in tokenized:
        df.update(set(t))
    scores: list[float] = []
    for t in tokenized:
        tf = Counter(t)
        score = 0.0
        for term in q:
            if term in tf:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                f = tf[term]
                score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(t) / avg))
        scores.append(score)
    return scores
