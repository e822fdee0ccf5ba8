"""A session's conversation in Postgres: cursors, appends, window versions, atomic commits.

Every write locks the session's row first, so seqs are assigned in order and a compaction's
ledger record and window version commit together against the head they were planned on.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import numpy as np
from pgvector import Vector
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from memory.compaction import WindowState, window_tokens
from memory.errors import InvalidInputError, LedgerConflictError
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    Cursors,
    Message,
    Summary,
    message_digest,
    validate_sequence,
)
from memory.store.rows import row_to_message
from memory.tokens import default_counter
from memory.window import by_reference, slice_start

__all__ = ["AppendOutcome", "CommitOutcome", "Cursors", "LoadedWindow", "SessionStore"]

TAIL_LOAD_CAP = 20_000  # a compaction plans over at most this many messages of a burst
PAGE_ROWS = 128


class AppendOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    appended: int
    duplicates: int
    cursors: Cursors


class CommitOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    records: tuple[CompactionRecord, ...]
    cursors: Cursors
    already: bool = False  # a retry: the records were committed by an earlier attempt


class LoadedWindow(BaseModel):
    """A window version as read: its messages (kept + tail, in seq order), the seq where the
    next version's implicit tail will begin, and each message's seq."""

    model_config = ConfigDict(frozen=True)

    version: int
    state: WindowState
    next_base: int
    order: dict[str, int]
    turn: int = 0
    complete: bool = True


def _cursors(row: dict[str, Any], embedded: int | None) -> Cursors:
    return Cursors(next_seq=row["next_seq"], ledger_head=row["ledger_head"],
                   window_tokens=row["window_tokens"], total_tokens=row["total_tokens"],
                   embedded_seq=row["next_seq"] if embedded is None else embedded,
                   rev=row["rev"])


async def _lock_session(conn: AsyncConnection[DictRow], tenant: str,
                        session: str) -> dict[str, Any]:
    await conn.execute("INSERT INTO sessions (tenant, session) VALUES (%s, %s)"
                       " ON CONFLICT DO NOTHING", (tenant, session))
    cur = await conn.execute("SELECT * FROM sessions WHERE tenant = %s AND session = %s"
                             " FOR UPDATE", (tenant, session))
    row = await cur.fetchone()
    assert row is not None
    return row


async def _embedded_seq(conn: AsyncConnection[DictRow], tenant: str, session: str) -> int | None:
    cur = await conn.execute("SELECT min(seq) AS s FROM messages WHERE tenant = %s AND session"
                             " = %s AND embedding IS NULL", (tenant, session))
    row = await cur.fetchone()
    return None if row is None or row["s"] is None else int(row["s"])


class SessionStore:
    """Mixed into `Store`, which provides `scoped` (a tenant-bound transaction)."""

    def scoped(self, tenant: str, snapshot: bool = False
               ) -> AbstractAsyncContextManager[AsyncConnection[DictRow]]:
        raise NotImplementedError

    async def cursors(self, tenant: str, session: str) -> Cursors:
        """The session's cursors; creates its row, so a new session starts at zero."""
        async with self.scoped(tenant) as conn:
            row = await _lock_session(conn, tenant, session)
            return _cursors(row, await _embedded_seq(conn, tenant, session))

    async def append_messages(self, tenant: str, session: str,
                              messages: Sequence[Message]) -> AppendOutcome:
        """Store a batch in order; idempotent by id. A known id with other content, or a tool
        result that answers no call of this session, is refused and nothing is stored."""
        counter = default_counter()
        async with self.scoped(tenant) as conn:
            row = await _lock_session(conn, tenant, session)
            cur = await conn.execute(
                "SELECT id, digest FROM messages WHERE tenant = %s AND session = %s"
                " AND id = ANY(%s)", (tenant, session, [m.id for m in messages]))
            known = {r["id"]: r["digest"] for r in await cur.fetchall()}
            digests = [message_digest(m) for m in messages]
            for index, (message, dig) in enumerate(zip(messages, digests, strict=True)):
                if message.id in known and known[message.id] not in (None, dig):
                    raise InvalidInputError(f"messages[{index}].id", f"{message.id!r} was "
                                            "already appended with other content")
            answered = [m.tool_call_id for m in messages if m.role == "tool" and m.tool_call_id]
            cur = await conn.execute(
                "SELECT call_id FROM tool_calls WHERE tenant = %s AND session = %s"
                " AND call_id = ANY(%s)", (tenant, session, answered))
            validate_sequence(messages, open_tool_calls={r["call_id"] for r in
                                                         await cur.fetchall()})
            fresh = [(m, d) for m, d in zip(messages, digests, strict=True) if m.id not in known]
            seq = int(row["next_seq"])
            window_add = total_add = 0
            rows = []
            for n, (m, dig) in enumerate(fresh):
                shown = by_reference(m)
                tokens = counter.count_message(shown.role, shown.content)
                window_add += tokens
                total_add += tokens if shown is m else counter.count_message(m.role, m.content)
                rows.append((tenant, session, m.id, seq + n, m.role, m.content, m.name,
                             m.created_at, m.tool_call_id,
                             Jsonb([c.model_dump() for c in m.tool_calls]), Jsonb(m.metadata),
                             dig, tokens))
            if rows:
                async with conn.cursor() as cur2:
                    await cur2.executemany(
                        "INSERT INTO messages (tenant, session, id, seq, role, content, name,"
                        " created_at, tool_call_id, tool_calls, metadata, digest, tokens)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
                    calls = [(tenant, session, c.id, m.id) for m, _ in fresh
                             for c in m.tool_calls]
                    if calls:
                        await cur2.executemany(
                            "INSERT INTO tool_calls (tenant, session, call_id, message_id)"
                            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", calls)
            cur = await conn.execute(
                "UPDATE sessions SET next_seq = next_seq + %s, window_tokens = window_tokens + %s,"
                " total_tokens = total_tokens + %s, rev = rev + 1, updated_at = now()"
                " WHERE tenant = %s AND session = %s RETURNING *",
                (len(fresh), window_add, total_add, tenant, session))
            updated = await cur.fetchone()
            assert updated is not None
            embedded = await _embedded_seq(conn, tenant, session)
        return AppendOutcome(appended=len(fresh), duplicates=len(messages) - len(fresh),
                             cursors=_cursors(updated, embedded))

    async def unembedded(self, tenant: str, session: str, start: int, stop: int
                         ) -> list[tuple[str, str]]:
        """(id, content) of messages in [start, stop) that have no embedding yet."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT id, content FROM messages WHERE tenant = %s AND session = %s"
                " AND seq >= %s AND seq < %s AND embedding IS NULL ORDER BY seq",
                (tenant, session, start, stop))
            return [(r["id"], r["content"]) for r in await cur.fetchall()]

    async def set_embeddings(self, tenant: str, session: str,
                             vectors: Sequence[tuple[str, Sequence[float]]]) -> None:
        async with self.scoped(tenant) as conn, conn.cursor() as cur:
            await cur.executemany(
                "UPDATE messages SET embedding = %s WHERE tenant = %s AND session = %s"
                " AND id = %s", [(Vector(np.asarray(v, dtype=np.float32)), tenant, session, i)
                                 for i, v in vectors])

    # -- window versions -------------------------------------------------------------------
    async def _version(self, conn: AsyncConnection[DictRow], tenant: str, session: str,
                       version: int) -> tuple[int, list[str], tuple[Summary, ...]]:
        if version == 0:
            return 0, [], ()
        cur = await conn.execute(
            "SELECT base_seq, kept_ids, summaries FROM window_versions WHERE tenant = %s"
            " AND session = %s AND version = %s", (tenant, session, version))
        row = await cur.fetchone()
        if row is None:
            raise LedgerConflictError(f"window version {version} of {session!r} is missing")
        return (int(row["base_seq"]), list(row["kept_ids"]),
                tuple(Summary.model_validate(s) for s in row["summaries"]))

    async def _rows(self, conn: AsyncConnection[DictRow], query: str,
                    params: Sequence[Any]) -> list[dict[str, Any]]:
        cur = await conn.execute(query, params)
        return await cur.fetchall()

    async def load_window(self, tenant: str, session: str) -> LoadedWindow:
        """The current window in full (up to TAIL_LOAD_CAP tail messages), for compaction."""
        async with self.scoped(tenant) as conn:
            row = await _lock_session(conn, tenant, session)
            head = int(row["ledger_head"])
            base, kept, summaries = await self._version(conn, tenant, session, head)
            rows = await self._rows(
                conn, "SELECT * FROM messages WHERE tenant = %s AND session = %s AND id = ANY(%s)",
                (tenant, session, kept))
            rows += await self._rows(
                conn, "SELECT * FROM messages WHERE tenant = %s AND session = %s AND seq >= %s"
                      " ORDER BY seq LIMIT %s", (tenant, session, base, TAIL_LOAD_CAP))
        rows.sort(key=lambda r: r["seq"])
        tail = [r["seq"] for r in rows if r["seq"] >= base]
        return LoadedWindow(
            version=head, next_base=(max(tail) + 1) if tail else base,
            state=WindowState(summaries=summaries,
                              messages=tuple(by_reference(row_to_message(r)) for r in rows)),
            order={r["id"]: int(r["seq"]) for r in rows}, turn=int(row["next_seq"]))

    async def read_window(self, tenant: str, session: str, max_tokens: int) -> LoadedWindow:
        """What a context of `max_tokens` may draw on, from one snapshot: every system message,
        summary and kept message of the current version, and as much of the newest tail as
        `recent_slice` can use (read page by page, newest first)."""
        async with self.scoped(tenant, snapshot=True) as conn:
            cur = await conn.execute("SELECT * FROM sessions WHERE tenant = %s AND session = %s",
                                     (tenant, session))
            row = await cur.fetchone()
            if row is None:
                return LoadedWindow(version=0, state=WindowState(), next_base=0, order={})
            head, turn = int(row["ledger_head"]), int(row["next_seq"])
            base, kept, summaries = await self._version(conn, tenant, session, head)
            fixed = await self._rows(
                conn, "SELECT * FROM messages WHERE tenant = %s AND session = %s AND"
                      " (id = ANY(%s) OR (seq >= %s AND role = 'system'))",
                (tenant, session, kept, base))
            tail: list[dict[str, Any]] = []
            limit, complete = PAGE_ROWS, False
            while True:
                before = tail[0]["seq"] if tail else turn
                page = await self._rows(
                    conn, "SELECT * FROM messages WHERE tenant = %s AND session = %s AND seq >= %s"
                          " AND seq < %s AND role <> 'system' ORDER BY seq DESC LIMIT %s",
                    (tenant, session, base, before, limit))
                tail = sorted(page, key=lambda r: r["seq"]) + tail
                complete = len(page) < limit
                if complete or self._enough(fixed, tail, max_tokens):
                    break
                limit *= 2
        rows = sorted(fixed + tail, key=lambda r: r["seq"])
        return LoadedWindow(
            version=head, next_base=base, complete=complete, turn=turn,
            state=WindowState(summaries=summaries,
                              messages=tuple(by_reference(row_to_message(r)) for r in rows)),
            order={r["id"]: int(r["seq"]) for r in rows})

    @staticmethod
    def _enough(fixed: list[dict[str, Any]], tail: list[dict[str, Any]], max_tokens: int) -> bool:
        """Whether the tail read so far already holds the whole of `recent_slice`."""
        kept = [by_reference(row_to_message(r)) for r in fixed if r["role"] != "system"]
        read = [by_reference(row_to_message(r)) for r in tail]  # as the window holds them
        start = slice_start([*kept, *read], max_tokens)
        if start <= len(kept):  # the slice reaches past what was read of the tail
            return False
        ids = {c.id for m in read for c in m.tool_calls}
        return all(m.tool_call_id in ids for m in read[start - len(kept):] if m.role == "tool")

    async def commit_records(self, tenant: str, session: str, expected_head: int,
                             steps: Sequence[tuple[CompactionRecord, WindowState]],
                             next_base: int) -> CommitOutcome:
        """Commit ledger records and the window version each produced, in one transaction.

        Idempotent by (session, seq): a retry of a commit that already landed returns the stored
        records; records planned on a head that has since moved raise LedgerConflictError.
        """
        async with self.scoped(tenant) as conn:
            row = await _lock_session(conn, tenant, session)
            head = int(row["ledger_head"])
            if head != expected_head:
                stored = await self._ledger_from(conn, tenant, session, expected_head,
                                                 len(steps))
                if head > expected_head and [r.id for r in stored] == [r.id for r, _ in steps]:
                    return CommitOutcome(records=tuple(stored), already=True, cursors=_cursors(
                        row, await _embedded_seq(conn, tenant, session)))
                raise LedgerConflictError(f"ledger of {session!r} is at {head}, "
                                          f"not {expected_head}")
            for n, (record, state) in enumerate(steps):
                if record.seq != expected_head + n:
                    raise LedgerConflictError(f"{record.id}: seq {record.seq}, expected "
                                              f"{expected_head + n}")
                await conn.execute(
                    "INSERT INTO ledger (tenant, session, seq, id, record) VALUES (%s, %s, %s,"
                    " %s, %s)", (tenant, session, record.seq, record.id,
                                 Jsonb(record.model_dump(mode="json"))))
                await conn.execute(
                    "INSERT INTO window_versions (tenant, session, version, base_seq, kept_ids,"
                    " summaries, tokens) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (tenant, session, record.seq + 1, next_base,
                     [m.id for m in state.messages],
                     Jsonb([s.model_dump(mode="json") for s in state.summaries]),
                     window_tokens(state)))
            final = steps[-1][1] if steps else None
            cur = await conn.execute(
                "UPDATE sessions SET ledger_head = %s, rev = rev + 1, updated_at = now(),"
                " window_tokens = %s + (SELECT coalesce(sum(tokens), 0) FROM messages WHERE"
                " tenant = %s AND session = %s AND seq >= %s)"
                " WHERE tenant = %s AND session = %s RETURNING *",
                (expected_head + len(steps), window_tokens(final) if final else 0, tenant,
                 session, next_base, tenant, session))
            updated = await cur.fetchone()
            assert updated is not None
            embedded = await _embedded_seq(conn, tenant, session)
        return CommitOutcome(records=tuple(r for r, _ in steps),
                             cursors=_cursors(updated, embedded))

    async def _ledger_from(self, conn: AsyncConnection[DictRow], tenant: str, session: str,
                           start: int, count: int) -> list[CompactionRecord]:
        rows = await self._rows(
            conn, "SELECT record FROM ledger WHERE tenant = %s AND session = %s AND seq >= %s"
                  " ORDER BY seq LIMIT %s", (tenant, session, start, count))
        return [CompactionRecord.model_validate(r["record"]) for r in rows]

    async def add_event(self, tenant: str, session: str, event: CompactionEvent) -> None:
        async with self.scoped(tenant) as conn:
            await conn.execute("INSERT INTO compaction_events (tenant, session, event)"
                               " VALUES (%s, %s, %s)",
                               (tenant, session, Jsonb(event.model_dump(mode="json"))))

    async def events(self, tenant: str, session: str, limit: int = 200
                     ) -> list[CompactionEvent]:
        async with self.scoped(tenant) as conn:
            rows = await self._rows(
                conn, "SELECT event FROM (SELECT id, event FROM compaction_events WHERE tenant = %s"
                      " AND session = %s ORDER BY id DESC LIMIT %s) e ORDER BY id",
                (tenant, session, limit))
        return [CompactionEvent.model_validate(r["event"]) for r in rows]
