"""In-process sessions the ledger tests build on: rounds that merge, and a random undo."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from hypothesis import strategies as st

from memory.policy import CompactionPolicy
from memory.session import Session
from memory.window import compose_removal

POLICY = CompactionPolicy(context_window=600, preserve_recent=2, hierarchy_fanout=2)
NOON = datetime(2026, 12, 7, 12, tzinfo=UTC)  # one wall clock, so two sessions' records match


def compacted_rounds(rounds: int) -> Session:
    """Four facts a round, each round compacted whole: fanout 2 merges from the third on."""
    session = Session("s", policy=POLICY, auto_compact=False, wall_clock=lambda: NOON)
    for n in range(rounds):
        session.add_messages([{"id": f"m{n}{k}", "role": "user",
                               "content": f"Fact {n}.{k}: the parcel went to depot {n}{k}."}
                              for k in range(4)])
        session.compact(preserve_recent=0)
    return session


def undo_one(session: Session, data: st.DataObject) -> bool:
    """Undo a record drawn from those not undone yet; False when there is none. A refusal
    (its summary was merged since) changes nothing and is not an error here."""
    undoable = [r for r in session.ledger if r.trigger != "undo"
                and not any(u.undoes == r.id for u in session.ledger)]
    if not undoable:
        return False
    try:
        session.uncompact(data.draw(st.sampled_from(undoable)).id)
    except ValueError:
        pass
    return True


def remove(session: Session, kind: Literal["pop", "clear"]) -> None:
    """What the workflow's `pop` and `clear` do: the newest unit, or every message and
    summary, leaves as one record."""
    made = compose_removal(session.window, kind, seq=len(session.ledger))
    if made is not None:
        session.window, record = made
        session.ledger.append(record)
