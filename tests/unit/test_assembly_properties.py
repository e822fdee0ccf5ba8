"""Invariant 4 as properties: within budget, system kept, tool pairs whole, nothing twice."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.assembly import DEFAULT_SHARES, QUERY_SHARES, AssemblyPolicy, assemble_context
from memory.errors import BudgetTooSmallError
from memory.models import ContextWindow, Message
from memory.retrieval import RerankPolicy
from memory.tokens import HeuristicCounter
from tests.unit.strategies import WORDS, conversations, retrieved, summaries

COUNTER = HeuristicCounter()
PROPERTY = settings(max_examples=500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


QUERIES = st.one_of(st.none(), st.just("ok"), st.sampled_from(WORDS),
                    st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join))


def _build(data: st.DataObject) -> tuple[list[Message], ContextWindow | None, int]:
    """A window over a drawn conversation, with every assembly mode: adaptive or fixed
    shares, any query (or none), version 1, 2 or 3, each reranker and layout switch."""
    draw = data.draw
    convo = draw(conversations())
    cut = draw(st.integers(0, len(convo)))
    archived, recent = convo[:cut], convo[cut:]
    budget = draw(st.integers(1, 3000))
    system = [m for m in convo if m.role == "system"]
    position = {m.id: n for n, m in enumerate(convo)}
    candidates = [c.model_copy(update={"seq": position[c.message.id]})
                  if draw(st.booleans()) else c
                  for c in draw(retrieved([m for m in archived if m.role != "system"]))]
    rerank = draw(st.one_of(st.none(), st.builds(RerankPolicy, st.booleans(), st.booleans(),
                                                 st.booleans())))
    policy = AssemblyPolicy(rerank=rerank, dated_lines=draw(st.booleans()))
    kwargs: dict[str, Any] = dict(
        max_tokens=budget, system=system, summaries=draw(summaries()),
        recent=[m for m in recent if m.role != "system"],
        retrieved=candidates, counter=COUNTER,
        shares=draw(st.sampled_from([None, None, DEFAULT_SHARES, QUERY_SHARES])),
        query=draw(QUERIES), policy=policy, version=draw(st.sampled_from([1, 2, 3, 3])))
    try:
        window = assemble_context(**kwargs)
        assert assemble_context(**kwargs) == window  # deterministic
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


@PROPERTY
@given(st.data())
def test_retrieved_ids_are_quoted_verbatim(data: st.DataObject) -> None:
    convo, window, _ = _build(data)
    if window is None:
        return
    text = {m.id: m.content for m in convo}
    for block in (m for m in window.messages if m.section == "retrieved"):
        legacy = block.content.count("## session ") > 0 and "[" in block.content
        for sid in block.source_ids:
            assert legacy or text[sid] in block.content
