"""A tenant's sessions at a glance: what the CLI's and the UI's session lists show.

A mixin of `Store` (`memory.store.store`, which re-exports `SessionInfo`), apart so that
module stays about the archive's transactions and one session's messages.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from memory.store.base import StoreBase

__all__ = ["SessionInfo", "SessionListing", "Waiting"]


class SessionInfo(BaseModel):
    """A session at a glance. `first_at` and `last_at` are the conversation's own times (its
    messages' `created_at`, which a client may leave out); `appended_at` is when its newest
    message was stored, known for every session, so a stale one shows even without them."""

    model_config = ConfigDict(frozen=True)

    session: str
    messages: int
    first_at: datetime | None
    last_at: datetime | None
    appended_at: datetime


class Waiting(BaseModel):
    """A session with work its run does in the background: messages not yet embedded, and the
    window's size (which compaction brings under the policy's context window)."""

    model_config = ConfigDict(frozen=True)

    session: str
    unembedded: int
    window_tokens: int


class SessionListing(StoreBase):
    """`sessions`; mixed into `Store`, whose `scoped` binds the query to the tenant."""

    async def sessions(self, tenant: str) -> list[SessionInfo]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT session, count(*) AS messages, min(created_at) AS first_at,"
                " max(created_at) AS last_at, max(archived_at) AS appended_at"
                " FROM messages WHERE tenant = %s"
                " GROUP BY session ORDER BY session", (tenant,))
            return [SessionInfo.model_validate(row) for row in await cur.fetchall()]

    async def waiting(self, tenant: str, over_tokens: int) -> list[Waiting]:
        """A tenant's sessions (not erased) with messages not embedded, or a window of more
        than `over_tokens`: what a run left unfinished when Temporal's state was lost."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT s.session, coalesce(u.unembedded, 0) AS unembedded,"
                " s.window_tokens FROM sessions s LEFT JOIN (SELECT session, count(*) AS"
                " unembedded FROM messages WHERE tenant = %(t)s AND embedding IS NULL"
                " GROUP BY session) u ON u.session = s.session"
                " WHERE s.tenant = %(t)s AND s.erased_at IS NULL"
                " AND (u.unembedded > 0 OR s.window_tokens > %(over)s) ORDER BY s.session",
                {"t": tenant, "over": over_tokens})
            return [Waiting.model_validate(row) for row in await cur.fetchall()]
