"""Repeated tool results shown as diffs (assembly 13): exact both ways, within budget, and
never against something the window does not show whole."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.delta import MIN_DELTA_CHARS, apply_line_delta, delta_contents, line_delta
from memory.models import ContextWindow, Message, ToolCall
from memory.tokens import HeuristicCounter
from memory.window import assemble_from_window
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


def _diffs(window: ContextWindow) -> list[tuple[str, str, str]]:
    """(shown content, the whole result it names, the call it is against) per diff."""
    out = []
    for m in window.messages:
        if m.role == "tool" and m.content.startswith("[The same as the later"):
            header = m.content.split("\n", 1)[0]
            ident = header.rsplit(" as ", 1)[1].rstrip("]")
            against = header.split("(call ", 1)[1].split(")", 1)[0]
            out.append((m.content, ident, against))
    return out


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
        results = {m.tool_call_id: m for m in new.messages if m.role == "tool"}
        for shown, ident, against in diffs:
            base = results[against]
            # The base is in the window whole (quoted verbatim), later than the diff.
            assert base.source_ids and base.content == originals[base.source_ids[0]].content
            delta = shown.split("\n", 1)[1] if "\n" in shown else ""
            assert apply_line_delta(base.content, delta) == originals[ident].content
            assert ident not in new.source_ids  # shown as a diff: not verbatim
        # More of the loop is in the window: listings shown whole or as diffs.
        def listed(window: ContextWindow) -> set[str]:
            named = set(window.source_ids) | {ident for _, ident, _ in _diffs(window)}
            return {i for i in named if i.startswith("r")}
        assert len(listed(new)) > len(listed(old))


def test_only_long_results_of_one_tool_are_diffed() -> None:
    """A short result costs little whole, and a listing is never a diff of another tool's."""
    def result(i: int, call: str, content: str) -> list[Message]:
        name = call.split("-")[0]
        return [Message(id=f"a{i}", role="assistant",
                        tool_calls=(ToolCall(id=call, name=name, arguments="{}"),)),
                Message(id=f"t{i}", role="tool", tool_call_id=call, content=content)]

    long = listing(0)
    assert len(long) >= MIN_DELTA_CHARS
    units = [result(0, "ls-0", long), result(1, "cat-1", listing(1)),
             result(2, "ls-2", "ok"), result(3, "ls-3", "ok")]
    assert delta_contents(units, HeuristicCounter()) == {}
    units.append(result(4, "ls-4", listing(2)))
    assert set(delta_contents(units, HeuristicCounter())) == {"t0"}  # against t4, not t1


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
    against = {call_id for _, _, call_id in _diffs(window)}
    whole = {m.tool_call_id for m in window.messages if m.role == "tool" and m.source_ids}
    assert against <= whole and newest.tool_call_id not in against
    assert bool(against) is (copies > 1)  # at 8,000 a listing whole fits, and diffs after it
