"""The summary hierarchy is in every window of 500 tokens or more (assembly version 3): when its
summaries do not all fit their share, one condensed summary of all of them does, within a tenth
of the budget while retrieval answers a query, with or without one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memory import CompactionPolicy, Session
from memory.assembly import assemble_context, condense
from memory.models import ContextWindow, Message, ScoredMessage, Summary
from memory.tokens import HeuristicCounter

COUNTER = HeuristicCounter()
START = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
TOPICS = ("the refund for order {i} went out on Friday", "we moved the launch to week {i}",
          "Melanie painted a sunrise over the lake, number {i}",
          "the parser fails on input {i} because of a missing quote",
          "Caroline signed up for the support group meeting {i}")


def _conversation(n: int) -> list[dict[str, object]]:
    return [{"id": f"m{i}", "role": "user" if i % 2 else "assistant",
             "name": "Caroline" if i % 2 else "Melanie",
             "content": f"{TOPICS[i % len(TOPICS)].format(i=i).capitalize()}. "
                        f"Also note {i * 7 % 13} things about item {i}.",
             "created_at": (START + timedelta(hours=i)).isoformat()} for i in range(n)]


@pytest.fixture(scope="module")
def hierarchy() -> tuple[tuple[Summary, ...], list[Message]]:
    """A session appended one message at a time until it holds several summary levels."""
    session = Session("fit", policy=CompactionPolicy(context_window=1500), counter=COUNTER)
    for raw in _conversation(700):
        session.add_messages([raw])
    summaries = session.window.summaries
    assert len({s.level for s in summaries}) >= 2, "the fixture should build a hierarchy"
    assert any(r.summary is not None for r in session.ledger)
    recent = [m for m in session.window.messages if m.role != "system"]
    return summaries, recent


def _summary_tokens(window: ContextWindow) -> int:
    return sum(m.tokens for m in window.messages if m.section == "summary")


@pytest.mark.parametrize("budget", [500, 501, 640, 800, 1000, 1500, 2000, 3333, 4000, 8000])
def test_the_condensed_hierarchy_fits_a_tenth_of_any_budget_from_500(
        hierarchy: tuple[tuple[Summary, ...], list[Message]], budget: int) -> None:
    summaries, _ = hierarchy
    condensed = condense(summaries, budget // 10, COUNTER)
    assert condensed is not None
    assert condensed.tokens <= budget // 10
    assert condensed.section == "summary" and condensed.source_ids
    assert "condensed" in condensed.content


@pytest.mark.parametrize("budget", [500, 750, 1000, 2000, 4000])
@pytest.mark.parametrize("asked", [True, False])
def test_every_window_from_500_tokens_carries_the_summaries(
        hierarchy: tuple[tuple[Summary, ...], list[Message]], budget: int,
        asked: bool) -> None:
    summaries, recent = hierarchy
    archive = [Message(id=f"a{i}", role="user", name="Caroline",
                       content=f"Archived turn {i} about the lake and painting {i * 3}.",
                       created_at=START + timedelta(minutes=i)) for i in range(300)]
    retrieved = [ScoredMessage(message=m, score=1.0 / (60 + n), session="s", seq=n)
                 for n, m in enumerate(archive)] if asked else []
    window = assemble_context(max_tokens=budget, summaries=summaries, recent=recent,
                              retrieved=retrieved, query="painting by the lake" if asked else None,
                              counter=COUNTER)
    assert window.tokens <= budget
    assert _summary_tokens(window) > 0, "the older conversation is in the window"
    if asked:  # retrieval answering: the summaries stay within their tenth
        assert _summary_tokens(window) <= budget // 5  # a tenth, plus what recent left


def test_summaries_that_fit_are_shown_whole(
        hierarchy: tuple[tuple[Summary, ...], list[Message]]) -> None:
    summaries, recent = hierarchy
    window = assemble_context(max_tokens=200_000, summaries=summaries, recent=recent,
                              counter=COUNTER)
    shown = [m for m in window.messages if m.section == "summary"]
    assert len(shown) == len(summaries)
    assert not any("condensed" in m.content.split("\n", 1)[0] for m in shown)


def test_version_2_windows_are_rebuilt_as_they_were(
        hierarchy: tuple[tuple[Summary, ...], list[Message]]) -> None:
    summaries, recent = hierarchy
    v2 = assemble_context(max_tokens=1000, summaries=summaries, recent=recent,
                          counter=COUNTER, version=2)
    assert not any("condensed" in m.content for m in v2.messages if m.section == "summary")


def test_condensing_is_deterministic(
        hierarchy: tuple[tuple[Summary, ...], list[Message]]) -> None:
    from memory import assembly

    summaries, _ = hierarchy
    first = condense(summaries, 120, COUNTER)
    assembly._condensed_cache.clear()
    assert condense(summaries, 120, COUNTER) == first
