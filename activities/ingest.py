"""The append path's activities: store a batch, then index and embed it in the background.

They need only the store and the embedding model, so they live apart from the engine's
(`activities.conversation`), which builds on this class.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
from temporalio import activity

from activities import metrics, specs
from activities.providers.embedders import Embedder
from activities.running import heartbeating, misconfigured, refused
from activities.types import AppendResult, EmbedInput, EmbedResult, SessionRef, StoreMessagesInput
from memory.errors import InvalidInputError
from memory.models import Cursors, Message
from memory.store.appends import AppendOutcome
from memory.store.store import Store
from memory.text import indexed_text

__all__ = ["EMBED_BATCH", "EMBED_SECONDS", "INDEX_ROUNDS", "IngestActivities"]

EMBED_BATCH = 64
# Statements of at most 2,000 messages, ending after the one whose text vectors pass 1 MB
# (memory/store/indexing.py): ~0.7 s apiece at load 5.
INDEX_ROUNDS = 8
EMBED_SECONDS = 4.0  # one embedding pass stops at the first batch boundary past this


class IngestActivities:
    """Appending and indexing; `ConversationActivities` sets `store` and `embedder`."""

    store: Store
    embedder: Embedder

    @activity.defn(name=specs.OPEN_SESSION.name)
    async def open_session(self, input: SessionRef) -> Cursors:
        try:
            return await self.store.cursors(input.tenant, input.session)
        except InvalidInputError as exc:  # an erased session: refused for good, not retried
            raise refused(exc) from None

    @activity.defn(name=specs.STORE_MESSAGES.name)
    async def store_messages(self, input: StoreMessagesInput) -> AppendResult:
        try:
            return await self._store_messages(input)
        except psycopg.Error as exc:
            if (fatal := misconfigured(exc)) is not None:
                raise fatal from None
            raise

    async def _store_messages(self, input: StoreMessagesInput) -> AppendResult:
        if not input.restamped:
            try:
                out = await self.store.append_messages(input.tenant, input.session,
                                                       input.messages, input.request)
            except InvalidInputError as exc:
                raise refused(exc) from None
        else:  # generate()'s one turn: its caller passed `id`, so errors name `id`, not a list
            try:
                out = await self._append_restamped(input)
            except InvalidInputError as exc:
                raise refused(InvalidInputError(exc.field.removeprefix("messages[0]."),
                                                exc.problem)) from None
        if not out.rerun:  # a rerun reports what its first run stored, which counted it
            metrics.messages_stored(out.appended, out.duplicates)
        return AppendResult(appended=out.appended, duplicates=out.duplicates,
                            total=out.cursors.next_seq, cursors=out.cursors)

    async def _append_restamped(self, input: StoreMessagesInput) -> AppendOutcome:
        """An overlapping call with the same id may store its copy between the read in
        `_restamp` and the append: on a conflict, read once more, and refuse only if nothing
        changed."""
        messages = await self._restamp(input)
        try:
            return await self.store.append_messages(input.tenant, input.session, messages,
                                                    input.request)
        except InvalidInputError:
            again = await self._restamp(input)
            if again == messages:
                raise
            return await self.store.append_messages(input.tenant, input.session, again,
                                                    input.request)

    async def _restamp(self, input: StoreMessagesInput) -> tuple[Message, ...]:
        """A retried generate() stamps its turn anew: where the stored copy differs only in
        `created_at`, keep the stored copy, so the retry is a duplicate and not a conflict."""
        stored = {m.id: m for m in await self.store.get_messages(
            input.tenant, input.session, [m.id for m in input.messages])}
        return tuple(stored[m.id] if m.id in stored and stored[m.id].model_copy(
            update={"created_at": m.created_at}) == m else m for m in input.messages)

    async def _index(self, input: EmbedInput, deadline: float) -> None:
        """Index what is stored, a statement at a time with a heartbeat after each: at least
        one statement, then more until caught up, INDEX_ROUNDS, or the activity's deadline.
        Unbounded, a burst that appends faster than one statement indexes kept this loop from
        ever returning: the activity missed its heartbeats and was retried from the start,
        nothing was embedded, and the workflow, waiting for this activity before continuing
        as new, ran into Temporal's history size limit (the 1M bench at 280,000 messages)."""
        for _ in range(INDEX_ROUNDS):
            _, more = await self.store.index_terms_once(input.tenant, input.session)
            activity.heartbeat()
            if not more or time.monotonic() >= deadline:
                return

    @activity.defn(name=specs.EMBED.name)
    async def embed_messages(self, input: EmbedInput) -> EmbedResult:
        """Embed what is stored in [start, stop) and not embedded yet (idempotent), for about
        EMBED_SECONDS, and say how far it got (`reached`); the workflow starts the next pass
        from there.

        The bound is on the whole activity, because a run due to continue as new waits for
        the pass in flight while appends keep adding to its history: unbounded, a pass of
        512 messages took 20 s to minutes under a 1,000 msgs/s burst (the 1M bench), and one
        run's history reached 39.5 MB of Temporal's 50 MB. Each pass embeds at least one
        batch, so a burst that keeps the indexing busy never starves the embedding.

        The workflow starts this after every append, so it also keeps the inverted index up
        to date (`memory.store.indexing`): what is stored is indexed before each batch is
        embedded (a few milliseconds, where an embedding batch takes a second), a bounded
        number of statements at a time after a burst (`_index`)."""
        deadline = time.monotonic() + EMBED_SECONDS
        await self._index(input, deadline)
        todo = await self.store.unembedded(input.tenant, input.session, input.start, input.stop)
        storing: asyncio.Future[None] | None = None  # the previous batch's vectors going in
        storing_count = 0  # how many messages that batch holds
        stored = 0

        async def stored_so_far() -> int:
            nonlocal storing
            if storing is not None:  # awaited once: its error, if any, is raised here only
                pending, storing = storing, None
                await pending
                metrics.messages_embedded(storing_count)  # counted once stored, batch by batch
                activity.heartbeat(stored)
            return stored

        try:
            for at in range(0, len(todo), EMBED_BATCH):
                if at:
                    if time.monotonic() >= deadline:
                        return EmbedResult(embedded=await stored_so_far(),
                                           reached=todo[at][3])
                    await self._index(input, deadline)
                batch = todo[at : at + EMBED_BATCH]
                # The day each was sent goes into its embedded text, as into its lexical index
                # (migration 9), through the one helper `memory.text.indexed_text`.
                vectors = await heartbeating(self.embedder.embed(
                    [indexed_text(text, sent) for _, text, sent, _ in batch]))
                await stored_so_far()
                # Stored while the next batch is embedded: Postgres spends ~1.8 ms a row on
                # the HNSW insert, on its own core, which idled while the worker waited for it.
                storing = asyncio.ensure_future(self.store.set_embeddings(
                    input.tenant, input.session,
                    [(row[0], vector) for row, vector in zip(batch, vectors, strict=True)]))
                stored, storing_count = at + len(batch), len(batch)
            return EmbedResult(embedded=await stored_so_far(), reached=input.stop)
        except asyncio.CancelledError:
            if storing is not None:
                storing.cancel()
                await asyncio.gather(storing, return_exceptions=True)
            raise
        except BaseException:
            if storing is not None:  # a batch being stored is kept, and its error not lost
                (outcome,) = await asyncio.gather(storing, return_exceptions=True)
                if isinstance(outcome, BaseException):
                    activity.logger.warning(f"storing embeddings failed too: {outcome!r}")
                else:
                    metrics.messages_embedded(storing_count)
            raise
