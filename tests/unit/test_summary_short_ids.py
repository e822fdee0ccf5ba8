"""Assembly version 6: a summary's lines show a long id (a UUID) by its tail, as version 5's
retrieved lines do, and the condensed summary spends what that frees on more sentences; the
full ids stay in `source_ids`, and version 5 renders the windows it served as before."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from longthread.integrations._common import summary_text
from memory import CompactionPolicy, Session
from memory.assembly import assemble_context
from memory.hierarchy import condense
from memory.models import ContextWindow, Message, ScoredMessage, Summary
from memory.packing import ID_TAIL, short_line_ids
from tests.unit.test_summary_fit import COUNTER, START, TOPICS


def _uuid(i: int) -> str:
    return str(uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC835 % 2**128))


@pytest.fixture(scope="module")
def uuid_hierarchy() -> tuple[tuple[Summary, ...], list[Message]]:
    """A session with UUID ids, appended one message at a time until it holds summaries."""
    session = Session("uuids", policy=CompactionPolicy(context_window=1500), counter=COUNTER)
    for i in range(500):
        session.add_messages([{
            "id": _uuid(i), "role": "user" if i % 2 else "assistant",
            "name": "Caroline" if i % 2 else "Melanie",
            "content": f"{TOPICS[i % len(TOPICS)].format(i=i).capitalize()}. "
                       f"Also note {i * 7 % 13} things about item {i}.",
            "created_at": (START + timedelta(hours=i)).isoformat()}])
    summaries = session.window.summaries
    assert summaries and all(len(s.quoted_ids) > 1 for s in summaries)
    return summaries, [m for m in session.window.messages if m.role != "system"]


def test_a_summary_line_shows_a_long_id_by_a_tail_that_names_one_line() -> None:
    ids = [_uuid(1), _uuid(2), "D3:7", "ticket-4711-msg-00042", "ticket-4712-msg-00042"]
    content = "\n".join(f"- [{i}] Caroline: line {n}." for n, i in enumerate(ids))
    text, show = short_line_ids(content, ids, ("ticket-4711-msg-00042", _uuid(3)))
    shown = text.splitlines()
    assert shown[0] == f"- […{ids[0][-ID_TAIL:]}] Caroline: line 0."
    assert shown[1] == f"- […{ids[1][-ID_TAIL:]}] Caroline: line 1."
    assert shown[2:] == content.splitlines()[2:]  # short, or a tail that two ids share
    prose = ("The team agreed to ship on Friday.\n- a note without an id\n"
             "- [2024-05-08 planning meeting] we moved the launch")
    assert short_line_ids(prose, ids)[0] == prose  # a bracket it does not quote is text
    # The span's ids share the lines' map: a tail two of them share is shown whole.
    assert show("ticket-4711-msg-00042") == "ticket-4711-msg-00042"
    assert show(_uuid(3)) == f"…{_uuid(3)[-ID_TAIL:]}"


@pytest.mark.parametrize("budget", [800, 1000, 2000, 4000])
def test_version_6_condenses_the_same_lines_shorter_or_fills_the_share(
        uuid_hierarchy: tuple[tuple[Summary, ...], list[Message]], budget: int) -> None:
    summaries, _ = uuid_hierarchy
    old = condense(summaries, budget // 10, COUNTER)
    short = condense(summaries, budget // 10, COUNTER, short_ids=True)
    full = condense(summaries, budget // 10, COUNTER, short_ids=True, fill=True)
    assert old is not None and short is not None and full is not None
    # Unfilled, the same merge (its room shrinks less when its first try fits: a line more).
    assert len(short.source_ids) >= len(old.source_ids) and short.tokens <= budget // 10
    assert full.tokens <= budget // 10
    assert len(full.source_ids) > len(old.source_ids)
    assert len(full.source_ids) >= len(short.source_ids) and full.tokens >= short.tokens
    if budget >= 2000:  # room for more than a line or two: filling adds lines
        assert len(full.source_ids) > len(short.source_ids)
    for message in (short, full):  # every quoted line names its original by its tail
        assert all(f"[…{ident[-ID_TAIL:]}]" in message.content for ident in message.source_ids)
        assert not any(_uuid(i) in message.content for i in range(500))  # nor in the header
    assert all(f"[{ident}]" in old.content for ident in old.source_ids)


def test_version_6_fills_the_summary_share_only_of_an_idle_window(
        uuid_hierarchy: tuple[tuple[Summary, ...], list[Message]]) -> None:
    summaries, _ = uuid_hierarchy
    recent = [Message(id=_uuid(1000 + i), role="user" if i % 2 else "assistant",
                      content=TOPICS[i % len(TOPICS)].format(i=1000 + i)) for i in range(200)]
    retrieved = [ScoredMessage(message=m, score=1.0 / (60 + i), session="uuids", seq=i)
                 for i, m in enumerate(recent[:40])]

    def summary_ids(window: ContextWindow) -> int:
        return sum(len(m.source_ids) for m in window.messages if m.section == "summary")

    def summary_tokens(window: ContextWindow) -> int:
        return sum(m.tokens for m in window.messages if m.section == "summary")

    for query, found, filled in ((None, [], True), ("refund order", retrieved, False)):
        kw = {"max_tokens": 2000, "summaries": summaries, "recent": recent[40:],
              "retrieved": found, "query": query, "counter": COUNTER}
        # Version 6 itself: from 18 on, condensing may quote a sentence whole where 6 quoted
        # two of its clauses (engine 13's rules), so a window's ids are no longer v6's alone.
        new = assemble_context(**kw, version=6)  # type: ignore[arg-type]
        old = assemble_context(**kw, version=5)  # type: ignore[arg-type]
        assert new.tokens <= 2000 and old.tokens <= 2000
        for window in (new, old):  # the summaries did not all fit: they were condensed
            assert any(m.content.startswith("Earlier conversation") for m in window.messages)
        if filled:
            assert summary_ids(new) > summary_ids(old)
            # Filled: at least 90% of the 10% share (the day lines of engine 8 make whole-id
            # and tail-id texts of about the same size, so "more tokens than v5" is no test).
            assert 0.9 * 200 <= summary_tokens(new) <= 200
        else:  # what the shorter ids free goes to retrieved turns
            assert summary_tokens(new) <= summary_tokens(old)
            assert summary_ids(new) >= summary_ids(old)


def test_version_6_windows_show_summary_ids_by_their_tails_and_version_5_whole(
        uuid_hierarchy: tuple[tuple[Summary, ...], list[Message]]) -> None:
    summaries, recent = uuid_hierarchy
    kw = {"max_tokens": 20000, "summaries": summaries, "recent": recent, "counter": COUNTER}
    new = assemble_context(**kw)  # type: ignore[arg-type]
    old = assemble_context(**kw, version=5)  # type: ignore[arg-type]
    new_summaries = [m for m in new.messages if m.section == "summary"]
    old_summaries = [m for m in old.messages if m.section == "summary"]
    assert [m.source_ids for m in new_summaries] == [m.source_ids for m in old_summaries]
    assert sum(m.tokens for m in new_summaries) < sum(m.tokens for m in old_summaries)
    for message in new_summaries:  # neither on its lines nor in its header's span
        assert not any(_uuid(i) in message.content for i in range(500))
    for message in old_summaries:
        assert all(ident in message.content for ident in message.source_ids)
    assert new.tokens <= 20000 and old.tokens <= 20000


def test_the_adapters_show_summaries_as_the_current_assembly_does(
        uuid_hierarchy: tuple[tuple[Summary, ...], list[Message]]) -> None:
    """The Agents SDK and LangChain session views put the summaries in one system message:
    the same fenced text as a version-6 window's, tails and all, not the whole ids."""
    summaries, recent = uuid_hierarchy
    window = assemble_context(max_tokens=20000, summaries=summaries, recent=recent,
                              counter=COUNTER)
    shown = [m.content for m in window.messages if m.section == "summary"]
    text = summary_text(summaries)
    assert text == "\n\n".join(shown)
    assert not any(_uuid(i) in text for i in range(500))
