"""A session's conversation in Postgres: cursors, appends, window versions, atomic commits.

Every write locks the session's row first, so seqs are assigned in order and a compaction's
ledger record and window version commit together against the head they were planned on.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import numpy as np
from pgvector import Vector
from psycopg import AsyncConnection, AsyncPipeline
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
from memory.store.rows import MESSAGE_COLUMNS, message_columns, row_to_message
from memory.tokens import MESSAGE_OVERHEAD, default_counter
from memory.window import RECENT_READ_FACTOR, by_reference, slice_start

__all__ = ["AppendOutcome", "CommitOutcome", "Cursors", "LoadedWindow", "SessionStore"]

TAIL_LOAD_CAP = 20_000  # a compaction plans over at most this many messages of a burst
PAGE_ROWS = 128
TAIL_SCAN_CAP = 4096  # read_window's one-statement tail reads at most this many rows

SUMMARY_CACHE_SESSIONS = 64  # sessions whose current summaries a process keeps parsed

# The bodies of the summaries a version lists, less those the caller holds already (`have`):
# a summary never changes once stored, and a merged one lists every id it covers (megabytes of
# JSON in a long session), so each body crosses the wire about once per process.
_SUMMARY_BODIES = """(SELECT coalesce(jsonb_agg(m.summary), '[]') FROM summaries m
    WHERE m.tenant = w.tenant AND m.session = w.session AND m.id = ANY(w.summary_ids)
      AND NOT m.id = ANY(%(have)s::text[]))"""

# A session's head and the window version at it (no version row at head 0).
_WINDOW_HEAD = f"""
SELECT s.next_seq, s.ledger_head, w.base_seq, w.summary_ids, {_SUMMARY_BODIES} AS bodies
FROM sessions s LEFT JOIN window_versions w
  ON w.tenant = s.tenant AND w.session = s.session AND w.version = s.ledger_head
WHERE s.tenant = %(tenant)s AND s.session = %(session)s
"""

_VERSION = f"""
SELECT w.base_seq, w.kept_ids, w.summary_ids, {_SUMMARY_BODIES} AS bodies
FROM window_versions w
WHERE w.tenant = %(tenant)s AND w.session = %(session)s AND w.version = %(version)s
"""

# The summaries a commit brings (`ids`, `bodies`) are stored once; those among them stored
# already with a body that is not byte-for-byte the same come back with it (the snapshot is
# the statement's: the rows it inserts itself are not seen, so only earlier ones can differ).
_STORE_SUMMARIES = """
WITH new AS (SELECT * FROM unnest(%(ids)s::text[], %(bodies)s::jsonb[]) AS u(id, body)),
ins AS (
    INSERT INTO summaries (tenant, session, id, summary)
    SELECT %(tenant)s, %(session)s, id, body FROM new ON CONFLICT DO NOTHING
)
SELECT n.id, m.summary AS stored FROM new n JOIN summaries m
  ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = n.id
WHERE m.summary <> n.body
"""

# A window version; it returns the summary ids it lists that no stored summary has.
_STORE_VERSION = """
INSERT INTO window_versions (tenant, session, version, base_seq, kept_ids, summary_ids, tokens)
VALUES (%(tenant)s, %(session)s, %(version)s, %(base)s, %(kept)s, %(summary_ids)s, %(tokens)s)
RETURNING (SELECT coalesce(array_agg(u.id), '{}') FROM unnest(summary_ids) AS u(id)
           WHERE NOT EXISTS (SELECT 1 FROM summaries m WHERE m.tenant = %(tenant)s
                             AND m.session = %(session)s AND m.id = u.id)) AS missing
