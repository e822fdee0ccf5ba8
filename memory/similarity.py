"""Deduplication and clustering: over embeddings the caller supplies, or over message text.

Deterministic by construction: greedy passes in input order, no random initialisation, so the
same input always gives the same groups (no seed can leak in). `near_duplicates` works on text
alone, so the reranker can use it on recorded candidates with no embedder at hand.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from memory.lexical import stem_terms

__all__ = ["cluster", "dedup", "dense_cosine", "near_duplicates"]

MIN_TERMS = 3  # a shorter text ("Thanks!", "Yes, it was") means what its context says


def dense_cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def dedup(embeddings: Sequence[Sequence[float]], threshold: float = 0.95) -> dict[int, int]:
    """Map each near-duplicate's index to the earlier index it repeats (cosine >= threshold)."""
    kept: list[int] = []
    duplicates: dict[int, int] = {}
    for i, vec in enumerate(embeddings):
        match = next((k for k in kept if dense_cosine(vec, embeddings[k]) >= threshold), None)
        if match is None:
            kept.append(i)
        else:
            duplicates[i] = match
    return duplicates


def cluster(embeddings: Sequence[Sequence[float]], threshold: float = 0.6) -> list[list[int]]:
    """Leader clustering: each item joins the most similar existing leader above `threshold`."""
    leaders: list[int] = []
    groups: list[list[int]] = []
    for i, vec in enumerate(embeddings):
        best, best_sim = -1, threshold
        for g, leader in enumerate(leaders):
            sim = dense_cosine(vec, embeddings[leader])
            if sim >= best_sim and (best == -1 or sim > best_sim):
                best, best_sim = g, sim
        if best == -1:
            leaders.append(i)
            groups.append([i])
        else:
            groups[best].append(i)
    return groups


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
