"""A session's appends and embeddings in Postgres: each batch stored in order, once, in one
round trip; the session's row is locked first, so seqs are assigned in order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pgvector import Vector
from pydantic import BaseModel, ConfigDict

from memory.conflicts import conflict_error
from memory.errors import InvalidInputError, SessionErasedError
from memory.messages import check_not_future, utc_instant
from memory.models import (
    Cursors,
    Message,
    message_digest,
    validate_sequence,
)
from memory.store.append_sql import _APPEND, _INSERT_MESSAGES
from memory.store.base import (
    _EMBEDDED_SEQ,
    LOCK_SESSION,
    StoreBase,
    _cursors,
    _embedded_seq,
    _lock_session,
    refuse_erased,
)
from memory.store.rows import MESSAGE_COLUMNS, row_to_message
from memory.tokens import default_counter, message_cost
from memory.window import by_reference

__all__ = ["RECENT_REQUESTS", "AppendOutcome", "AppendStore"]

# How many of a session's last appends are remembered by request id (migration 14). An append
# runs again only while its workflow task is retried, moments later, and a workflow task
# carries a few dozen updates at most.
RECENT_REQUESTS = 64


class AppendOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    appended: int
    duplicates: int
    cursors: Cursors
    # The request ran before (a retried workflow task): `appended` is what it stored then.
    rerun: bool = False


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# The stored copy of a refused id, read on the refusal path only (one more round trip there).
_STORED = (f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = %s AND session = %s"
           " AND id = %s")


def _conflict(index: int, sent: Message, row: dict[str, Any] | None) -> InvalidInputError:
    return conflict_error(index, sent, None if row is None else row_to_message(row))


class AppendStore(StoreBase):
    """Appends and embeddings; mixed into `SessionStore`."""

    async def cursors(self, tenant: str, session: str) -> Cursors:
        """The session's cursors; creates its row, so a new session starts at zero."""
        async with self.scoped(tenant) as conn:
            row = await _lock_session(conn, tenant, session)
            return _cursors(row, await _embedded_seq(conn, tenant, session))

    async def append_messages(self, tenant: str, session: str, messages: Sequence[Message],
                              request: str | None = None) -> AppendOutcome:
        """Store a batch in order; idempotent by id. A known id with other content, or a tool
        result that answers no call of this session, is refused and nothing is stored.

        `request` names the append (the workflow passes its update's id): run again, it finds
        its messages stored and reports how many it stored the first time, not duplicates. A
        workflow task lost after the transaction committed (the server's "workflow task not
        found", seen with concurrent updates) runs its local activity again. Content is
        checked as ever: generate(), whose turns take the workflow task's time, sends a
        re-stamped copy as the stored one (`IngestActivities._restamp`).

        One round trip whatever the batch's size: the session's lock, then one statement that
        checks the batch against what is stored and inserts it only if it passes, the cursors
        and COMMIT. A refused batch is told apart afterwards and raised as the paged checks
        would (`_append_checked` is that reference: two round trips, checks in Python first)."""
        check_not_future(messages, datetime.now(UTC))
        if len({m.id for m in messages}) != len(messages):  # a repeated id: the slow path names
            return await self._append_checked(tenant, session, messages)  # it exactly
        counter = default_counter()
        digests = [message_digest(m) for m in messages]
        columns: list[list[Any]] = [[] for _ in range(11)]
        called: set[str] = set()
        needed: list[str] = []  # tool results whose call is not earlier in this batch
        for m, dig in zip(messages, digests, strict=True):
            shown = by_reference(m)
            tokens = message_cost(counter, shown)
            full = tokens if shown is m else message_cost(counter, m)
            called.update(c.id for c in m.tool_calls)
            if m.role == "tool" and m.tool_call_id and m.tool_call_id not in called:
                needed.append(m.tool_call_id)
            for column, value in zip(columns, (
                    m.id, m.role, m.content, m.name,
                    None if m.created_at is None else utc_instant(m.created_at).isoformat(),
                    m.tool_call_id, _json([c.model_dump() for c in m.tool_calls]),
                    _json(m.metadata), dig, tokens, full), strict=True):
                column.append(value)
        calls = [(c.id, m.id) for m in messages for c in m.tool_calls]
        params = {"tenant": tenant, "session": session, "ids": columns[0],
                  "roles": columns[1], "contents": columns[2], "names": columns[3],
                  "times": columns[4], "answers": columns[5], "tool_calls": columns[6],
                  "metadata": columns[7], "digests": columns[8], "tokens": columns[9],
                  "full": columns[10], "needed": needed, "call_ids": [c for c, _ in calls],
                  "call_messages": [i for _, i in calls], "request": request,
                  "recent": RECENT_REQUESTS}
        async with self.pipelined(tenant) as (conn, _):
            await conn.execute("INSERT INTO sessions (tenant, session) VALUES (%s, %s)"
                               " ON CONFLICT DO NOTHING", (tenant, session))
            await conn.execute(LOCK_SESSION, (tenant, session))
            appended = await conn.execute(_APPEND, params)
            embedded_cur = await conn.execute(_EMBEDDED_SEQ, (tenant, session))
        row = await appended.fetchone()
        assert row is not None
        if row["erased"] is not None:
            raise SessionErasedError(tenant, session)
        if row["conflicts"]:  # rare: the stored copy is read only now, to say what differs
            index = min(row["conflicts"]) - 1
            (stored,) = await self._batch(tenant, [(_STORED, (tenant, session,
                                                               messages[index].id))])
            raise _conflict(index, messages[index], stored[0] if stored else None)
        if row["missing"]:
            missing = set(row["missing"])
            validate_sequence(messages, open_tool_calls=[c for c in needed if c not in missing])
            raise AssertionError("the store refused tool results that validate")  # unreachable
        embedded = await embedded_cur.fetchone()
        return AppendOutcome(appended=row["appended"], rerun=bool(row["rerun"]),
                             duplicates=len(messages) - row["appended"],
                             cursors=_cursors(row, None if embedded is None or
                                              embedded["s"] is None else int(embedded["s"])))

    async def _append_checked(self, tenant: str, session: str,
                              messages: Sequence[Message]) -> AppendOutcome:
        """`append_messages` with its checks in Python between two round trips: the lock and
        what the checks need, then the rows (one INSERT from arrays), the cursors and COMMIT."""
        counter = default_counter()
        ids = [m.id for m in messages]
        answered = [m.tool_call_id for m in messages if m.role == "tool" and m.tool_call_id]
        async with self.pipelined(tenant) as (conn, pipeline):
            await conn.execute("INSERT INTO sessions (tenant, session) VALUES (%s, %s)"
                               " ON CONFLICT DO NOTHING", (tenant, session))
            locked = await conn.execute(LOCK_SESSION, (tenant, session))
            known_cur = await conn.execute(
                "SELECT id, digest FROM messages WHERE tenant = %s AND session = %s"
                " AND id = ANY(%s)", (tenant, session, ids))
            calls_cur = await conn.execute(
                "SELECT call_id FROM tool_calls WHERE tenant = %s AND session = %s"
                " AND call_id = ANY(%s)", (tenant, session, answered)) if answered else None
            await pipeline.sync()
            row = await locked.fetchone()
            assert row is not None
            refuse_erased(row, tenant, session)
            known = {r["id"]: r["digest"] for r in await known_cur.fetchall()}
            digests = [message_digest(m) for m in messages]
            for index, (message, dig) in enumerate(zip(messages, digests, strict=True)):
                if message.id in known and known[message.id] not in (None, dig):
                    stored_cur = await conn.execute(_STORED, (tenant, session, message.id))
                    await pipeline.sync()
                    raise _conflict(index, message, await stored_cur.fetchone())
            open_calls = {r["call_id"] for r in await calls_cur.fetchall()} if calls_cur else set()
            validate_sequence(messages, open_tool_calls=open_calls)
            fresh = [(m, d) for m, d in zip(messages, digests, strict=True) if m.id not in known]
            window_add = total_add = 0
            columns: list[list[Any]] = [[] for _ in range(10)]
            for m, dig in fresh:
                shown = by_reference(m)
                tokens = message_cost(counter, shown)
                window_add += tokens
                total_add += tokens if shown is m else message_cost(counter, m)
                for column, value in zip(columns, (
                        m.id, m.role, m.content, m.name,
                        None if m.created_at is None else utc_instant(m.created_at).isoformat(),
                        m.tool_call_id, _json([c.model_dump() for c in m.tool_calls]),
                        _json(m.metadata), dig, tokens), strict=True):
                    column.append(value)
            if fresh:
                await conn.execute(_INSERT_MESSAGES, (tenant, session, int(row["next_seq"]),
                                                      *columns))
                calls = [(c.id, m.id) for m, _ in fresh for c in m.tool_calls]
                if calls:
                    await conn.execute(
                        "INSERT INTO tool_calls (tenant, session, call_id, message_id)"
                        " SELECT %s, %s, c, m FROM unnest(%s::text[], %s::text[]) AS u(c, m)"
                        " ON CONFLICT DO NOTHING",
                        (tenant, session, [c for c, _ in calls], [m for _, m in calls]))
            updated_cur = await conn.execute(
                "UPDATE sessions SET next_seq = next_seq + %s, window_tokens = window_tokens + %s,"
                " total_tokens = total_tokens + %s, rev = rev + 1, updated_at = now()"
                " WHERE tenant = %s AND session = %s RETURNING *",
                (len(fresh), window_add, total_add, tenant, session))
            embedded_cur = await conn.execute(_EMBEDDED_SEQ, (tenant, session))
        updated = await updated_cur.fetchone()
        assert updated is not None
        embedded = await embedded_cur.fetchone()
        return AppendOutcome(appended=len(fresh), duplicates=len(messages) - len(fresh),
                             cursors=_cursors(updated, None if embedded is None or
                                              embedded["s"] is None else int(embedded["s"])))

    async def unembedded(self, tenant: str, session: str, start: int, stop: int
                         ) -> list[tuple[str, str, datetime | None, int]]:
        """(id, content, sent at, seq) of messages in [start, stop) that have no embedding yet,
        in seq order: the embedded text carries the day it was sent
        (`memory.text.indexed_text`), and the seq says how far a partial pass got."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT id, content, created_at, seq FROM messages WHERE tenant = %s"
                " AND session = %s AND seq >= %s AND seq < %s AND embedding IS NULL"
                " ORDER BY seq", (tenant, session, start, stop))
            return [(r["id"], r["content"], r["created_at"], r["seq"])
                    for r in await cur.fetchall()]

    async def set_embeddings(self, tenant: str, session: str,
                             vectors: Sequence[tuple[str, Sequence[float]]]) -> None:
        async with self.scoped(tenant) as conn, conn.cursor() as cur:
            await cur.executemany(
                "UPDATE messages SET embedding = %s WHERE tenant = %s AND session = %s"
                " AND id = %s", [(Vector(np.asarray(v, dtype=np.float32)), tenant, session, i)
                                 for i, v in vectors])