"""

# The rows of that version a context may use: kept ids and system messages (`tail` false),
# then the newest non-system messages since the base (`tail` true), as far back as
# `slice_start` reads: each one whose newer messages hold at most `bound` window tokens. The
# scan behind the cut reads (seq, tokens) only and at most `cap` rows; `scanned` says how many.
_WINDOW_ROWS = f"""
WITH v AS (
    SELECT coalesce(w.base_seq, 0) AS base, s.next_seq, coalesce(w.kept_ids, '{{}}') AS kept
    FROM sessions s LEFT JOIN window_versions w
      ON w.tenant = s.tenant AND w.session = s.session AND w.version = s.ledger_head
    WHERE s.tenant = %(tenant)s AND s.session = %(session)s
), scan AS (
    SELECT t.seq, sum(t.tokens) OVER (ORDER BY t.seq DESC) - t.tokens AS newer,
           count(*) OVER () AS scanned
    FROM v, LATERAL (SELECT seq, tokens FROM messages
                     WHERE tenant = %(tenant)s AND session = %(session)s AND seq >= v.base
                       AND seq < v.next_seq AND role <> 'system'
                     ORDER BY seq DESC LIMIT %(cap)s) t
)
SELECT m.*, false AS tail, 0 AS scanned FROM v, LATERAL (
    SELECT {MESSAGE_COLUMNS} FROM messages
    WHERE tenant = %(tenant)s AND session = %(session)s AND id = ANY(v.kept)) m
UNION ALL
SELECT m.*, false, 0 FROM v, LATERAL (
    -- A range on seq (both ends) is what makes Postgres read the seq index from the base:
    -- with the lower end alone it guesses a third of the session and scans all of it.
    SELECT {MESSAGE_COLUMNS} FROM messages
    WHERE tenant = %(tenant)s AND session = %(session)s AND seq >= v.base
      AND seq < v.next_seq AND role = 'system' AND NOT id = ANY(v.kept)) m
UNION ALL
SELECT {message_columns("m")}, true, scan.scanned
FROM scan JOIN messages m
  ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.seq = scan.seq
WHERE scan.newer <= %(bound)s AND m.role <> 'system'
"""


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


_EMBEDDED_SEQ = ("SELECT min(seq) AS s FROM messages WHERE tenant = %s AND session = %s"
                 " AND embedding IS NULL")

# One INSERT for a whole batch, from one array per column (in the batch's order: seq follows).
_INSERT_MESSAGES = """
INSERT INTO messages (tenant, session, id, seq, role, content, name, created_at, tool_call_id,
                      tool_calls, metadata, digest, tokens)
SELECT %s, %s, u.id, %s + u.n - 1, u.role, u.content, u.name, u.created_at, u.tool_call_id,
       u.tool_calls::jsonb, u.metadata::jsonb, u.digest, u.tokens
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[],
            %s::text[], %s::text[], %s::text[], %s::int[])
     WITH ORDINALITY AS u(id, role, content, name, created_at, tool_call_id, tool_calls,
                          metadata, digest, tokens, n)
"""


# A whole append in one statement: the batch (one array per column, in order), checked against
# what is stored (a known id with another digest; a tool result whose call is neither earlier
# in the batch nor stored), and only if it passes: the new rows (seq in batch order after the
# locked session's next_seq), their tool calls, and the session's cursors. It returns the
# cursors, how many rows it stored, and what refused it (batch positions, from 1; call ids).
_APPEND = """
WITH batch AS (
    SELECT * FROM unnest(%(ids)s::text[], %(roles)s::text[], %(contents)s::text[],
                         %(names)s::text[], %(times)s::timestamptz[], %(answers)s::text[],
                         %(tool_calls)s::text[], %(metadata)s::text[], %(digests)s::text[],
                         %(tokens)s::int[], %(full)s::int[])
        WITH ORDINALITY AS u(id, role, content, name, created_at, tool_call_id, tool_calls,
                             metadata, digest, tokens, full_tokens, n)
), known AS (
    SELECT m.id, m.digest FROM messages m
    WHERE m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = ANY(%(ids)s::text[])
), conflicts AS (
    SELECT array_agg(b.n ORDER BY b.n) AS n FROM batch b JOIN known k ON k.id = b.id
    WHERE k.digest IS NOT NULL AND k.digest <> b.digest
), missing AS (
    SELECT array_agg(c) AS c FROM unnest(%(needed)s::text[]) AS c
    WHERE NOT EXISTS (SELECT 1 FROM tool_calls t WHERE t.tenant = %(tenant)s
                      AND t.session = %(session)s AND t.call_id = c)
), passed AS (
    SELECT (SELECT n FROM conflicts) IS NULL AND (SELECT c FROM missing) IS NULL AS ok
), head AS (
    SELECT next_seq FROM sessions WHERE tenant = %(tenant)s AND session = %(session)s
), fresh AS (
    SELECT b.*, row_number() OVER (ORDER BY b.n) - 1 AS k FROM batch b, passed
    WHERE passed.ok AND NOT EXISTS (SELECT 1 FROM known WHERE known.id = b.id)
), stored AS (
    INSERT INTO messages (tenant, session, id, seq, role, content, name, created_at,
                          tool_call_id, tool_calls, metadata, digest, tokens)
    SELECT %(tenant)s, %(session)s, f.id, head.next_seq + f.k, f.role, f.content, f.name,
           f.created_at, f.tool_call_id, f.tool_calls::jsonb, f.metadata::jsonb, f.digest,
           f.tokens
    FROM fresh f, head ORDER BY f.n
    RETURNING id
), calls AS (
    INSERT INTO tool_calls (tenant, session, call_id, message_id)
    SELECT %(tenant)s, %(session)s, u.c, u.m
    FROM unnest(%(call_ids)s::text[], %(call_messages)s::text[]) AS u(c, m)
    WHERE u.m IN (SELECT id FROM fresh)
    ON CONFLICT DO NOTHING
), cursors AS (
    UPDATE sessions SET next_seq = next_seq + (SELECT count(*) FROM fresh),
        window_tokens = window_tokens + (SELECT coalesce(sum(tokens), 0) FROM fresh),
        total_tokens = total_tokens + (SELECT coalesce(sum(full_tokens), 0) FROM fresh),
        rev = rev + 1, updated_at = now()
    WHERE tenant = %(tenant)s AND session = %(session)s AND (SELECT ok FROM passed)
    RETURNING *
)
SELECT c.*, (SELECT count(*) FROM stored)::int AS appended,
       (SELECT n FROM conflicts) AS conflicts, (SELECT c FROM missing) AS missing
