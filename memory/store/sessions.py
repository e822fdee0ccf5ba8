"""A session's conversation in Postgres: cursors, appends, window versions, atomic commits.

Every write locks the session's row first, so seqs are assigned in order and a compaction's
ledger record and window version commit together against the head they were planned on.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from memory.compaction import WindowState, window_tokens
from memory.errors import InvalidInputError, LedgerConflictError, SessionErasedError
from memory.messages import ARCHIVE
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    Cursors,
    Summary,
)
from memory.store.appends import AppendOutcome, AppendStore
from memory.store.base import NOT_ERASED, _cursors, _embedded_seq, _lock_session
from memory.store.windows import PAGE_ROWS, TAIL_LOAD_CAP, LoadedWindow, WindowReads

# Split by concern (appends.py, windows.py, base.py); the names callers import stay here.
__all__ = ["PAGE_ROWS", "TAIL_LOAD_CAP", "AppendOutcome", "CommitOutcome", "Cursors",
           "LoadedWindow", "SessionStore"]

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

_ADD_EVENT = f"""
INSERT INTO compaction_events (tenant, session, event)
SELECT %(tenant)s, %(session)s, %(event)s WHERE {NOT_ERASED}
"""


class CommitOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    records: tuple[CompactionRecord, ...]
    cursors: Cursors
    already: bool = False  # a retry: the records were committed by an earlier attempt


class SessionStore(AppendStore, WindowReads):
    """A session's conversation: appends (`AppendStore`), window reads (`WindowReads`), and
    here the atomic commits of ledger records with their window versions, and the events."""

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
            if Summary.model_validate(row["stored"], context=ARCHIVE) != brought[row["id"]]:
                raise InvalidInputError("summary.id", f"{record.id}: summary {row['id']!r} is "
                                                      "already stored with other content")

    async def _ledger_from(self, conn: AsyncConnection[DictRow], tenant: str, session: str,
                           start: int, count: int) -> list[CompactionRecord]:
        rows = await self._rows(
            conn, "SELECT record FROM ledger WHERE tenant = %s AND session = %s AND seq >= %s"
                  " ORDER BY seq LIMIT %s", (tenant, session, start, count))
        return [CompactionRecord.model_validate(r["record"], context=ARCHIVE) for r in rows]

    async def ledger_length(self, tenant: str, session: str) -> int:
        """How many records the session's ledger holds (0 for no session), without locking
        or creating the session's row as `cursors()` does for writers. The head moves in the
        transaction that commits its records, and the ledger is append-only, so records 0 to
        the head's minus one are all there, now and later: a page read after it is whole."""
        async with self.scoped(tenant) as conn:
            rows = await self._rows(conn, "SELECT ledger_head FROM sessions WHERE tenant = %s"
                                          " AND session = %s", (tenant, session))
        return int(rows[0]["ledger_head"]) if rows else 0

    async def add_event(self, tenant: str, session: str, event: CompactionEvent) -> None:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(_ADD_EVENT, {"tenant": tenant, "session": session,
                                                  "event": Jsonb(event.model_dump(mode="json"))})
            if cur.rowcount == 0:
                raise SessionErasedError(tenant, session)

    async def events(self, tenant: str, session: str, limit: int = 200
                     ) -> list[CompactionEvent]:
        async with self.scoped(tenant) as conn:
            rows = await self._rows(
                conn, "SELECT event FROM (SELECT id, event FROM compaction_events WHERE tenant = %s"
                      " AND session = %s ORDER BY id DESC LIMIT %s) e ORDER BY id",
                (tenant, session, limit))
        return [CompactionEvent.model_validate(r["event"]) for r in rows]
