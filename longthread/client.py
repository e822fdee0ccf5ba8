"""The public async client: `Longthread.connect()`, and `conversation()` for a session's
`Conversation` (longthread/conversation.py).

A `Longthread` holds what every session shares: the Temporal client (for writes), the store
and its pool (for reads), and the query embedder, checked against the archive's vectors.
"""

from __future__ import annotations

import asyncio
import atexit
import re
import time
from types import TracebackType
from typing import TYPE_CHECKING

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from activities.providers.embedders import Embedder
from longthread.codec import data_converter
from longthread.conversation import Conversation
from longthread.replies import CompactAttempt, described
from longthread.settings import Settings, data_dir_problem, resolve_settings
from memory.checks import (
    MAX_RETRIEVE,
    check_new_id,
    check_range,
    check_search,
    check_text,
)
from memory.errors import InvalidInputError
from memory.models import ScoredMessage
from memory.policy import CompactionPolicy
from memory.store.db import checkout, open_archive
from memory.store.migrations import (
    MIGRATIONS,
    check_embedder,
    check_embedding_dim,
    stored_embedder,
    stored_embedding_dim,
    stored_schema_version,
)
from memory.store.schema_check import check_client_schema
from memory.store.store import Store
from workflows.types import SESSION_PATTERN, TENANT_PATTERN

if TYPE_CHECKING:
    from longthread.erasure import Erasure

# Conversation and CompactAttempt are part of the client's public API; they live in their
# own modules only to keep each file to one responsibility.
__all__ = ["NO_ARCHIVE", "CompactAttempt", "Conversation", "Longthread", "check_ids"]

NO_ARCHIVE = ("no archive database: set LONGTHREAD_DATABASE_URL, run `longthread dev` in this "
              "directory, or point LONGTHREAD_DATA_DIR at the data dir of one running elsewhere")


def check_ids(tenant: str, session: str, *, opening: bool = False) -> tuple[str, str]:
    """`opening` (a session being started) also refuses the invisible characters and
    decomposed (non-NFC) forms `memory.checks.check_new_id` names; attaching to, reading,
    listing and erasing take any id a session may have been started with before that rule."""
    for field, value, pattern, most in (("tenant", tenant, TENANT_PATTERN, 100),
                                        ("session", session, SESSION_PATTERN, 200)):
        check_text(field, value)  # a lone surrogate: refused by name, not an encoding error
        if not re.match(pattern, value):
            raise InvalidInputError(field, f"must be 1-{most} visible characters (no spaces)")
        if opening:
            check_new_id(field, value)
    return tenant, session


# A pause, not a guarantee: a user's script that connected, appended and settled aborted in 35
# of 150 runs without it and in 0 of 60 with it; 1 ms still failed once in 40 under load.
_EXIT_GRACE_SECONDS = 0.02
_exit_grace_registered = False


def _exit_grace() -> None:
    """Release the GIL for a moment before the interpreter finalizes. The Temporal bridge
    resolves each call's future from a Tokio thread that must take the GIL once more after the
    event loop has the result; when the script ends within a few milliseconds of its last call,
    that thread still waits for it as finalization begins and aborts the process
    (exit 134, `PyGILState_Release`, temporalio/sdk-python#300). Atexit handlers run before
    finalization starts, and the sleep lets that thread finish."""
    time.sleep(_EXIT_GRACE_SECONDS)