FROM (SELECT 1) one LEFT JOIN cursors c ON true
"""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def _embedded_seq(conn: AsyncConnection[DictRow], tenant: str, session: str) -> int | None:
    cur = await conn.execute(_EMBEDDED_SEQ, (tenant, session))
    row = await cur.fetchone()
    return None if row is None or row["s"] is None else int(row["s"])


class SessionStore:
    """Mixed into `Store`, which provides `scoped` (a tenant-bound transaction)."""

    # (tenant, session) -> the summaries of the version last read, by id; least recently used
    # first. An entry is replaced, never changed, so a read can hold on to the one it sent.
    _summary_cache: OrderedDict[tuple[str, str], dict[str, Summary]]

    def scoped(self, tenant: str, snapshot: bool = False
               ) -> AbstractAsyncContextManager[AsyncConnection[DictRow]]:
        raise NotImplementedError

    def pipelined(self, tenant: str
                  ) -> AbstractAsyncContextManager[tuple[AsyncConnection[DictRow],
                                                         AsyncPipeline]]:
        raise NotImplementedError

    async def _batch(self, tenant: str, queries: Sequence[tuple[str, Any]], *,
                     snapshot: bool = False, prepare: bool | None = None
                     ) -> list[list[dict[str, Any]]]:
        raise NotImplementedError

    async def cursors(self, tenant: str, session: str) -> Cursors:
        """The session's cursors; creates its row, so a new session starts at zero."""
        async with self.scoped(tenant) as conn:
            row = await _lock_session(conn, tenant, session)
            return _cursors(row, await _embedded_seq(conn, tenant, session))

    async def append_messages(self, tenant: str, session: str,
                              messages: Sequence[Message]) -> AppendOutcome:
        """Store a batch in order; idempotent by id. A known id with other content, or a tool
        result that answers no call of this session, is refused and nothing is stored.

        One round trip whatever the batch's size: the session's lock, then one statement that
        checks the batch against what is stored and inserts it only if it passes, the cursors
        and COMMIT. A refused batch is told apart afterwards and raised as the paged checks
        would (`_append_checked` is that reference: two round trips, checks in Python first)."""
        if len({m.id for m in messages}) != len(messages):  # a repeated id: the slow path names
            return await self._append_checked(tenant, session, messages)  # it exactly
        counter = default_counter()
        digests = [message_digest(m) for m in messages]
        columns: list[list[Any]] = [[] for _ in range(11)]
        called: set[str] = set()
        needed: list[str] = []  # tool results whose call is not earlier in this batch
        for m, dig in zip(messages, digests, strict=True):
            shown = by_reference(m)
            tokens = counter.count_message(shown.role, shown.content)
            full = tokens if shown is m else counter.count_message(m.role, m.content)
            called.update(c.id for c in m.tool_calls)
            if m.role == "tool" and m.tool_call_id and m.tool_call_id not in called:
                needed.append(m.tool_call_id)
            for column, value in zip(columns, (
                    m.id, m.role, m.content, m.name,
                    None if m.created_at is None else m.created_at.isoformat(),
                    m.tool_call_id, _json([c.model_dump() for c in m.tool_calls]),
                    _json(m.metadata), dig, tokens, full), strict=True):
                column.append(value)
        calls = [(c.id, m.id) for m in messages for c in m.tool_calls]
        params = {"tenant": tenant, "session": session, "ids": columns[0],
                  "roles": columns[1], "contents": columns[2], "names": columns[3],
                  "times": columns[4], "answers": columns[5], "tool_calls": columns[6],
                  "metadata": columns[7], "digests": columns[8], "tokens": columns[9],
                  "full": columns[10], "needed": needed, "call_ids": [c for c, _ in calls],
                  "call_messages": [i for _, i in calls]}
        async with self.pipelined(tenant) as (conn, _):
            await conn.execute("INSERT INTO sessions (tenant, session) VALUES (%s, %s)"
                               " ON CONFLICT DO NOTHING", (tenant, session))
            await conn.execute("SELECT 1 FROM sessions WHERE tenant = %s AND session = %s"
                               " FOR UPDATE", (tenant, session))
            appended = await conn.execute(_APPEND, params)
            embedded_cur = await conn.execute(_EMBEDDED_SEQ, (tenant, session))
        row = await appended.fetchone()
        assert row is not None
        if row["conflicts"]:
            index = min(row["conflicts"]) - 1
            raise InvalidInputError(f"messages[{index}].id", f"{messages[index].id!r} was "
                                    "already appended with other content")
        if row["missing"]:
            missing = set(row["missing"])
            validate_sequence(messages, open_tool_calls=[c for c in needed if c not in missing])
            raise AssertionError("the store refused tool results that validate")  # unreachable
        embedded = await embedded_cur.fetchone()
        return AppendOutcome(appended=row["appended"],
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
            locked = await conn.execute("SELECT * FROM sessions WHERE tenant = %s AND session"
                                        " = %s FOR UPDATE", (tenant, session))
            known_cur = await conn.execute(
                "SELECT id, digest FROM messages WHERE tenant = %s AND session = %s"
                " AND id = ANY(%s)", (tenant, session, ids))
            calls_cur = await conn.execute(
                "SELECT call_id FROM tool_calls WHERE tenant = %s AND session = %s"
                " AND call_id = ANY(%s)", (tenant, session, answered)) if answered else None
            await pipeline.sync()
            row = await locked.fetchone()
            assert row is not None
            known = {r["id"]: r["digest"] for r in await known_cur.fetchall()}
            digests = [message_digest(m) for m in messages]
            for index, (message, dig) in enumerate(zip(messages, digests, strict=True)):
                if message.id in known and known[message.id] not in (None, dig):
                    raise InvalidInputError(f"messages[{index}].id", f"{message.id!r} was "
                                            "already appended with other content")
            open_calls = {r["call_id"] for r in await calls_cur.fetchall()} if calls_cur else set()
            validate_sequence(messages, open_tool_calls=open_calls)
            fresh = [(m, d) for m, d in zip(messages, digests, strict=True) if m.id not in known]
            window_add = total_add = 0
            columns: list[list[Any]] = [[] for _ in range(10)]
            for m, dig in fresh:
                shown = by_reference(m)
                tokens = counter.count_message(shown.role, shown.content)
                window_add += tokens
                total_add += tokens if shown is m else counter.count_message(m.role, m.content)
                for column, value in zip(columns, (
                        m.id, m.role, m.content, m.name,
                        None if m.created_at is None else m.created_at.isoformat(),
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
                         ) -> list[tuple[str, str, datetime | None]]:
        """(id, content, sent at) of messages in [start, stop) that have no embedding yet: the
        embedded text carries the day it was sent (`memory.text.indexed_text`)."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT id, content, created_at FROM messages WHERE tenant = %s AND session = %s"
                " AND seq >= %s AND seq < %s AND embedding IS NULL ORDER BY seq",
                (tenant, session, start, stop))
            return [(r["id"], r["content"], r["created_at"]) for r in await cur.fetchall()]

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
        held = self._summary_cache.get((tenant, session), {})
        cur = await conn.execute(_VERSION, {"tenant": tenant, "session": session,
                                            "version": version, "have": list(held)})
        row = await cur.fetchone()
        if row is None:
            raise LedgerConflictError(f"window version {version} of {session!r} is missing")
        return (int(row["base_seq"]), list(row["kept_ids"]),
                self._summaries(tenant, session, row, held))

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
                conn, f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = %s AND session = %s"
                      " AND id = ANY(%s)", (tenant, session, kept))
            rows += await self._rows(
                conn, f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = %s AND session = %s"
                      " AND seq >= %s ORDER BY seq LIMIT %s",
                (tenant, session, base, TAIL_LOAD_CAP))
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
        `recent_slice` can use.

        One round trip: the session's head and its version, and the rows, where the tail is cut
        in SQL by the stored window tokens at the bound `slice_start` reads to. If that is not
        enough (a tool result whose call is older than the bound, or more rows than the scan
        cap), the tail is read again page by page, newest first."""
        bound = RECENT_READ_FACTOR * max_tokens
        cap = min(TAIL_SCAN_CAP, bound // MESSAGE_OVERHEAD + 1)  # every message has ≥ 4 tokens
        held = self._summary_cache.get((tenant, session), {})
        params = {"tenant": tenant, "session": session, "bound": bound, "cap": cap,
                  "have": list(held)}
        heads, rows = await self._batch(tenant, [(_WINDOW_HEAD, params),
                                                 (_WINDOW_ROWS, params)], snapshot=True)
        if not heads:
            return LoadedWindow(version=0, state=WindowState(), next_base=0, order={})
        head = heads[0]
        if int(head["ledger_head"]) > 0 and head["base_seq"] is None:
            raise LedgerConflictError(f"window version {head['ledger_head']} of {session!r} is "
                                      "missing")
        summaries = () if head["base_seq"] is None else self._summaries(tenant, session,
                                                                        head, held)
        fixed = [r for r in rows if not r["tail"]]
        tail = sorted((r for r in rows if r["tail"]), key=lambda r: r["seq"])
        scanned = int(tail[0]["scanned"]) if tail else 0
        complete = scanned < cap and len(tail) == scanned
        shown = {r["id"]: by_reference(row_to_message(r)) for r in [*fixed, *tail]}
        if not complete and not self._enough(fixed, tail, max_tokens, shown):
            return await self._read_window_paged(tenant, session, max_tokens)
        rows = sorted(fixed + tail, key=lambda r: r["seq"])
        # Built without validation: pydantic would check every stored message and every id
        # each summary covers again (0.1 s at 100k messages), and all of it was checked before
        # it was stored.
        return LoadedWindow.model_construct(
            version=int(head["ledger_head"]), next_base=int(head["base_seq"] or 0),
            complete=complete, turn=int(head["next_seq"]),
            state=WindowState.model_construct(summaries=summaries,
                                              messages=tuple(shown[r["id"]] for r in rows)),
            order={r["id"]: int(r["seq"]) for r in rows})

    def _summaries(self, tenant: str, session: str, row: dict[str, Any],
                   held: dict[str, Summary]) -> tuple[Summary, ...]:
        """The summaries a version row lists (`summary_ids`, in window order): the bodies it
        brought, parsed, and the rest from `held`, the cache entry its query was sent with."""
        fresh: dict[str, Summary] = {}
        for body in row["bodies"]:
            # Stored rows were validated when they were committed: the ids each covers (all of
            # the archive, in a long session) are not checked one by one again.
            summary = Summary.model_validate({**body, "covers": ()}).model_copy(
                update={"covers": tuple(body["covers"])})
            fresh[summary.id] = summary
        version = {**held, **fresh}
        missing = [i for i in row["summary_ids"] if i not in version]
        if missing:
            raise LedgerConflictError(f"summary {missing[0]!r} of {session!r} is missing")
        summaries = tuple(version[i] for i in row["summary_ids"])
        key = (tenant, session)
        self._summary_cache[key] = {s.id: s for s in summaries}
        self._summary_cache.move_to_end(key)
        while len(self._summary_cache) > SUMMARY_CACHE_SESSIONS:
            self._summary_cache.popitem(last=False)
        return summaries

    async def _read_window_paged(self, tenant: str, session: str, max_tokens: int
                                 ) -> LoadedWindow:
        """`read_window` the long way: the tail page by page, newest first, in one snapshot."""
        async with self.scoped(tenant, snapshot=True) as conn:
            cur = await conn.execute("SELECT * FROM sessions WHERE tenant = %s AND session = %s",
                                     (tenant, session))
            row = await cur.fetchone()
            if row is None:
                return LoadedWindow(version=0, state=WindowState(), next_base=0, order={})
            head, turn = int(row["ledger_head"]), int(row["next_seq"])
            base, kept, summaries = await self._version(conn, tenant, session, head)
            fixed = await self._rows(
                conn, f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = %s AND session = %s"
                      " AND (id = ANY(%s) OR (seq >= %s AND role = 'system'))",
                (tenant, session, kept, base))
            tail: list[dict[str, Any]] = []
            shown = {r["id"]: by_reference(row_to_message(r)) for r in fixed}
            limit, complete = PAGE_ROWS, False
            while True:
                before = tail[0]["seq"] if tail else turn
                page = await self._rows(
                    conn, f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = %s AND"
                          " session = %s AND seq >= %s AND seq < %s AND role <> 'system'"
                          " ORDER BY seq DESC LIMIT %s", (tenant, session, base, before, limit))
                tail = sorted(page, key=lambda r: r["seq"]) + tail
                shown.update((r["id"], by_reference(row_to_message(r))) for r in page)
                complete = len(page) < limit
                if complete or self._enough(fixed, tail, max_tokens, shown):
                    break
                limit *= 2
        rows = sorted(fixed + tail, key=lambda r: r["seq"])
        return LoadedWindow(
            version=head, next_base=base, complete=complete, turn=turn,
            state=WindowState(summaries=summaries,
                              messages=tuple(shown[r["id"]] for r in rows)),
            order={r["id"]: int(r["seq"]) for r in rows})

    @staticmethod
    def _enough(fixed: list[dict[str, Any]], tail: list[dict[str, Any]], max_tokens: int,
                shown: dict[str, Message]) -> bool:
        """Whether the tail read so far already holds the whole of `recent_slice`; `shown`
        holds each row as the window holds it."""
        kept = [shown[r["id"]] for r in fixed if r["role"] != "system"]
        read = [shown[r["id"]] for r in tail]
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
                await self._store_summaries(conn, tenant, session, record)
                cur = await conn.execute(_STORE_VERSION, {
                    "tenant": tenant, "session": session, "version": record.seq + 1,
                    "base": next_base, "kept": [m.id for m in state.messages],
                    "summary_ids": [s.id for s in state.summaries],
                    "tokens": window_tokens(state)})
                stored_version = await cur.fetchone()
                assert stored_version is not None
                if stored_version["missing"]:
                    raise LedgerConflictError(f"{record.id}: the window it produces lists "
                                              f"summary {stored_version['missing'][0]!r}, "
                                              "which no record brings")
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

    @staticmethod
    async def _store_summaries(conn: AsyncConnection[DictRow], tenant: str, session: str,
                               record: CompactionRecord) -> None:
        """Store the summaries `record` brings, once each: a summary id names one body for
        good, so the same id with another body (a forged import) is refused."""
        brought: dict[str, Summary] = {}
        for summary in (record.summary, record.merged_summary, *record.restored_summaries):
            if summary is None:
                continue
            if brought.setdefault(summary.id, summary) != summary:
                raise InvalidInputError("summary.id", f"{record.id}: two summaries are named "
                                                      f"{summary.id!r}")
        if not brought:
            return
        cur = await conn.execute(_STORE_SUMMARIES, {
            "tenant": tenant, "session": session, "ids": list(brought),
            "bodies": [Jsonb(s.model_dump(mode="json")) for s in brought.values()]})
        for row in await cur.fetchall():
            # A body stored before a field was added to Summary lacks it: compared as models,
            # it is the same summary (an undo putting back one stored before an upgrade).
            if Summary.model_validate(row["stored"]) != brought[row["id"]]:
                raise InvalidInputError("summary.id", f"{record.id}: summary {row['id']!r} is "
                                                      "already stored with other content")

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
