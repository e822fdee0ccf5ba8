"""The store's neighbour scoring (seq lookups) gives what the scan over every hit gave."""

from __future__ import annotations

import random

from memory.store.search import neighbour_scores


def _scan(hits: list[tuple[int, float]], extras: list[int]) -> list[float]:
    """The former rule: half the score of the nearest hit, the first listed on a tie."""
    by_seq = {seq: score for seq, score in hits}
    return [by_seq[min(by_seq, key=lambda s: abs(s - seq))] * 0.5 for seq in extras]


def test_matches_the_scan_over_every_hit() -> None:
    rng = random.Random(11)
    for _ in range(500):
        around = rng.randint(1, 3)
        seqs = rng.sample(range(200), rng.randint(1, 40))
        # best first, with ties in score (the store orders ties by seq)
        hits = sorted(((s, float(rng.randint(1, 5))) for s in seqs), key=lambda h: (-h[1], h[0]))
        near = sorted({s + d for s in seqs for d in range(-around, around + 1) if d}
                      - set(seqs))
        assert neighbour_scores(hits, near, around) == _scan(hits, near)


def test_a_neighbour_between_two_hits_takes_the_better_listed() -> None:
    assert neighbour_scores([(12, 0.4), (10, 0.2)], [11], 1) == [0.2]
    assert neighbour_scores([(10, 0.2), (12, 0.4)], [11], 1) == [0.1]


def test_far_neighbours_fall_back_to_the_nearest_hit() -> None:
    assert neighbour_scores([(1, 0.5), (9, 0.3)], [7], 1) == [0.15]
