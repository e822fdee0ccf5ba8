"""near_duplicates at any threshold, with and without groups, against comparing every pair:
the prefix-filtered pass must find exactly what the definition says, whatever the order it
ranks terms by internally (tests/unit/test_retrieval.py covers the default threshold)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.lexical import stem_terms
from memory.similarity import MIN_TERMS, near_duplicates
from tests.unit.strategies import WORDS


def _pairwise(texts: list[str], threshold: float, groups: list[str] | None) -> dict[int, int]:
    sets = [frozenset(stem_terms(t)) for t in texts]
    expected: dict[int, int] = {}
    for i, j in itertools.product(range(len(sets)), repeat=2):
        if j >= i or i in expected or j in expected \
                or min(len(sets[i]), len(sets[j])) < MIN_TERMS:
            continue
        if groups is not None and groups[i] != groups[j]:
            continue
        shared = len(sets[i] & sets[j])
        if shared / (len(sets[i]) + len(sets[j]) - shared) >= threshold:
            expected[i] = j
    return expected


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(WORDS[:12]), min_size=1, max_size=12)
                          .map(" ".join), st.sampled_from(["Caroline", "Melanie", "tool"])),
                max_size=30),
       st.sampled_from([0.5, 0.6, 0.75, 0.8, 0.9, 0.95, 1.0]), st.booleans())
def test_near_duplicates_equal_a_pairwise_scan_at_any_threshold(
        rows: list[tuple[str, str]], threshold: float, grouped: bool) -> None:
    texts = [t for t, _ in rows]
    groups = [g for _, g in rows] if grouped else None
    assert near_duplicates(texts, threshold, groups) == _pairwise(texts, threshold, groups)
