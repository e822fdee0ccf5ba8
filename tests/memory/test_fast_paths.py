"""The shortcuts that make assembly cheaper must not change a single answer: the cached
heuristic count is the formula's count, `escape` is the two replaces, and a text whose term
set repeats an earlier one's is the duplicate the full comparison would have found."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memory import tokens
from memory.packing import FENCE, escape
from memory.similarity import near_duplicates

TEXT = st.lists(st.sampled_from([*"ab {}();=_\n<>/", FENCE, "word " * 200]),
                max_size=40).map("".join)  # short and long (past the cache's limit) texts


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_cached_heuristic_count_is_the_formula(text: str) -> None:
    counter = tokens.HeuristicCounter()
    first, again = counter.count(text), counter.count(text)
    assert first == again == tokens._heuristic_count(text)
    assert counter.count_message("user", text) == first + tokens.MESSAGE_OVERHEAD


def test_count_cache_is_bounded_by_the_text_it_holds() -> None:
    counter = tokens.HeuristicCounter()
    text = "y" * tokens._CACHED_CHARS
    for i in range(2 * tokens._CHARS_HELD // len(text)):
        assert counter.count(f"{i} {text}"[: tokens._CACHED_CHARS]) > 0
        held = sum(map(len, tokens._COUNTS))
        assert held == tokens._held[0] <= tokens._CHARS_HELD
    long = "x" * (tokens._CACHED_CHARS + 1)
    assert counter.count(long) == tokens._heuristic_count(long)
    assert long not in tokens._COUNTS  # counted, not held


@settings(deadline=None)  # a 2-core box's scheduler stall is not a slow escape
@given(TEXT)
def test_escape_is_the_two_replaces(text: str) -> None:
    assert escape(text) == text.replace(f"</{FENCE}", f"<\\/{FENCE}").replace(
        f"<{FENCE}", f"<\\{FENCE}")


def test_identical_term_sets_repeat_what_the_first_repeats() -> None:
    texts = ["red green blue paint", "red green blue paints", "red green blue paint",
             "blue green red painting", "red green blue yellow"]
    # 1, 2 and 3 have the term set of 0 (stems meet): all repeat 0, whatever their group.
    assert near_duplicates(texts) == {1: 0, 2: 0, 3: 0}
    assert near_duplicates(texts, groups=["a", "b", "b", "a", "b"]) == {2: 1, 3: 0}
    assert near_duplicates(texts, threshold=1.01) == {}  # nothing is that similar
