"""Replay: rebuild exactly the window the model saw at turn N, from the archive and the ledger;
and `why_at`: which ledger records took turn N out of the window, and why.

Every served context is recorded in the store (turn, request, ledger position, retrieved ids
and scores, digest). Replay takes the session's first `turn` messages, folds the ledger records
that were in force through `apply_record` (the one function every path uses), re-fetches the
retrieved originals (and the bodies of the previews it may show whole) and assembles the window
with the same pure code; the digests must match.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from memory.assembly import Shares
from memory.audit import ServedContext, window_digest
from memory.checks import check_id
from memory.compaction import WindowState
from memory.errors import InvalidInputError, NotFoundError
from memory.fold import Archived, LedgerFold, fold_ledger
from memory.models import CompactionRecord, ContextWindow, Message, ScoredMessage, Summary
from memory.store.lookups import Lookup
from memory.store.store import Store
from memory.window import assemble_from_window, by_reference

__all__ = ["Archived", "LedgerFold", "ReplayResult", "TurnHistory", "TurnStep", "by", "fold_ledger",
           "message_of", "rebuild", "replay_at", "trace_turn", "why_at", "why_of_id"]


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
                                ledger_seq: int, archived: Archived | None = None
                                ) -> tuple[WindowState, dict[str, Message]]:
    """The window after `turn` messages with the first `ledger_seq` records applied, and
    every original by id (the window holds bodies over 64 KB as previews); from `archived`
    when given, else read."""
    if archived is not None:  # the originals of later turns too: only the window's are asked
        return archived.window_at(turn, ledger_seq), archived.originals
    messages = await store.all_messages(tenant, session, before=turn)
    records = await store.ledger(tenant, session, stop=ledger_seq)
    state = fold_ledger([by_reference(m) for m in messages], records)
    return state, {m.id: m for m in messages}


async def rebuild(store: Store, tenant: str, session: str,
                  served: ServedContext, archived: Archived | None = None) -> ContextWindow:
    """One served context, assembled again from the archive and the ledger with the request,
    retrieved candidates and assembly version recorded when it was served; from `archived`
    (`verify`, many at once) when given."""
    state, originals = await _window_and_originals(store, tenant, session, served.turn,
                                                   served.ledger_seq, archived)
    if archived is None:
        found = await store.get_with_seq(tenant, session, [i for i, _ in served.retrieved])
        by_id = {m.id: (seq, m) for seq, m in found}
    else:
        by_id = archived.by_id
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


class TurnStep(BaseModel):
    """One thing a ledger record did to a turn's message or to a summary that carries it."""

    model_config = ConfigDict(frozen=True)

    record: str
    at: datetime | None
    what: str
    why: str | None = None  # the record's reason, on the step that took the message out


class TurnHistory(BaseModel):
    """The message at one turn and every ledger record that covered it, undid one that did,
    or folded a summary that carries it, oldest first: "why was turn 37 summarized away, and
    where is it now?" without reading the whole ledger."""

    model_config = ConfigDict(frozen=True)

    turn: int
    message: Message
    # The records that took the message out of the window or put it back.
    records: tuple[CompactionRecord, ...]
    # Of `records`, those keeping it out now: empty means the message is in the window
    # verbatim (no compaction took it, or an undo put it back).
    in_force: tuple[str, ...]
    # What happened, step by step, including later merges of the summary it went into.
    steps: tuple[TurnStep, ...] = ()
    # The summaries in the window now that stand for the message (the top of its merges).
    carried_by: tuple[Summary, ...] = ()
    now: str = ""


def _quoting(summary: Summary, message: Message) -> str:
    """How much of the message a summary that lists it among its quotes holds: an extractive
    line quotes the sentences that carry facts, which may be all of the message or part of
    it, and "verbatim" alone told an auditor the whole fact was kept when a clause was not."""
    if message.id not in summary.quoted_ids:
        return ""
    whole = " ".join(message.content.split())
    return "whole" if whole and whole in " ".join(summary.content.split()) else "in part"


def by(record: CompactionRecord) -> str:
    """Who asked for a record, as it reads after its trigger; nothing when nobody was named
    (automatic records, and records from before actors were recorded)."""
    return f" by {record.actor}" if record.actor else ""


def _covering_step(record: CompactionRecord, message: Message) -> TurnStep:
    quoting = "" if record.summary is None else _quoting(record.summary, message)
    if record.summary is None:
        what = "archived it with no summary"
    elif quoting:
        what = (f"quoted it {quoting}, verbatim, in summary {record.summary.id} "
                f"(level {record.summary.level})")
    else:
        what = f"summarized it into {record.summary.id} (level {record.summary.level})"
    how = record.strategy + (f" / {record.model}" if record.model else "")
    return TurnStep(record=record.id, at=record.at, what=f"{record.trigger}/{record.level}"
                    f"{by(record)} ({how}): {what}", why=record.reason)


