"""Semantic deduplication of retrieved candidates, over their text.

`near_duplicates` works on text alone, so the reranker can use it on recorded candidates with
no embedder at hand, and a replay reproduces it. Deterministic: one pass in input order.
(Embedding-based dedup and leader clustering lived here too; nothing in the product called
them, and on LoCoMo near-duplicate removal of any kind changed recall by nothing, so they went:
bench/quality_engine.py's ablation keeps the text form, which matters for re-sent messages.)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from memory.lexical import stem_terms

__all__ = ["near_duplicates"]

MIN_TERMS = 3  # a shorter text ("Thanks!", "Yes, it was") means what its context says


def near_duplicates(texts: Sequence[str], threshold: float = 0.9,
                    groups: Sequence[str] | None = None) -> dict[int, int]:
    """Map each near-duplicate's index to the earlier index it repeats: the Jaccard similarity
    of their stemmed term sets is at least `threshold`, and (with `groups`, e.g. speakers) they
    are in the same group. Texts with fewer than MIN_TERMS terms are never duplicates.

    Near-linear by prefix filtering (Chaudhuri et al. 2006): with terms ordered rarest first,
    two sets that reach the threshold share a term among the first |A| - ceil(t|A|) + 1 of
    each, so only texts sharing such a term are ever compared."""
    sets = [frozenset(stem_terms(t)) for t in texts]
    df: dict[str, int] = defaultdict(int)
    for terms in sets:
        for term in terms:
            df[term] += 1
    index: dict[str, list[int]] = defaultdict(list)
    duplicates: dict[int, int] = {}
    for i, terms in enumerate(sets):
        if len(terms) < MIN_TERMS:
            continue
        prefix = sorted(terms, key=lambda term: (df[term], term))[
            : len(terms) - math.ceil(threshold * len(terms) - 1e-9) + 1]
        seen: set[int] = set()
        for j in sorted({j for term in prefix for j in index[term]}):
            if j in seen:
                continue
            seen.add(j)
            shared = len(terms & sets[j])
            if shared / (len(terms) + len(sets[j]) - shared) >= threshold and (
                    groups is None or groups[i] == groups[j]):
                duplicates[i] = j
                break
        else:
            for term in prefix:
                index[term].append(i)
    return duplicates
