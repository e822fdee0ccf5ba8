"""One function applies a ledger record: folding the ledger from the originals rebuilds the
window exactly, whatever mix of compactions, merges and undos produced it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.compaction import WindowState, apply_record
from memory.hierarchy import merge_summaries
from memory.models import Message, Summary
from memory.session import Session
from tests.unit.sessions import POLICY, compacted_rounds, undo_one
from tests.unit.strategies import conversations


def _rebuilt(session: Session) -> WindowState:
    originals = {m.id: m for m in session.messages}
    order = {m.id: n for n, m in enumerate(session.messages)}
    state = WindowState(messages=tuple(session.messages))
    for record in session.ledger:
        state = apply_record(state, record, originals=originals, order=order)
    return state


@settings(max_examples=60, deadline=None)
@given(conversations(max_units=40), st.lists(st.sampled_from(["compact", "undo", "add"]),
                                             max_size=8), st.data())
def test_folding_the_ledger_rebuilds_the_window(
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
        assert _rebuilt(session) == session.window


def test_a_merge_travels_in_the_record_and_an_undo_puts_the_parts_back() -> None:
    session = compacted_rounds(4)
    merging = [r for r in session.ledger if r.merged_summary is not None]
    assert merging, "fanout 2 must fold summaries into a level-2 summary"
    record = merging[0]
    assert record.merged_summary is not None and record.merged_summary.level == 2
    assert record.merged_summary.content  # the text is in the record, not recomputed
    assert _rebuilt(session) == session.window
    last = session.ledger[-1]
    before = session.window
    session.uncompact(last.id)
    assert _rebuilt(session) == session.window != before


def test_merging_abstractive_summaries_keeps_their_content() -> None:
    prose = [Summary(id="s1", level=1, covers=("a",), content="The user ordered a bike. "
                     "Delivery is due May 3."),
             Summary(id="s2", level=1, covers=("b",), content="A refund of 10 EUR was agreed.")]
    merged = merge_summaries("m", prose, max_tokens=200)
    assert "bike" in merged.content and "refund" in merged.content.lower()
    assert merged.quoted_ids == ()  # prose quotes no original message verbatim


def test_an_undo_refused_for_a_merged_summary_names_what_to_undo_first() -> None:
    session = compacted_rounds(6)
    first = session.ledger[0]
    mergers = [r for r in session.ledger if r.merged_summary is not None]
    assert mergers, "fanout 2 must fold summaries into a level-2 summary"
    try:
        session.uncompact(first.id)
    except ValueError as exc:
        message = str(exc)
    else:
        raise AssertionError("an undo of a merged summary was accepted")
    named = message.split("undo ", 1)[1].split(" first", 1)[0].split(" then ")
    assert message.startswith(f"record_id: {first.id}: its summary was merged") and named
    # Undoing them in the order named makes the first record undoable.
    for record_id in named:
        session.uncompact(record_id)
    session.uncompact(first.id)
    assert _rebuilt(session) == session.window


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 9), st.data())
def test_undoing_in_the_order_named_always_makes_the_refused_undo_possible(
        rounds: int, data: st.DataObject) -> None:
    """Whatever merged a record's summaries (one later record or several, and records that
    merged those in turn), the refusal names all of them, newest first."""
    session = compacted_rounds(rounds)
    target = data.draw(st.sampled_from([r for r in session.ledger]))
    try:
        session.uncompact(target.id)
    except ValueError as exc:
        named = str(exc).split("undo ", 1)[1].split(" first", 1)[0].split(" then ")
        for record_id in named:
            session.uncompact(record_id)
        session.uncompact(target.id)
    assert _rebuilt(session) == session.window


def test_with_later_undoes_the_merges_first_and_the_target_last() -> None:
    session = compacted_rounds(6)
    first = session.ledger[0]
    head = len(session.ledger)
    record = session.uncompact(first.id, with_later=True)
    made = session.ledger[head:]
    assert len(made) >= 2 and all(r.trigger == "undo" for r in made)
    assert made[-1] == record and record.undoes == first.id
    assert all(r.undoes and any(o.id == r.undoes and o.merged_summary is not None
                                for o in session.ledger) for r in made[:-1])
    assert _rebuilt(session) == session.window


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 9), st.data())
def test_with_later_undoes_what_the_refusal_names_in_one_step(
        rounds: int, data: st.DataObject) -> None:
    """`with_later` makes the same records, in the same order, as undoing by hand what the
    refusal names and then the target; one call, and the window rebuilds from the ledger."""
    by_hand, at_once = compacted_rounds(rounds), compacted_rounds(rounds)
    target = data.draw(st.sampled_from([r.id for r in by_hand.ledger]))
    try:
        by_hand.uncompact(target)
    except ValueError as exc:
        assert str(exc).endswith("or undo them with it (with_later, --with-later)")
        for record_id in str(exc).split("undo ", 1)[1].split(" first", 1)[0].split(" then "):
            by_hand.uncompact(record_id)
        by_hand.uncompact(target)
    record = at_once.uncompact(target, with_later=True)
    assert record.undoes == target and record == at_once.ledger[-1]
    strip = [r.model_copy(update={"at": None, "duration_ms": 0.0}) for r in by_hand.ledger]
    assert [r.model_copy(update={"at": None, "duration_ms": 0.0}) for r in at_once.ledger] \
        == strip
    assert at_once.window == by_hand.window and _rebuilt(at_once) == at_once.window


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 8), st.data())
def test_after_any_undo_the_summaries_stand_in_conversation_order(
        rounds: int, data: st.DataObject) -> None:
    """An undo of a merge used to put the parts it restored before every other summary, so
    the model read the newest level-1 summaries ahead of the level-2 one of everything older
    (found by a user test). Summaries now always stand in the order of what they cover."""
    session = compacted_rounds(rounds)
    order = {m.id: n for n, m in enumerate(session.messages)}
    for _ in range(data.draw(st.integers(1, 4))):
        if not undo_one(session, data):
            break
        starts = [order[s.covers[0] if s.covers else s.span[0]]  # type: ignore[index]
                  for s in session.window.summaries]
        assert starts == sorted(starts), [s.id for s in session.window.summaries]
    assert _rebuilt(session) == session.window


def test_an_undo_of_a_merge_puts_its_parts_back_in_place() -> None:
    session = compacted_rounds(8)  # c7 folds s5 and s6; c8 folds c3's and c5's merges
    assert [s.id for s in session.window.summaries] == ["c8-merged", "c7-merged", "s7", "s8"]
    session.uncompact("c7")  # before engine 5: s5, s6, c8-merged, s8
    assert [s.id for s in session.window.summaries] == ["c8-merged", "s5", "s6", "s8"]
