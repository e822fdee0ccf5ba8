"""The conversation's activities: thin wrappers over the store and the providers.

Dependencies come in through the constructor, so tests build the class with real parts and
the worker builds it once per process (the embedding model loads once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers.embedders import Embedder
from activities.providers.llm import AsyncSummarizer, ChatModel, LocalExtractive
from activities.types import (
    ArchiveInput,
    ArchiveResult,
    ChatInput,
    ChatResult,
    CheckpointInput,
    LoadCheckpointInput,
    LoadCheckpointResult,
    LoadMessagesInput,
    LoadMessagesResult,
    RecordCompactionInput,
    RecordServedInput,
    RetrieveInput,
    RetrieveResult,
    SummarizeInput,
    SummarizeResult,
)
from memory.errors import LedgerConflictError
from memory.models import CompactionRecord
from memory.store.store import Store

__all__ = ["ConversationActivities", "NoChatModelError"]

EMBED_BATCH = 64
HEARTBEAT_EVERY = 5.0  # seconds; the workflow's heartbeat timeouts are a few times this

T = TypeVar("T")


async def heartbeating(work: Awaitable[T]) -> T:
    """Await slow work (a provider call) while heartbeating, so that if this worker dies the
    activity is retried elsewhere after the heartbeat timeout, not the whole start-to-close."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
        if done:
            return task.result()
        activity.heartbeat()


class NoChatModelError(Exception):
    pass


class ConversationActivities:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        summarizer: AsyncSummarizer | None = None,
        chat: ChatModel | None = None,
        max_summarizer_failures: int = 3,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.summarizer = summarizer or LocalExtractive()
        self.extractive = LocalExtractive()
        self.chat = chat
        self.max_summarizer_failures = max_summarizer_failures

    @activity.defn
    async def archive_messages(self, input: ArchiveInput) -> ArchiveResult:
        """Embed and insert in batches; ids already archived are skipped (idempotent)."""
        pending_ids = await self.store.missing_ids(
            input.tenant, input.session, [m.message.id for m in input.messages])
        pending = [m for m in input.messages if m.message.id in set(pending_ids)]
        inserted = 0
        for start in range(0, len(pending), EMBED_BATCH):
            batch = pending[start : start + EMBED_BATCH]
            vectors = await heartbeating(self.embedder.embed([m.message.content for m in batch]))
            inserted += await self.store.archive(
                input.tenant, input.session, [(m.seq, m.message) for m in batch], vectors)
            activity.heartbeat(start + len(batch))
        return ArchiveResult(inserted=inserted,
                             already_archived=len(input.messages) - inserted)

    @activity.defn
    async def summarize_span(self, input: SummarizeInput) -> SummarizeResult:
        """Summarize archived originals; fall back to extractive rather than lose the span."""
        messages = await self.store.get_messages(input.tenant, input.session, input.ids)
        if len(messages) != len(input.ids):
            raise ApplicationError(
                f"{len(input.ids) - len(messages)} of the span's messages are not archived yet",
                type="NotArchived")
        attempt = activity.info().attempt
        fallback: str | None = None
        if self.summarizer.name != "extractive":
            if attempt <= self.max_summarizer_failures:
                try:
                    result = await heartbeating(self.summarizer.summarize(
                        messages, input.max_tokens, input.focus))
                    return SummarizeResult(**result.model_dump())
                except ApplicationError as exc:
                    if not exc.non_retryable:
                        raise
                    fallback = f"extractive: {self.summarizer.name} rejected ({exc.message})"
            else:
                fallback = (f"extractive: {self.summarizer.name} failed "
                            f"{attempt - 1} times")
            activity.logger.warning("summarizer fell back: %s", fallback)
        result = await heartbeating(
            self.extractive.summarize(messages, input.max_tokens, input.focus))
        return SummarizeResult(**result.model_dump(), fallback=fallback)

    @activity.defn
    async def retrieve_context(self, input: RetrieveInput) -> RetrieveResult:
        (vector,) = await self.embedder.embed([input.query])
        hits = await self.store.search(input.tenant, input.session, input.query, vector,
                                       input.k, neighbours=input.neighbours,
                                       since=input.since, until=input.until)
        return RetrieveResult(candidates=tuple(hits))

    @activity.defn
    async def record_compaction(self, input: RecordCompactionInput) -> bool:
        return await self.store.append_ledger(input.tenant, input.session, input.record)

    @activity.defn
    async def record_compaction_stored(self, input: RecordCompactionInput) -> CompactionRecord:
        """Append the record and return it as stored, for the workflow to adopt: its ledger
        then matches the store even if the record was first written from a workflow task
        whose clock readings the replayed history does not reproduce."""
        try:
            return await self.store.append_ledger_stored(input.tenant, input.session,
                                                         input.record)
        except LedgerConflictError as exc:
            raise ApplicationError(str(exc), type="LedgerConflictError",
                                   non_retryable=True) from None

    @activity.defn
    async def record_served(self, input: RecordServedInput) -> int:
        return await self.store.record_served(input.tenant, input.session, [
            (s.seq, s.turn, s.model_dump_json()) for s in input.records])

    @activity.defn
    async def save_checkpoint(self, input: CheckpointInput) -> None:
        await self.store.save_checkpoint(input.tenant, input.session, input.state_json,
                                         input.version)

    @activity.defn
    async def load_checkpoint(self, input: LoadCheckpointInput) -> LoadCheckpointResult:
        found = await self.store.load_checkpoint(input.tenant, input.session)
        if found is None:
            return LoadCheckpointResult()
        return LoadCheckpointResult(state_json=found[0], version=found[1])

    @activity.defn
    async def load_messages(self, input: LoadMessagesInput) -> LoadMessagesResult:
        found = await self.store.get_messages(input.tenant, input.session, input.ids)
        return LoadMessagesResult(messages=tuple(found))

    @activity.defn
    async def complete_chat(self, input: ChatInput) -> ChatResult:
        if self.chat is None:
            raise ApplicationError(
                "no chat model configured: set LONGTHREAD_CHAT_PROVIDER (anthropic or openai), "
                "LONGTHREAD_CHAT_MODEL and the provider's API key", type="NoChatModel",
                non_retryable=True)
        reply = await heartbeating(self.chat.complete(input.window, input.max_tokens))
        return ChatResult(**reply.model_dump())

    def all(self) -> list[Callable[..., Any]]:
        return [self.archive_messages, self.summarize_span, self.retrieve_context,
                self.record_compaction, self.record_compaction_stored, self.record_served,
                self.save_checkpoint, self.load_checkpoint, self.load_messages, self.complete_chat]
