from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from memory.errors import InvalidInputError, NotFoundError
from memory.models import CompactionEvent, Message
from memory.policy import CompactionPolicy
from memory.session import Session
from tests.unit.strategies import conversations

LINES = [
    "Hi, my order 4711 has not arrived since May 3.",
    "Sorry to hear that. Which address did you use?",
    "It was shipped to 12 Baker Street, London.",
    "Thanks. I see the parcel is stuck in Leeds.",
    "Can you resend it? I need it before Friday.",
    "We decided to resend via express; tracking number is ZX-99.",
    "Great, also my invoice shows 49.99 EUR but I paid 39.99.",
    "I will refund 10 EUR today.",
    "What about the old parcel?",
    "Keep it if it arrives, no charge.",
]


def _session(**kwargs: object) -> Session:
    policy = CompactionPolicy(context_window=256, preserve_recent=3, target=0.4)
    session = Session("t", policy=policy, clock=lambda: 0.0, **kwargs)  # type: ignore[arg-type]
    session.add_message("system", "You are Acme support.")
    return session


def test_auto_compaction_emits_events_and_keeps_every_message() -> None:
    events: list[CompactionEvent] = []
    session = _session(on_event=events.append)
    for round_ in range(3):
        for i, line in enumerate(LINES):
            session.add_message("user" if i % 2 == 0 else "assistant",
                                f"{line} (round {round_})")
    assert len(session.messages) == 1 + 3 * len(LINES)
    assert session.ledger, "the window outgrew 70% of 256 tokens, so it must have compacted"
    assert [e.kind for e in events[:2]] == ["started", "completed"]
    done = [e for e in events if e.kind == "completed"]
    assert len(done) == len(session.ledger)
    assert all(e.tokens_after is not None and e.tokens_after < e.tokens_before for e in done)
    assert session.get_token_estimate() < 256
    assert session.window.messages[0].role == "system"


def test_manual_compact_with_focus_then_undo_restores_the_window() -> None:
    session = _session(auto_compact=False)
    for i, line in enumerate(LINES):
        session.add_message("user" if i % 2 == 0 else "assistant", line)
    before = session.window
    record = session.compact(preserve_recent=2, focus="refund")
    assert record is not None and record.summary is not None
    assert record.trigger == "manual" and record.covered_ids == tuple(
        f"m{i}" for i in range(2, 10))
    assert "refund" in record.summary.content
    assert record.focus == "refund"  # the ledger says what the summary was asked to keep
    assert [m.id for m in session.window.messages] == ["m1", "m10", "m11"]
    session.uncompact(record.id)
    assert session.window == before
    assert session.ledger[-1].undoes == record.id
    with pytest.raises(NotFoundError):
        session.uncompact("nope")


def test_pinned_messages_survive_force_compact() -> None:
    session = _session(auto_compact=False)
    session.add_message("user", "My account id is AC-1. Remember it.", metadata={"pinned": True})
    for i, line in enumerate(LINES):
        session.add_message("user" if i % 2 == 0 else "assistant", line)
    record = session.force_compact()
    assert record is not None
    assert "m2" not in record.covered_ids
    assert "m2" in [m.id for m in session.window.messages]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    session = _session()
    for i, line in enumerate(LINES * 2):
        session.add_message("user" if i % 2 == 0 else "assistant", line)
    path = tmp_path / "s.json"
    session.save(path)
    loaded = Session.load(path, clock=lambda: 0.0)
    assert loaded.to_data() == session.to_data()
    assert loaded.get_context("tracking", 300) == session.get_context("tracking", 300)
    loaded.add_message("user", "one more")
    assert len(loaded.messages) == len(session.messages) + 1


def test_bad_input_leaves_the_session_untouched() -> None:
    session = _session()
    session.add_message("user", "hello", id="x")
    before = session.to_data()
    with pytest.raises(InvalidInputError, match="'x' was already appended with other content"):
        session.add_message("user", "again", id="x")
    with pytest.raises(InvalidInputError, match="orphan"):
        session.add_message("tool", "42", tool_call_id="ghost")
    with pytest.raises(InvalidInputError, match="max_tokens"):
        session.get_context("q", max_tokens=0)
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.created_at: 9999-12-31"):
        session.add_message("user", "later", id="y", created_at="9999-12-31T00:00:00Z")
    assert session.to_data() == before


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(max_units=25))
def test_compaction_never_loses_a_message_nor_splits_a_tool_pair(convo: list[Message]) -> None:
    session = Session("p", policy=CompactionPolicy(context_window=256, preserve_recent=2),
                      clock=lambda: 0.0)
    session.add_messages(convo)
    session.compact()
    assert [m.id for m in session.messages] == [m.id for m in convo]
    covered = {i for r in session.ledger for i in r.covered_ids}
    in_window = {m.id for m in session.window.messages}
    assert covered | in_window == {m.id for m in convo}
    assert not covered & in_window
    calls = {c.id for m in session.window.messages for c in m.tool_calls}
    for m in session.window.messages:
        if m.role == "tool":
            assert m.tool_call_id in calls
    assert session.get_context("order", 500).tokens <= 500


def _dated_session() -> Session:
    """A support chat over 30 days, one message a day, all but the last six summarized."""
    session = Session("d", policy=CompactionPolicy(context_window=256, preserve_recent=2),
                      clock=lambda: 0.0, auto_compact=False)
    for day, line in enumerate(LINES * 3, start=1):
        session.add_message("user" if day % 2 else "assistant", f"{line} (week {day // 7})",
                            name="Caroline" if day % 2 else "Sam",
                            created_at=f"2023-05-{day:02d}T10:00:00Z")
    assert session.compact(preserve_recent=6) is not None
    return session


