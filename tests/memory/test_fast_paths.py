"""The shortcuts that make assembly cheaper must not change a single answer: the cached
heuristic count is the formula's count (and the old heuristic the old formula's), `escape`
is the two replaces, and a text whose term set repeats an earlier one's is the duplicate the
full comparison would have found."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memory import tokens
from memory.packing import FENCE, escape
from memory.similarity import near_duplicates

TEXT = st.lists(st.sampled_from([*"ab {}();=_\n<>/", FENCE, "word " * 200]),
                max_size=40).map("".join)  # short and long (past the cache's limit) texts


def _v16_count(text: str) -> int:
    """The heuristic as assembly versions 1-16 counted, kept here as the reference that
    `HeuristicCounter` (their replay) must still match for every text."""
    if not text:
        return 0
    symbols = len(tokens._CODE_CHARS.findall(text))
    chars_per_token = 3.0 if symbols * 12 > len(text) else 4.0
    words = text.count(" ") + text.count("\n") + 1
    return max(int(len(text) / chars_per_token + 0.999), (words + 2) // 3)


ANY_TEXT = st.one_of(TEXT, st.text(max_size=300), st.text(max_size=3000))


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_cached_heuristic_count_is_the_formula(text: str) -> None:
    for counter in (tokens.HeuristicCounter(), tokens.ScriptCounter()):
        first, again = counter.count(text), counter.count(text)
        assert first == again == tokens.count_stats(tokens.text_stats(text, counter.scripts))
        assert counter.count_message("user", text) == first + tokens.MESSAGE_OVERHEAD


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_script_counts_leave_ascii_and_old_windows_as_they_were(text: str) -> None:
    old, scripts = tokens.HeuristicCounter().count(text), tokens.ScriptCounter().count(text)
    assert old == _v16_count(text)  # versions 1-16 replay with the counts they served
    assert scripts >= old  # serving reads the tail by stored counts: never too few rows
    if text.isascii():
        assert scripts == old  # English windows and recall figures do not move


def test_count_cache_is_bounded_by_the_text_it_holds() -> None:
    for counter in (tokens.HeuristicCounter(), tokens.ScriptCounter()):
        text = "y" * tokens._CACHED_CHARS
        for i in range(2 * tokens._CHARS_HELD // len(text)):
            assert counter.count(f"{i} {text}"[: tokens._CACHED_CHARS]) > 0
            held = sum(len(t) for t in counter._counts)
            assert held == counter._held[0] <= tokens._CHARS_HELD
        long = "x" * (tokens._CACHED_CHARS + 1)
        assert counter.count(long) == _v16_count(long)
        assert long not in counter._counts  # counted, not held
    assert tokens.HeuristicCounter._counts is not tokens.ScriptCounter._counts


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
