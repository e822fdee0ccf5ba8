"""Semantic deduplication and clustering over embeddings the caller supplies.

Deterministic by construction: greedy passes in input order, no random initialisation, so the
same vectors always give the same groups (no seed can leak in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["cluster", "dedup", "dense_cosine"]


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
