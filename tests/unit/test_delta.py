"""Repeated tool results shown as diffs (assembly 13): exact both ways, within budget, and
never against something the window does not show whole."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.compaction import WindowState
from memory.delta import (
    DIFF_PREFIX,
    MIN_DELTA_CHARS,
    WHOLE_BODY_BYTES,
    apply_line_delta,
    archived_id,
    delta_contents,
    line_delta,
    rebuild_diffs,
)
from memory.models import ContextMessage, ContextWindow, Message, ToolCall
from memory.tokens import HeuristicCounter
from memory.window import BODY_REF_BYTES, assemble_from_window, by_reference
from tests.unit.test_golden_windows import listing, listings

# Lines from a small alphabet, with "\r", blank lines and no final newline among them, so
# diffs have repeats, moves and edge lines to get right.
LINES = st.lists(st.sampled_from(["a", "b", "", "c\r", "@@ -1,1 +1,1 @@", "-x", "+y", " z"]),
                 max_size=30)


@settings(max_examples=500, deadline=None)
@given(LINES, LINES, st.booleans(), st.booleans())
def test_a_line_delta_gives_the_text_back_exactly(old: list[str], new: list[str],
                                                   old_nl: bool, new_nl: bool) -> None:
    base = "\n".join(old) + ("\n" if old_nl else "")
    text = "\n".join(new) + ("\n" if new_nl else "")
    delta = line_delta(base, text)
    assert apply_line_delta(base, delta) == text
    assert (delta == "") is (base == text)


def test_a_delta_that_is_not_one_is_refused_by_line() -> None:
    try:
        apply_line_delta("a\nb", "@@ -1,1 +1,1 @@\n-a\n+c\nnot a hunk")
    except ValueError as exc:
        assert "line 4" in str(exc)
    else:
        raise AssertionError("a malformed delta was applied")


def _diffs(window: ContextWindow) -> dict[str, str]:
    """The id each diff names (whole in the archive as ID) → the result rebuilt from it."""
    rebuilt = rebuild_diffs(window.messages)
    assert set(rebuilt) == {i for i, m in enumerate(window.messages)
                            if m.content.startswith(DIFF_PREFIX)}
    return {archived_id(window.messages[i].content): text for i, text in rebuilt.items()}


def _bases(window: ContextWindow) -> list[ContextMessage]:
    """Each diff's base by the header's rule: the next result of its tool not a diff."""
    latest: dict[str, str] = {}  # call id → the name of the latest call with it so far
    tool = []
    for i, m in enumerate(window.messages):
        latest.update({c.id: c.name for c in m.tool_calls})
        if m.role == "tool":
            tool.append((i, latest.get(m.tool_call_id or "")))
    return [next(window.messages[j] for j, other in tool if j > i and other == name
                 and not window.messages[j].content.startswith(DIFF_PREFIX))
            for i, name in tool if window.messages[i].content.startswith(DIFF_PREFIX)]


def test_an_agent_loop_shows_more_turns_and_every_diff_rebuilds_its_result() -> None:
    state = listings(12)
    originals = {m.id: m for m in state.messages}
    counter = HeuristicCounter()
    for budget in (2000, 4000, 8000):
        old = assemble_from_window(state, max_tokens=budget, version=12, counter=counter)
        new = assemble_from_window(state, max_tokens=budget, version=13, counter=counter)
        assert new.tokens <= budget and len(new.messages) > len(old.messages)
        diffs = _diffs(new)
        assert diffs
        for ident, text in diffs.items():
            assert text == originals[ident].content  # rebuilt exactly
            assert ident not in new.source_ids  # shown as a diff: not verbatim
        for base in _bases(new):  # each base is in the window whole (quoted verbatim)
            assert base.source_ids and base.content == originals[base.source_ids[0]].content

        # More of the loop is in the window: listings shown whole or as diffs.
        def listed(window: ContextWindow) -> set[str]:
            named = set(window.source_ids) | set(_diffs(window))
            return {i for i in named if i.startswith("r")}
        assert len(listed(new)) > len(listed(old))


def _call(i: int, call_id: str, name: str, content: str) -> list[Message]:
    return [Message(id=f"a{i}", role="assistant",
                    tool_calls=(ToolCall(id=call_id, name=name, arguments="{}"),)),
            Message(id=f"t{i}", role="tool", tool_call_id=call_id, content=content)]


def test_reused_call_ids_and_a_short_result_between_never_mislead() -> None:
    """Call ids reused across turns (some local models number calls per turn) name nothing:
    the base is the next result of the same tool shown whole, by the tool of each result's
    own call. A short result of that tool in between is that next result, so nothing older
    is diffed past it."""
    first = [_call(0, "call_0", "read_file", listing(0)),
             _call(1, "call_0", "read_file", listing(1)),
             _call(2, "call_0", "list_files", "no such directory")]
    assert set(delta_contents(first, HeuristicCounter())) == {"t0"}  # against t1, a read
    second = [_call(3, "call_0", "read_file", listing(0)),
              _call(4, "call_0", "read_file", "permission denied"),
              _call(5, "call_0", "read_file", listing(1))]
    assert delta_contents(second, HeuristicCounter()) == {}  # t3 is not diffed past t4
    messages = tuple(m for unit in [*first, *second] for m in unit)
    window = assemble_from_window(WindowState(messages=messages), max_tokens=8000,
                                  version=13, counter=HeuristicCounter())
    originals = {m.id: m.content for m in messages}
    diffs = _diffs(window)
    assert set(diffs) == {"t0", "t1"}  # against t3, the next read shown whole
    assert all(text == originals[ident] for ident, text in diffs.items())
    assert [b.source_ids for b in _bases(window)] == [("t3",), ("t3",)]


def test_large_bodies_and_their_previews_are_never_diffed() -> None:
    """A preview hides what differs past its head, and a body shown whole is checked by its
    id being quoted: both stay as they were (version 12 showed both bodies whole)."""
    assert WHOLE_BODY_BYTES == BODY_REF_BYTES

    def rows(tag: str) -> str:
        return "".join(f"row {n}: order {n * 7} at depot {n % 13} {tag if n == 5 else ''}\n"
                       for n in range(2600))

    originals = [*_call(0, "c0", "orders", rows("a")), *_call(1, "c1", "orders", rows("b"))]
    assert len(originals[1].content.encode()) > BODY_REF_BYTES
    state = WindowState(messages=tuple(by_reference(m) for m in originals))
    bodies = {m.id: m for m in originals}
    for budget in (4_000, 100_000):
        new = assemble_from_window(state, max_tokens=budget, version=13,
                                   counter=HeuristicCounter(), bodies=bodies)
        old = assemble_from_window(state, max_tokens=budget, version=12,
                                   counter=HeuristicCounter(), bodies=bodies)
        assert new == old and not _diffs(new)


def test_only_long_results_of_one_tool_are_diffed() -> None:
    """A short result costs little whole, and a listing is never a diff of another tool's."""
    long = listing(0)
    assert len(long) >= MIN_DELTA_CHARS
    units = [_call(0, "ls-0", "ls", long), _call(1, "cat-1", "cat", listing(1))]
    tail = [_call(2, "ls-2", "ls", "ok"), _call(3, "ls-3", "ls", "ok")]
    assert delta_contents([*units, *tail], HeuristicCounter()) == {}
    units.append(_call(4, "ls-4", "ls", listing(2)))
    assert set(delta_contents([*units, *tail], HeuristicCounter())) == {"t0"}  # against t4


@pytest.mark.parametrize(("copies", "budget"), [(1, 1000), (9, 8000)])
def test_a_newest_turn_shown_cut_is_no_base(copies: int, budget: int) -> None:
    """When the newest listing outgrows the budget it is shown cut, so no diff is against
    it: the older listings are diffed against one shown whole, or shown whole. (At 1,000 the
    listing before it would be a diff against it, cheap enough to fit beside the cut.)"""
    state = listings(6)
    *before, call, result = state.messages[:-2]  # the loop ends on the newest listing
    newest = result.model_copy(update={"content": listing(5) * copies})
    loop = state.model_copy(update={"messages": (*before, call, newest)})
    window = assemble_from_window(loop, max_tokens=budget, version=13,
                                  counter=HeuristicCounter())
    assert window.tokens <= budget and "cut to fit" in window.messages[-1].content
    bases = _bases(window)
    assert all(b.source_ids and b.tool_call_id != newest.tool_call_id for b in bases)
    assert bool(bases) is (copies > 1)  # at 8,000 a listing whole fits, and diffs after it
