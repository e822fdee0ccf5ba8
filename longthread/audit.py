"""Replay: rebuild exactly the window the model saw at turn N, from the archive and the ledger;
and `why_at`: which ledger records took turn N out of the window, and why.

Every served context is recorded in the store (turn, request, ledger position, retrieved ids
and scores, digest). Replay takes the session's first `turn` messages, folds the ledger records
that were in force through `apply_record` (the one function every path uses), re-fetches the
retrieved originals (and the bodies of the previews it may show whole) and assembles the window
with the same pure code; the digests must match.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from memory.assembly import Shares
from memory.audit import ServedContext, window_digest
from memory.compaction import WindowState, apply_record
from memory.errors import NotFoundError
from memory.models import CompactionRecord, ContextWindow, Message, ScoredMessage
from memory.store.store import Store
from memory.window import assemble_from_window, by_reference

__all__ = ["ReplayResult", "TurnHistory", "rebuild", "replay_at", "why_at"]


class ReplayResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    served: ServedContext
    window: ContextWindow
    matches: bool
    # Every context served at the same turn (this one's seq among them), oldest first: more
    # than one means the model was called again at that turn, or someone looked; each can be
    # replayed by its seq.
    served_at_turn: list[int] = []


async def _window_and_originals(store: Store, tenant: str, session: str, turn: int,
                                ledger_seq: int) -> tuple[WindowState, dict[str, Message]]:
    """The window after `turn` messages with the first `ledger_seq` records applied, and
    every original by id (the window holds bodies over 64 KB as previews)."""
    messages = await store.all_messages(tenant, session)
    order = {m.id: n for n, m in enumerate(messages)}
    shown = {m.id: by_reference(m) for m in messages}
    state = WindowState(messages=tuple(shown[m.id] for m in messages[:turn]))
    for record in (await store.ledger(tenant, session))[:ledger_seq]:
        state = apply_record(state, record, originals=shown, order=order)
    return state, {m.id: m for m in messages}


async def rebuild(store: Store, tenant: str, session: str,
                  served: ServedContext) -> ContextWindow:
    """One served context, assembled again from the archive and the ledger with the request,
    retrieved candidates and assembly version recorded when it was served."""
    state, originals = await _window_and_originals(store, tenant, session, served.turn,
                                                   served.ledger_seq)
    found = {seq: m for seq, m in await store.get_with_seq(
        tenant, session, [i for i, _ in served.retrieved])}
    by_id = {m.id: (seq, m) for seq, m in found.items()}
    retrieved = [ScoredMessage(message=by_id[i][1], score=score, session=session,
                               seq=by_id[i][0]) for i, score in served.retrieved if i in by_id]
    return assemble_from_window(
        state, max_tokens=served.max_tokens, retrieved=retrieved,
        shares=Shares(*served.shares) if served.shares else None, query=served.query,
        version=served.assembly_version, bodies=originals)


async def replay_at(store: Store, tenant: str, session: str, turn: int,
                    seq: int | None = None) -> ReplayResult:
    """Rebuild the newest context served at or before `turn` (or the one numbered `seq`) and
    check its digest."""
    served_doc, at_turn = await store.last_served(tenant, session, at_turn=turn, seq=seq)
    if served_doc is None:
        raise NotFoundError(
            f"seq: no context numbered {seq} was served in {session!r}" if seq is not None
            else f"turn: no context was served in {session!r} at or before turn {turn}")
    served = ServedContext.model_validate(served_doc)
    window = await rebuild(store, tenant, session, served)
    return ReplayResult(served=served, window=window, served_at_turn=at_turn,
                        matches=window_digest(window) == served.digest)


class TurnHistory(BaseModel):
    """The message at one turn and every ledger record that covered it or undid one that did,
    oldest first: "why was turn 37 summarized away?" without reading the whole ledger."""

    model_config = ConfigDict(frozen=True)

    turn: int
    message: Message
    records: tuple[CompactionRecord, ...]
    # Of `records`, those that covered the message and are not undone: empty means the
    # message is in the window verbatim (no compaction took it, or every one was undone).
    in_force: tuple[str, ...]


async def why_at(store: Store, tenant: str, session: str, turn: int) -> TurnHistory:
    """Turn N is the N-th message stored (turns count from 1, as `replay --at` does)."""
    message = await store.message_at(tenant, session, turn - 1)
    if message is None:
        count = await store.count(tenant, session)
        raise NotFoundError(f"turn: {session!r} has {count} messages; turns are 1 to {count}"
                            if count else f"session: no session {session!r} for tenant "
                            f"{tenant!r}")
    ledger = await store.ledger(tenant, session)
    covering = {r.id for r in ledger if r.undoes is None and message.id in r.covered_ids}
    undone = {r.undoes for r in ledger if r.undoes in covering}
    records = tuple(r for r in ledger if r.id in covering or r.undoes in covering)
    return TurnHistory(turn=turn, message=message, records=records,
                       in_force=tuple(r.id for r in records if r.id in covering - undone))
