"""Reading a session's window version from Postgres: in full for compaction, or what one
context() may draw on, from one snapshot."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from pydantic import BaseModel, ConfigDict

from memory.compaction import WindowState
from memory.errors import LedgerConflictError
from memory.messages import ARCHIVE
from memory.models import (
    Message,
    Summary,
)
from memory.store.base import StoreBase, _lock_session
from memory.store.rows import MESSAGE_COLUMNS, message_columns, row_to_message
from memory.tokens import MESSAGE_OVERHEAD
from memory.window import RECENT_READ_FACTOR, by_reference, slice_start

__all__ = ["PAGE_ROWS", "SUMMARY_CACHE_SESSIONS", "TAIL_LOAD_CAP", "TAIL_SCAN_CAP", "LoadedWindow",
           "WindowReads"]

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
UNION ALL
-- The tail's newest user message, wherever it lies (assembly version 16 starts a slice of an
-- agent's steps with it): read here, not by paging through every step after it.
SELECT m.*, false, 0 FROM v, LATERAL (
    SELECT {MESSAGE_COLUMNS} FROM messages
    WHERE tenant = %(tenant)s AND session = %(session)s AND seq >= v.base
      AND seq < v.next_seq AND role = 'user' AND NOT id = ANY(v.kept)
    ORDER BY seq DESC LIMIT 1) m
"""
_ASKED = f"""SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = %s AND session = %s
    AND seq >= %s AND seq < %s AND role = 'user' ORDER BY seq DESC LIMIT 1"""

def _unread(fixed: list[dict[str, Any]], tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`fixed` without the rows the tail read holds: the tail's newest user message, read
    with the fixed rows (version 16), may be among the newest rows too."""
    read = {r["id"] for r in tail}
    return [r for r in fixed if r["id"] not in read]


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


class WindowReads(StoreBase):
    """The read paths of window versions; mixed into `SessionStore`."""

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
        tail = sorted((r for r in rows if r["tail"]), key=lambda r: r["seq"])
        fixed = _unread([r for r in rows if not r["tail"]], tail)
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
            summary = Summary.model_validate({**body, "covers": ()}, context=ARCHIVE).model_copy(
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
            fixed += [r for r in await self._rows(conn, _ASKED, (tenant, session, base, turn))
                      if r["id"] not in kept]  # the tail's newest user message (version 16)
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
        rows = sorted(_unread(fixed, tail) + tail, key=lambda r: r["seq"])
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
        kept = [shown[r["id"]] for r in _unread(fixed, tail) if r["role"] != "system"]
        read = [shown[r["id"]] for r in tail]
        start = slice_start([*kept, *read], max_tokens)
        if start <= len(kept):  # the slice reaches past what was read of the tail
            return False
        ids = {c.id for m in read for c in m.tool_calls}
        # Version 16's user message before an agent's steps is among `fixed` (the tail's
        # newest user message is always read), so it needs no more of the tail.
        return all(m.tool_call_id in ids for m in read[start - len(kept):] if m.role == "tool")
