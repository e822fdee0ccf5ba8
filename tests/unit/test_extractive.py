"""The linear-time extractive pass chooses what the quadratic one did, and stays fast.

The fast path (an incremental meter for the heuristic counter, centrality through the sum of
all vectors, redundancy checked through shared terms) is compared with the generic path, which
renders and counts the whole text for every candidate exactly as the original code did.
"""

from __future__ import annotations

import math
import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.extractive import _HeuristicMeter, centralities, extractive_summary
from memory.models import Message
from memory.text import cosine, tfidf_vectors
from memory.tokens import HeuristicCounter
from tests.unit.strategies import conversations

HEURISTIC = HeuristicCounter()


class _SameCounts:
    """HeuristicCounter's counts under another type, which sends the summary down the
    generic path that re-renders and re-counts the text for every candidate."""

    name = "heuristic-generic"

    def count(self, text: str) -> int:
        return HEURISTIC.count(text)

    def count_message(self, role: str, content: str) -> int:
        return HEURISTIC.count_message(role, content)


line_text = st.text(min_size=0, max_size=80).filter(
    lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t))


@settings(max_examples=300, deadline=None)
@given(st.lists(line_text, min_size=1, max_size=25))
def test_meter_counts_exactly_what_the_heuristic_counts(lines: list[str]) -> None:
    meter = _HeuristicMeter()
    for n, line in enumerate(lines):
        stats = meter.stats(line)
        assert meter.count_with(stats) == HEURISTIC.count("\n".join(lines[: n + 1]))
        meter.add(stats)
        assert meter.count() == HEURISTIC.count("\n".join(lines[: n + 1]))


@settings(max_examples=300, deadline=None)
@given(conversations(), st.integers(1, 400), st.sampled_from([None, "refund", "Caroline order"]))
def test_fast_path_chooses_what_recounting_every_candidate_chooses(
    convo: list[Message], budget: int, focus: str | None
) -> None:
    fast = extractive_summary(convo, budget, focus=focus, counter=HEURISTIC)
    slow = extractive_summary(convo, budget, focus=focus, counter=_SameCounts())
    assert fast == slow


words = st.sampled_from("order parcel refund Caroline London invoice 4711 May deploy".split())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(words, min_size=1, max_size=8), min_size=1, max_size=30))
def test_centrality_is_the_mean_cosine_with_every_other_sentence(
    docs: list[list[str]]
) -> None:
    vectors = tfidf_vectors(docs)
    n = len(vectors)
    expected = [1.0] if n == 1 else [
        math.fsum(cosine(v, w) for j, w in enumerate(vectors) if j != i) / (n - 1)
        for i, v in enumerate(vectors)]
    for got, want in zip(centralities(vectors), expected, strict=True):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)


def test_equal_sentences_go_to_the_earliest() -> None:
    convo = [Message(id="m1", role="user", content="Thanks, Nate!", name="Joanna"),
             Message(id="m2", role="user", content="The parcel left Leeds on Friday.",
                     name="Nate"),
             Message(id="m3", role="user", content="Thanks Nate!", name="Joanna")]
    result = extractive_summary(convo, 100, counter=HEURISTIC)
    assert "m1" in result.quoted_ids and "m3" not in result.quoted_ids


def _chat(n: int, seed: int = 7) -> list[Message]:
    """A long, varied synthetic chat: names, numbers and a vocabulary of a few hundred words."""
    rng = random.Random(seed)
    vocab = [f"{stem}{k}" for stem in ("plan", "trip", "book", "dog", "paint", "race")
             for k in range(60)]
    names = ("Caroline", "Melanie", "Jon", "Gina")
    out = []
    for i in range(n):
        said = [" ".join(rng.choices(vocab, k=rng.randint(4, 14))).capitalize()
                + rng.choice([".", "!", "?"]) + (f" It cost {rng.randint(1, 999)}."
                                                 if rng.random() < 0.3 else "")
                for _ in range(rng.randint(1, 3))]
        out.append(Message(id=f"m{i}", role="user", content=" ".join(said),
                           name=names[i % len(names)]))
    return out


def test_extractive_is_fast_and_grows_about_linearly() -> None:
    """200 messages within the 150 ms compaction budget (with slack for a busy machine), and
    5x the messages costing nowhere near 25x (the quadratic version took 8 s for 1,000)."""
    small, large = _chat(200), _chat(1000)
    extractive_summary(small, 1000)  # warm regexes and caches

    def best_of_3(convo: list[Message]) -> float:
        times = []
        for _ in range(3):
            started = time.process_time()
            extractive_summary(convo, 1000, focus="trip plan")
            times.append(time.process_time() - started)
        return min(times)

    t_small, t_large = best_of_3(small), best_of_3(large)
    assert t_small < 0.15
    assert t_large < 12 * t_small + 0.05