def test_library_context_finds_a_day_and_gives_retrieval_the_budget() -> None:
    """`get_context` assembles as the served context() does: a question about a day finds
    that day's message through the dated index, its line carries the date, and retrieval gets
    the budget a fixed 65% share used to cap."""
    session = _dated_session()
    archived = {m.id for m in session.messages} - {m.id for m in session.window.messages}
    assert "m8" in archived and session.window.summaries  # 8 May: "I will refund 10 EUR"
    window = session.get_context("What happened on 8 May 2023?", max_tokens=300)
    (block,) = [m for m in window.messages if m.section == "retrieved"]
    assert "m8" in block.source_ids
    assert "2023-05-08" in block.content and "refund 10 EUR today" in block.content
    retrieved = next(s for s in window.sections if s.name == "retrieved")
    assert retrieved.budget >= 0.75 * 300
    assert window.tokens <= 300


def test_library_context_without_a_query_carries_the_condensed_summaries() -> None:
    session = _dated_session()
    window = session.get_context(max_tokens=500)
    summary = [m for m in window.messages if m.section == "summary"]
    assert summary and all(i in {m.id for m in session.messages}
                           for m in summary for i in m.source_ids)
    assert not any(m.section == "retrieved" for m in window.messages)
    assert window.tokens <= 500


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"max_tokens": 0}, "max_tokens", "must be from 1 to 2,000,000; got 0"),
        ({"max_tokens": 3_000_000}, "max_tokens", "must be from 1 to 2,000,000"),
        ({"max_tokens": "400"}, "max_tokens", "must be a whole number, not str"),
        ({"max_tokens": True}, "max_tokens", "must be a whole number, not bool"),
        ({"query": "q" * 100_001}, "query", "is 100,001 characters; the limit is 100,000"),
        ({"query": 42}, "query", "must be text, not int"),
        ({"retrieve": 0}, "retrieve", "must be from 1 to 500"),
        ({"neighbours": 6}, "neighbours", "must be from 0 to 5"),
    ],
)
def test_library_context_refuses_bad_arguments_by_name(kwargs: dict[str, object], field: str,
                                                      text: str) -> None:
    s = Session("t")
    s.add_message("user", "My order 4711 has not arrived.")
    with pytest.raises(InvalidInputError) as info:
        s.get_context(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert text in info.value.problem


def test_one_message_where_a_list_is_wanted_says_so() -> None:
    s = Session("t")
    with pytest.raises(InvalidInputError, match=r"^messages: expected a list of messages, got "
                                                r"dict \(to add one message, pass \[message\]\)"):
        s.add_messages({"id": "a", "role": "user", "content": "x"})  # type: ignore[arg-type]
    assert s.messages == []


def test_automatic_ids_skip_the_ones_a_caller_chose_and_an_empty_id_is_refused() -> None:
    """`m{count+1}` collided with a caller's 'm2' and every later call failed."""
    session = Session(auto_compact=False)
    session.add_message("user", "a", id="m2")
    session.add_message("user", "b")
    session.add_message("user", "c")
    assert [m.id for m in session.messages] == ["m2", "m3", "m4"]
    with pytest.raises(InvalidInputError, match="id"):
        session.add_message("user", "d", id="")
    assert len(session.messages) == 3


def test_re_appending_a_message_is_skipped_and_other_content_is_refused() -> None:
    """As the durable store does: a retried append is harmless, a reused id is named."""
    session = Session(auto_compact=False)
    session.add_messages([{"id": "a", "role": "user", "content": "hello"}])
    again = session.add_messages([{"id": "a", "role": "user", "content": "hello"},
                                  {"id": "b", "role": "assistant", "content": "hi"}])
    assert [m.id for m in again] == ["a", "b"]
    assert [m.id for m in session.messages] == ["a", "b"]
    assert [m.id for m in session.window.messages] == ["a", "b"]
    with pytest.raises(InvalidInputError, match="'a' was already appended with other content"):
        session.add_messages([{"id": "a", "role": "user", "content": "changed"}])
    # The same text sent with a time is another message: the refusal says what differs, as
    # the store's does (memory.conflicts).
    with pytest.raises(InvalidInputError, match=r"'a' was already appended with another "
                                                r"created_at \(stored none, sent 2024-03-01"):
        session.add_messages([{"id": "a", "role": "user", "content": "hello",
                               "created_at": "2024-03-01T10:00:00Z"}])
    with pytest.raises(InvalidInputError, match="duplicate id 'c'"):
        session.add_messages([{"id": "c", "role": "user", "content": "x"},
                              {"id": "c", "role": "user", "content": "x"}])
    assert [m.id for m in session.messages] == ["a", "b"]


def test_a_manual_compact_that_would_grow_the_window_is_not_committed() -> None:
    events: list[CompactionEvent] = []
    session = Session(auto_compact=False, on_event=events.append)
    for i in range(6):
        session.add_message("user", "ok", id=f"0c9a1b2e-{i:04d}-4a5b-9c8d-1234567890ab")
    before = session.get_token_estimate()
    assert session.compact(preserve_recent=1) is None
    assert session.ledger == [] and session.get_token_estimate() == before
    assert events[-1].kind == "skipped" and "would not shrink" in (events[-1].error or "")


def test_load_takes_a_new_policy_and_names_a_file_that_is_not_a_session(tmp_path: Path) -> None:
    saved = tmp_path / "s.json"
    _session().save(saved)
    loaded = Session.load(saved, policy=CompactionPolicy(context_window=4000))
    assert loaded.policy.context_window == 4000  # was a TypeError (policy given twice)
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [{"id": 5}]}')
    with pytest.raises(InvalidInputError, match=r"bad\.json: not a saved session"):
        Session.load(bad)