def _now(in_force: Sequence[str], carried_by: Sequence[Summary], message: Message,
         touched: bool) -> str:
    if not in_force:
        return "in the window verbatim" + (
            " (every compaction of it was undone)" if touched else "; no compaction covered it")
    carriers = "; ".join(
        f"summary {s.id} (level {s.level}) stands for it in the window"
        + (f", quoting it {q}" if (q := _quoting(s, message)) else "") for s in carried_by)
    return (f"out of the window since {in_force[-1]}; " + (carriers or "no summary in the "
            "window stands for it") + "; the archive keeps it whole, and a query can retrieve it")


def _moved(record: CompactionRecord, lost: Sequence[str], back: Sequence[str]) -> str:
    """An undo, a clear or an imported record that took summaries standing for the message
    out of the window, or put them back, without folding them into a new one."""
    parts = ([f"took {', '.join(lost)} out of the window"] if lost else []) + (
        [f"put {', '.join(back)} back"] if back else [])
    head = (f"undid {record.undoes}{by(record)}" if record.trigger == "undo"
            else f"{record.trigger}/{record.level}{by(record)} ({record.action})")
    return f"{head}: {' and '.join(parts)}"


def trace_turn(turn: int, message: Message, ledger: Sequence[CompactionRecord]) -> TurnHistory:
    """Walk the ledger once, in order, doing to the message and to the window's summaries
    what `apply_record` does (a record takes out what it covers and the summaries it
    removes, then adds its merged and new summaries; an undo, known by its trigger, puts its
    covered messages and its restored summaries back). `carriers` are the summaries that
    ever stood for the message: the one it went into, and every summary that merged one."""
    present: dict[str, Summary] = {}
    carriers: set[str] = set()
    in_force: list[str] = []
    records: list[CompactionRecord] = []
    steps: list[TurnStep] = []
    for r in ledger:
        removed = set(r.removed_summary_ids)
        lost = sorted(i for i in removed if i in carriers and i in present)
        for i in removed:
            present.pop(i, None)
        if r.trigger == "undo":
            back = [s.id for s in r.restored_summaries if s.id in carriers]
            present.update((s.id, s) for s in r.restored_summaries)
            if message.id in r.covered_ids:
                records.append(r)
                in_force.clear()
                steps.append(TurnStep(record=r.id, at=r.at, what=f"undid {r.undoes}{by(r)}, "
                                      "putting it back in the window"))
            elif lost or back:
                steps.append(TurnStep(record=r.id, at=r.at, what=_moved(r, lost, back)))
            continue
        if message.id in r.covered_ids:
            records.append(r)
            in_force.append(r.id)
            steps.append(_covering_step(r, message))
            if r.summary is not None:
                carriers.add(r.summary.id)
        merged = r.merged_summary
        if lost and merged is not None:
            carriers.add(merged.id)
            quoting = _quoting(merged, message)
            quoted = f", quoting it {quoting}" if quoting else ""
            steps.append(TurnStep(record=r.id, at=r.at, what=f"{r.trigger}/{r.level}: folded "
                                  f"{', '.join(lost)} into {merged.id} (level {merged.level})"
                                  f"{quoted}"))
        elif lost:
            steps.append(TurnStep(record=r.id, at=r.at, what=_moved(r, lost, ()), why=r.reason))
        present.update((s.id, s) for s in (merged, r.summary) if s is not None)
    carried_by = tuple(s for i, s in present.items() if i in carriers) if in_force else ()
    return TurnHistory(turn=turn, message=message, records=tuple(records),
                       in_force=tuple(in_force), steps=tuple(steps), carried_by=carried_by,
                       now=_now(in_force, carried_by, message, bool(records)))


async def why_at(store: Store, tenant: str, session: str, turn: int) -> TurnHistory:
    """Turn N is the N-th message stored (turns count from 1, as `replay --at` does)."""
    message = await store.message_at(tenant, session, turn - 1)
    if message is None:
        count = await store.count(tenant, session)
        raise NotFoundError(f"turn: {session!r} has {count} messages; turns are 1 to {count}"
                            ) if count else await store.missing(tenant, session)
    return trace_turn(turn, message, await store.ledger(tenant, session))


def message_of(found: Lookup, ident: str, field: str, session: str) -> tuple[int, Message]:
    """The one message `ident` names in `found` and its seq; refused naming `field` when it
    names none, or a tail several long ids end with."""
    if ident in found.ambiguous:
        raise InvalidInputError(field, found.ambiguity(ident))
    if ident not in found.found:
        raise NotFoundError(f"{field}: no message {ident!r} in session {session!r}")
    return found.found[ident]


async def why_of_id(store: Store, tenant: str, session: str, ident: str,
                    field: str = "id") -> TurnHistory:
    """`why_at` for a message named by its id, whole or by the tail a window shows (an
    auditor holds ids from the ledger and from windows' lines as often as turns)."""
    check_id(field, ident)
    seq, message = message_of(await store.find_messages(tenant, session, [ident]), ident,
                              field, session)
    return trace_turn(seq + 1, message, await store.ledger(tenant, session))
