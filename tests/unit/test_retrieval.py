"""The reranker and its helpers: pure, deterministic, and each signal doing what it says."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.lexical import stem, stem_terms
from memory.models import Message, ScoredMessage
from memory.retrieval import (
    RerankPolicy,
    candidate_count,
    content_query,
    has_content,
    named_speakers,
    rerank,
)
from memory.similarity import _term_set, near_duplicates
from tests.unit.strategies import WORDS

WHEN = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


def _c(seq: int, content: str, score: float, name: str = "Caroline",
       session: str = "s") -> ScoredMessage:
    return ScoredMessage(message=Message(id=f"m{seq}", role="user", content=content,
                                         name=name, created_at=WHEN),
                         score=score, session=session, seq=seq)


def _ids(ranked: list[ScoredMessage]) -> list[str]:
    return [c.message.id for c in ranked]


def test_stemmer_meets_word_variants() -> None:
    assert {stem(w) for w in ("painting", "painted", "paints", "paint")} == {"paint"}
    assert stem("camping") == stem("camped") == "camp"
    assert stem("agencies") == stem("agency")
    assert stem_terms("The paintings were painted") == ["paint", "paint"]


def test_context_lifts_a_turn_between_two_hits() -> None:
    cands = [_c(1, "a", 0.030), _c(2, "b", 0.020), _c(3, "c", 0.030), _c(9, "d", 0.025)]
    assert _ids(rerank("q", cands, RerankPolicy(speaker=False)))[0] == "m2"  # 0.02 + 0.03
    assert _ids(rerank("q", cands, RerankPolicy(context=False, speaker=False)))[:2] \
        == ["m1", "m3"]


def test_context_stays_within_a_session() -> None:
    cands = [_c(1, "a", 0.03, session="x"), _c(2, "b", 0.02, session="y"),
             _c(5, "c", 0.025, session="y")]
    assert _ids(rerank("q", cands, RerankPolicy(speaker=False))) == ["m1", "m5", "m2"]


def test_speaker_named_in_the_query_is_preferred() -> None:
    cands = [_c(1, "Hi Caroline, how was the group?", 0.03, name="Melanie"),
             _c(5, "I went to a support group.", 0.02, name="Caroline")]
    plain = RerankPolicy(context=False)
    assert _ids(rerank("What did Caroline do at the group?", cands, plain)) == ["m5", "m1"]
    assert _ids(rerank("What did caroline's group do?", cands, plain)) == ["m5", "m1"]
    # Both named, or no one: no preference.
    assert _ids(rerank("Caroline and Melanie's group", cands, plain)) == ["m1", "m5"]
    assert _ids(rerank("the group", cands, plain)) == ["m1", "m5"]


def test_named_speakers_matches_whole_first_or_full_names() -> None:
    names = ["Melanie Smith", "Jon", "A"]
    assert named_speakers("What did Melanie say to jon?", names) == {"Melanie Smith", "Jon"}
    assert named_speakers("Jonathan's melanies", names) == set()
    assert named_speakers("A plan", names) == set()  # one letter is too short to be a name


def test_near_duplicates_keep_the_best_ranked_from_the_same_speaker() -> None:
    text = "deploy finished on server alpha with zero errors and all checks green"
    cands = [_c(1, text, 0.01), _c(2, text + "!", 0.03), _c(3, text, 0.02, name="Melanie")]
    assert _ids(rerank("deploy", cands, RerankPolicy(context=False))) == ["m2", "m3"]
    assert len(rerank("deploy", cands, RerankPolicy(context=False, dedup=False))) == 3


def test_repeated_ids_keep_their_best_score() -> None:
    cands = [_c(1, "a b c", 0.01), _c(1, "a b c", 0.05), _c(2, "d e f", 0.02)]
    ranked = rerank(None, cands)
    assert _ids(ranked) == ["m1", "m2"] and ranked[0].score >= 0.05


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 1), st.sampled_from(WORDS),
                          st.sampled_from(["Caroline", "Melanie"])),
                min_size=0, max_size=20, unique_by=lambda t: t[0]),
       st.sampled_from(["", "what did Caroline paint", "camping May", "ok"]),
       st.randoms(use_true_random=False))
def test_rerank_depends_only_on_its_inputs_not_their_order(
        rows: list[tuple[int, float, str, str]], query: str, rnd: object) -> None:
    cands = [_c(seq, f"{word} {seq} {word}s", score, name) for seq, score, word, name in rows]
    shuffled = list(cands)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first = rerank(query, cands)
    assert first == rerank(query, shuffled)
    assert {c.message.id for c in first} <= {c.message.id for c in cands}
    assert [c.score for c in first] == sorted((c.score for c in first), reverse=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join),
                          st.sampled_from(["Caroline", "Melanie"])), max_size=25),
       st.booleans())
def test_near_duplicates_equal_a_brute_force_pass(rows: list[tuple[str, str]],
                                                  grouped: bool) -> None:
    """The prefix-filtered pass (with its per-group index) finds what comparing every pair
    finds: each text repeats the first earlier non-duplicate it is that similar to."""
    texts = [t for t, _ in rows]
    groups = [g for _, g in rows] if grouped else None
    sets = [frozenset(stem_terms(t)) for t in texts]
    expected: dict[int, int] = {}
    for i, j in itertools.product(range(len(sets)), repeat=2):
        if j >= i or i in expected or j in expected or min(len(sets[i]), len(sets[j])) < 3:
            continue
        if groups is not None and groups[i] != groups[j]:
            continue
        if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= 0.9:
            expected[i] = j
    assert near_duplicates(texts, groups=groups) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
       | st.lists(st.sampled_from([*WORDS, "a", "I", "7", "it's", "-x", "_y", "e-mail", "\'"]),
                  max_size=12).map(" ".join))
def test_term_sets_are_the_stemmed_terms(text: str) -> None:
    """near_duplicates' own tokenizing gives the stemmed term set `stem_terms` gives."""
    assert _term_set(text) == frozenset(stem_terms(text))


def test_candidate_count_and_has_content() -> None:
    assert candidate_count(300) == 40 and candidate_count(2000) == 200
    assert candidate_count(100_000) == 500
    assert has_content("When did Caroline go camping?")
    assert not has_content("") and not has_content(None) and not has_content("ok")


def test_content_query_takes_the_participants_names_out_of_the_search_text() -> None:
    people = ["Caroline", "Melanie Smith", "Jon"]
    assert content_query("What did Caroline research?", people) == "What did research?"
    assert content_query("What is Caroline's identity?", people) == "What is identity?"
    assert content_query("What did Caroline’s mom say?", people) == "What did mom say?"
    assert content_query("When did Melanie Smith paint?", people) == "When did paint?"
    assert content_query("Did melanie meet Jonathan?", people) == "Did meet Jonathan?"
    assert content_query("Caroline?", people) == "Caroline?"  # nothing else: as asked
    assert content_query("What did Caroline paint?", []) == "What did Caroline paint?"
