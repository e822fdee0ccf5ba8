"""`why`: the ledger walk that follows a message into a summary and that summary into merged
ones agrees with the window itself, whatever mix of compactions, merges and undos made it."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from longthread.audit import trace_turn
from memory.compaction import WindowState, apply_record
from memory.models import CompactionRecord, Message, Summary
from memory.session import Session
from tests.unit.sessions import POLICY, compacted_rounds, remove, undo_one
from tests.unit.strategies import conversations


def _stands_for(summary: Summary, by_id: dict[str, Summary]) -> set[str]:
    """The messages a summary stands for, from the summaries' own structure (covers, and the
    summaries it merges), not from the ledger walk under test."""
    found = set(summary.covers)
    for part in summary.merges:
        if part in by_id:
            found |= _stands_for(by_id[part], by_id)
    return found


def _expected_carriers(session: Session, message_id: str) -> list[str]:
    by_id = {s.id: s for r in session.ledger
             for s in (r.summary, r.merged_summary, *r.restored_summaries) if s is not None}
    return [s.id for s in session.window.summaries if message_id in _stands_for(s, by_id)]


def test_why_follows_the_summary_into_the_merges_that_folded_it() -> None:
    session = compacted_rounds(6)
    first = session.messages[0]
    history = trace_turn(1, first, session.ledger)
    assert history.in_force == (session.ledger[0].id,)
    covering, *folds = history.steps
    assert covering.record == session.ledger[0].id and covering.why == session.ledger[0].reason
    assert folds and all("folded" in step.what for step in folds)
    # The last fold names the summary the window shows for it now.
    assert [s.id for s in history.carried_by] == _expected_carriers(session, first.id) != []
    assert history.carried_by[0].id in folds[-1].what
    assert f"summary {history.carried_by[0].id}" in history.now
    assert history.now.startswith("out of the window")


def test_why_says_whether_a_summary_quotes_a_turn_whole_or_in_part() -> None:
    """An extractive line quotes the sentences that carry facts: "verbatim" alone told a user
    the whole turn was kept when its account number had been left out."""
    fact = Message(id="f1", role="user", content="Our account number is 55-1234 and the "
                   "shipping address is 12 Elm Street.")
    other = Message(id="f2", role="user", content="The parcel left Leeds on Monday.")

    def record(quoted: str) -> CompactionRecord:
        summary = Summary(id="s1", level=1, content=f"- [f1] {quoted}\n- [f2] {other.content}",
                          covers=("f1", "f2"), quoted_ids=("f1", "f2"))
        return CompactionRecord(id="c1", seq=0, level="medium", action="summarize",
                                reason="over 85%", covered_ids=("f1", "f2"),
                                covered_hash="-", summary=summary, strategy="extractive",
                                tokens_before=60, tokens_after=30)

    part = trace_turn(1, fact, [record("and the shipping address is 12 Elm Street")])
    assert "quoted it in part, verbatim, in summary s1" in part.steps[0].what
    assert part.now.startswith("out of the window since c1; summary s1 (level 1) stands for "
                               "it in the window, quoting it in part")
    whole = trace_turn(1, fact, [record(fact.content)])
    assert "quoted it whole, verbatim, in summary s1" in whole.steps[0].what
    assert "quoting it whole" in whole.now
    assert "quoting it whole" in trace_turn(2, other, [record("x")]).now


def test_a_turn_no_compaction_touched_is_in_the_window() -> None:
    session = compacted_rounds(2)
    session.add_messages([{"id": "late", "role": "user", "content": "Still here."}])
    history = trace_turn(9, session.messages[-1], session.ledger)
    assert (history.steps, history.in_force, history.carried_by) == ((), (), ())
    assert history.now == "in the window verbatim; no compaction covered it"


def test_undoing_a_merge_or_clearing_the_window_is_a_step_and_moves_the_carrier() -> None:
    session = compacted_rounds(3)  # c3 folds s1 (turn 1's summary) and s2 into c3-merged
    first = session.messages[0]
    session.uncompact("c3")
    history = trace_turn(1, first, session.ledger)
    assert [s.record for s in history.steps] == ["c1", "c3", "u4"]
    assert "put s1 back" in history.steps[-1].what and "c3-merged" in history.steps[-1].what
    assert [s.id for s in history.carried_by] == ["s1"] and "summary s1 " in history.now
    remove(session, "clear")
    history = trace_turn(1, first, session.ledger)
    assert history.steps[-1].record == "x5" and "took s1 out" in history.steps[-1].what
    assert history.carried_by == () and "no summary in the window stands for it" in history.now
    session.uncompact("x5")
    history = trace_turn(1, first, session.ledger)
    assert history.steps[-1].record == "u6" and "put s1 back" in history.steps[-1].what
    assert [s.id for s in history.carried_by] == ["s1"]


def _changes(session: Session) -> dict[str, set[str]]:
    """For each message, the records after which its place changed: in or out of the
    window, or which summaries in the window stand for it. Computed by folding the ledger
    with `apply_record` itself, independently of `trace_turn`."""
    by_id = {s.id: s for r in session.ledger
             for s in (r.summary, r.merged_summary, *r.restored_summaries) if s is not None}
    originals = {m.id: m for m in session.messages}
    order = {m.id: n for n, m in enumerate(session.messages)}

    def place(state: WindowState, message_id: str) -> tuple[bool, frozenset[str]]:
        return (any(m.id == message_id for m in state.messages),
                frozenset(s.id for s in state.summaries if message_id in _stands_for(s, by_id)))

    state = WindowState(messages=tuple(session.messages))
    changed: dict[str, set[str]] = {m.id: set() for m in session.messages}
    for record in session.ledger:
        after = apply_record(state, record, originals=originals, order=order)
        for m in session.messages:
            if place(state, m.id) != place(after, m.id):
                changed[m.id].add(record.id)
        state = after
    return changed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["round", "round", "undo", "clear"]), max_size=12), st.data())
def test_every_record_that_moved_a_message_or_its_summary_is_a_step(
        ops: list[str], data: st.DataObject) -> None:
    session = Session("s", policy=POLICY, auto_compact=False)
    for n, op in enumerate(ops):
        if op == "round":  # four facts, compacted whole: fanout 2 merges from the third on
            session.add_messages([{"id": f"m{n}{k}", "role": "user",
                                   "content": f"Fact {n}.{k}: the parcel went to depot {n}{k}."}
                                  for k in range(4)])
            session.compact(preserve_recent=0)
        elif op == "clear":
            remove(session, "clear")
        else:
            undo_one(session, data)
    event(f"merges: {sum(r.merged_summary is not None for r in session.ledger) > 0}")
    changed = _changes(session)
    for turn, message in enumerate(session.messages, start=1):
        history = trace_turn(turn, message, session.ledger)
        assert {s.record for s in history.steps} == changed[message.id], message.id
        expected = _expected_carriers(session, message.id) if history.in_force else []
        assert [s.id for s in history.carried_by] == expected, message.id


@settings(max_examples=60, deadline=None)
@given(conversations(max_units=40), st.lists(st.sampled_from(["compact", "undo", "add"]),
                                             max_size=10), st.data())
def test_why_agrees_with_the_window_for_every_turn(
    messages: list[Message], steps: list[str], data: st.DataObject
) -> None:
    session = Session("s", policy=POLICY, auto_compact=False)
    half = len(messages) // 2
    session.add_messages(messages[:half])
    rest = messages[half:]
    for step in steps:
        if step == "compact":
            session.compact(preserve_recent=data.draw(st.integers(0, 3)))
        elif step == "undo":
            undo_one(session, data)
        elif rest:
            session.add_messages(rest[:3])
            rest = rest[3:]
    in_window = {m.id for m in session.window.messages}
    changed = _changes(session)
    for turn, message in enumerate(session.messages, start=1):
        history = trace_turn(turn, message, session.ledger)
        assert {s.record for s in history.steps} == changed[message.id], message.id
        assert (not history.in_force) == (message.id in in_window), message.id
        expected = _expected_carriers(session, message.id) if history.in_force else []
        assert [s.id for s in history.carried_by] == expected, message.id
        assert history.now.startswith("in the window" if message.id in in_window else "out of")
