"""Invariant 4 as properties: within budget, system kept, tool pairs whole, nothing twice."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.assembly import assemble_context
from memory.errors import BudgetTooSmallError
from memory.models import ContextWindow, Message
from memory.tokens import HeuristicCounter
from tests.unit.strategies import conversations, retrieved, summaries

COUNTER = HeuristicCounter()
PROPERTY = settings(max_examples=500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _build(data: st.DataObject) -> tuple[list[Message], ContextWindow | None, int]:
    draw = data.draw
    convo = draw(conversations())
    cut = draw(st.integers(0, len(convo)))
    archived, recent = convo[:cut], convo[cut:]
    budget = draw(st.integers(1, 3000))
    system = [m for m in convo if m.role == "system"]
    try:
        window = assemble_context(
            max_tokens=budget, system=system, summaries=draw(summaries()),
            recent=[m for m in recent if m.role != "system"],
            retrieved=draw(retrieved([m for m in archived if m.role != "system"])),
            counter=COUNTER)
    except BudgetTooSmallError:
        assert sum(COUNTER.count_message(m.role, m.content) for m in system) > budget
        return convo, None, budget
    return convo, window, budget


@PROPERTY
@given(st.data())
def test_budget_is_never_exceeded(data: st.DataObject) -> None:
    _, window, budget = _build(data)
    if window is not None:
        assert window.tokens <= budget
        assert window.tokens == sum(COUNTER.count_message(m.role, m.content)
                                    for m in window.messages)


@PROPERTY
@given(st.data())
def test_system_messages_are_always_present_first(data: st.DataObject) -> None:
    convo, window, _ = _build(data)
    if window is None:
        return
    system_ids = [m.id for m in convo if m.role == "system"]
    shown = [m.source_ids[0] for m in window.messages if m.section == "system"]
    assert shown == system_ids
    assert [m.section for m in window.messages[: len(shown)]] == ["system"] * len(shown)


@PROPERTY
@given(st.data())
def test_tool_pairs_are_never_split(data: st.DataObject) -> None:
    _, window, _ = _build(data)
    if window is None:
        return
    calls: set[str] = set()
    answered: set[str] = set()
    for m in window.messages:
        if m.role == "tool":
            assert m.tool_call_id in calls, "a tool result appears without its call"
            answered.add(m.tool_call_id or "")
        calls.update(c.id for c in m.tool_calls)
    assert calls == answered, "a tool call appears without its results"


@PROPERTY
@given(st.data())
def test_no_message_is_shown_twice(data: st.DataObject) -> None:
    _, window, _ = _build(data)
    if window is None:
        return
    verbatim = [sid for m in window.messages if m.section != "summary" for sid in m.source_ids]
    assert len(verbatim) == len(set(verbatim))
