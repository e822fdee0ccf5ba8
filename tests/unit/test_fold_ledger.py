"""`replay` folds the ledger over the session's first turns (`longthread.audit.fold_ledger`),
letting each message join only when a record could first cover it. Whatever the session did,
the fold at every (turn, ledger prefix) it passed through is the window it had then."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from longthread.audit import fold_ledger
from memory.compaction import WindowState, apply_record
from memory.fold import Archived
from memory.models import Message
from memory.session import Session
from tests.unit.sessions import POLICY, remove, undo_one
from tests.unit.strategies import conversations


def _whole_fold(messages: list[Message], session: Session, records: int) -> WindowState:
    """The fold as replay did it before: every turn in the window from the start."""
    order = {m.id: n for n, m in enumerate(session.messages)}
    state = WindowState(messages=tuple(messages))
    for record in session.ledger[:records]:
        state = apply_record(state, record, originals={m.id: m for m in session.messages},
                             order=order)
    return state


@settings(max_examples=80, deadline=None)
@given(conversations(max_units=40),
       st.lists(st.sampled_from(["compact", "compact", "undo", "add", "add", "pop", "clear"]),
                max_size=14), st.data())
def test_the_fold_is_the_window_the_session_had_at_every_point(
    messages: list[Message], steps: list[str], data: st.DataObject
) -> None:
    session = Session("s", policy=POLICY, auto_compact=False)
    session.add_messages(messages[:4])
    rest = messages[4:]
    seen = [(len(session.messages), 0, session.window)]
    for step in steps:
        if step == "compact":
            session.compact(preserve_recent=data.draw(st.integers(0, 3)))
        elif step == "undo":
            undo_one(session, data)
        elif step in ("pop", "clear"):
            remove(session, "pop" if step == "pop" else "clear")
        elif rest:
            session.add_messages(rest[:3])
            rest = rest[3:]
        seen.append((len(session.messages), len(session.ledger), session.window))
    event(f"records: {min(len(session.ledger), 5)}")
    for turn, records, window in seen:
        folded = fold_ledger(session.messages[:turn], session.ledger[:records])
        assert folded == window, (turn, records)
        assert folded == _whole_fold(session.messages[:turn], session, records)
    # `verify`'s one running fold gives the same windows, asked in the order they were had,
    # and (folding on its own what is behind it) in any other order.
    archived = Archived(list(enumerate(session.messages)), session.ledger)
    for turn, records, window in seen:
        assert archived.window_at(turn, records) == window, (turn, records)
    again = Archived(list(enumerate(session.messages)), session.ledger)
    for turn, records, window in data.draw(st.permutations(seen)):
        assert again.window_at(turn, records) == window, (turn, records)