class Longthread:
    """A connection to Temporal (for writes) and to the store (for reads). Close it, or use it
    as `async with`, so the database pool shuts down before the event loop does."""

    def __init__(self, client: Client, settings: Settings,
                 policy: CompactionPolicy | None = None, store: Store | None = None,
                 embedder: Embedder | None = None) -> None:
        self.client = client
        self.settings = settings
        self.task_queue = settings.task_queue
        self.policy = policy or CompactionPolicy(context_window=settings.context_window,
                                                 preserve_recent=settings.preserve_recent)
        self._store = store
        self._own_pool: AsyncConnectionPool[AsyncConnection[DictRow]] | None = None
        self._archive_dim: int | None = None  # read when this client opens the archive
        self._archive_model: str | None = None
        self._archive_read = False
        self._opening: asyncio.Future[Store] | None = None  # `store()`'s opening in flight
        self._embedder = embedder

    @classmethod
    async def connect(cls, settings: Settings | None = None,
                      policy: CompactionPolicy | None = None) -> Longthread:
        settings = resolve_settings(settings)
        if (problem := data_dir_problem(settings)) is not None:
            raise ConnectionError(problem)
        key = settings.payload_key.get_secret_value() if settings.payload_key else None
        try:
            client = await Client.connect(settings.temporal_address,
                                          namespace=settings.temporal_namespace,
                                          data_converter=data_converter(key))
        except RuntimeError as exc:
            raise ConnectionError(
                f"no running stack at {settings.temporal_address}: start one with "
                "`longthread dev`, or point LONGTHREAD_DATA_DIR at the data dir of one running "
                "elsewhere (or set LONGTHREAD_TEMPORAL_ADDRESS)") from exc
        global _exit_grace_registered
        if not _exit_grace_registered:
            atexit.register(_exit_grace)
            _exit_grace_registered = True
        return cls(client, settings, policy)

    async def store(self) -> Store:
        """The store, its pool opened on first use, once: calls that arrive while it opens
        wait for that one opening and share its result or its failure (an application that
        fanned out 40 first `context()` calls opened 39 pools; 300 filled Postgres). A failed
        opening is tried again by the next call, not by each waiter in turn."""
        if self._store is not None and self._archive_read:
            return self._store
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open_store())
            self._opening.add_done_callback(self._opened)
        opening = self._opening
        try:
            # shielded: one waiter's cancellation must not cancel the others' opening
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if opening.cancelled() and task is not None and not task.cancelling():
                # close() stopped it: this caller was not cancelled, so it must not look so
                raise ConnectionError("the client was closed while it opened the archive") \
                    from None
            raise

    def _opened(self, opening: asyncio.Future[Store]) -> None:
        """Forget a failed or cancelled opening, so the next call tries again, even when no
        caller waits for it any more (one that timed out, say); reading its error here also
        keeps asyncio from logging it as never retrieved."""
        if (opening.cancelled() or opening.exception() is not None) \
                and self._opening is opening:
            self._opening = None

    async def _open_store(self) -> Store:
        if self._store is None:
            if not self.settings.database_url:
                raise ConnectionError(NO_ARCHIVE)
            self._own_pool = await open_archive(self.settings.database_url,
                                                max_size=self.settings.database_pool_size)
            self._store = Store(self._own_pool)
        if not self._archive_read:  # also for a store passed in (the CLI's): `embedder()`
            # checks these before the first query is embedded
            async with checkout(self._store.pool) as conn:
                check_client_schema(await stored_schema_version(conn), len(MIGRATIONS))
                self._archive_dim = await stored_embedding_dim(conn)
                self._archive_model = await stored_embedder(conn)
            self._archive_read = True
        return self._store

    def embedder(self) -> Embedder:
        """The query embedder, loaded in this process on first use (it must be the model the
        worker indexes with, so both come from the same settings)."""
        if self._embedder is None:
            from activities.providers.choose import choose_embedder

            s = self.settings
            # Else pgvector's own error, naming no setting, on the first query; the worker and
            # `health` refuse by the same rules.
            check_embedding_dim(self._archive_dim, s.dimensions)
            check_embedder(self._archive_model, s.embedding_model)
            key = s.openai_api_key.get_secret_value() if s.openai_api_key else None
            self._embedder = choose_embedder(s.embedder, s.dimensions, key,
                                             s.openai_embedding_model, s.openai_base_url)
        return self._embedder

    async def conversation(self, session: str, tenant: str = "default", *,
                           create: bool = True) -> Conversation:
        """Start the session's workflow, or attach to it if it is already running.

        `create=False` attaches only to a session that exists (its workflow runs, or the
        archive holds its messages) and raises NotFoundError otherwise: a mistyped ticket id
        would else start an empty session, and an agent answer from an empty context."""
        check_ids(tenant, session)
        conv = Conversation(self, session, tenant)
        refused: InvalidInputError | None = None
        try:
            check_ids(tenant, session, opening=True)
        except InvalidInputError as exc:
            refused = exc
        # An id the rules for new ids refuse (invisible characters, not NFC) still reaches a
        # session started with it before those rules; it starts no new one.
        if (not create or refused) and not await self._exists(conv):
            raise refused or await (await self.store()).missing(tenant, session)
        await conv.attach()
        return conv

    async def _exists(self, conv: Conversation) -> bool:
        """A run of its workflow is known, or (none: idle-closed long ago) its messages are."""
        return (await described(conv.handle) is not None
                or bool(await (await self.store()).count(conv.tenant, conv.session)))

    async def search(self, query: str, tenant: str = "default",
                     k: int = 20) -> list[ScoredMessage]:
        """The `k` messages of any of the tenant's sessions that best match `query`, best
        first, each naming its `session` and `seq` ("which tickets mention A-58213?"). Lexical
        (BM25): exact things, an order number or an email, are what one asks across sessions;
        `conversation(...).search` is one session's hybrid search."""
        check_ids(tenant, "x")
        query = check_search("query", query)
        check_range("k", k, 1, MAX_RETRIEVE)
        return await (await self.store()).search_tenant(tenant, query, k)

    async def erase(self, session: str, tenant: str = "default", *,
                    admin_url: str | None = None) -> Erasure:
        """Erase a session for good (a customer's request): every row the archive holds for
        it, then every run of its workflow in Temporal. Its id refuses all writes after.
        The app's least-privilege login may delete nothing: pass an admin's `admin_url`
        unless the settings' database URL is one (the embedded `longthread dev` stack's is)."""
        from longthread.erasure import erase  # the Temporal delete API: loaded when used

        check_ids(tenant, session)
        url = admin_url or self.settings.database_url
        if not url:
            raise ConnectionError(NO_ARCHIVE)
        return await erase(self.client, url, tenant, session)

    async def close(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()  # else it would open a pool after this close
            await asyncio.wait([self._opening])  # until it has stopped; raises nothing
        self._opening = None
        if self._own_pool is not None:
            await self._own_pool.close()
            self._own_pool = None
            self._store = None

    async def __aenter__(self) -> Longthread:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
