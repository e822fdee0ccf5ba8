"""A conversation's reads, which come straight from the store, the source of truth.

A mixin of `Conversation` (`longthread.conversation`, which re-exports `MAX_FETCH_IDS`), apart
so that module stays about writes, which go through the session's workflow; nothing here
starts or waits for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from activities.serving import serve_context
from activities.types import ContextRequest
from memory.checks import MAX_RETRIEVE, check_id, check_range, check_search
from memory.errors import InvalidInputError, NotFoundError
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    ContextWindow,
    Message,
    ScoredMessage,
    Summary,
    invalid_input,
)
from memory.store.lookups import Lookup

if TYPE_CHECKING:
    from longthread.client import Longthread

__all__ = ["MAX_FETCH_IDS", "ConversationReads"]

MAX_FETCH_IDS = 200  # ids one `messages()` call takes (each body is at most 2 MB)


class ConversationReads:
    """Reads from the store; mixed into `Conversation`, which sets these attributes."""

    lt: Longthread
    session: str
    tenant: str

    async def context(self, query: str | None = None, max_tokens: int = 4000,
                      k: int = 40, neighbours: int = 1,
                      shares: tuple[float, float, float] | None = None) -> ContextWindow:
        """The window for one model call, within `max_tokens`; recorded for `replay`."""
        try:
            request = ContextRequest(query=query, max_tokens=max_tokens, k=k,
                                     neighbours=neighbours, shares=shares)
        except ValidationError as exc:  # out-of-range numbers, a query over 100,000 chars
            raise invalid_input(exc) from None
        return await serve_context(await self.lt.store(), self.lt.embedder(), self.tenant,
                                   self.session, request)

    async def search(self, query: str, k: int = 10) -> list[ScoredMessage]:
        """Hybrid retrieval over the whole session (BM25 and embeddings, fused)."""
        query = check_search("query", query)
        check_range("k", k, 1, MAX_RETRIEVE)
        store = await self.lt.store()  # first: it reads the archive's embedding size
        (vector,) = await self.lt.embedder().embed([query])
        return await store.search(self.tenant, self.session, query, vector, k)

    async def messages(self, ids: Sequence[str]) -> list[Message]:
        """Stored messages by id, verbatim and whole, in the order asked for.

        Why: the window shows a body over 64 KB as its first 2,000 characters and a line
        naming its id ("in full in the archive as <id>"), and a summary names the ids it
        covers; this is how a caller (or an agent, through the MCP `message` tool) follows
        such a reference. A long id may be given as the tail the window shows for it
        (`…9f02873d`, or without the `…`: `lookup`). Every message is stored before its
        append returns, so there is nothing to wait for. An id the session does not hold,
        or a tail several of its ids end with, is an error that names it.
        """
        found = await self.lookup(ids)
        if missing := found.missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise NotFoundError(f"ids: no message {missing[0]!r}{more} in session "
                                f"{self.session!r}")
        if found.ambiguous:
            raise InvalidInputError("ids", found.ambiguity(next(iter(found.ambiguous))))
        return found.messages

    async def lookup(self, ids: Sequence[str]) -> Lookup:
        """What each of `ids` names, with its seq, none of them an error: a whole id, or else
        the tail a window shows for a long one, when exactly one of the session's ids ends
        with it (`memory.store.lookups`)."""
        if isinstance(ids, str):
            raise InvalidInputError("ids", "expected a list of message ids, got a string "
                                    "(to fetch one message, pass [id])")
        if not 1 <= len(ids) <= MAX_FETCH_IDS:
            raise InvalidInputError("ids", f"must hold 1 to {MAX_FETCH_IDS} ids; got {len(ids)}")
        for index, value in enumerate(ids):
            if not isinstance(value, str):
                raise InvalidInputError(f"ids[{index}]",
                                        f"must be a string, not {type(value).__name__}")
            check_id(f"ids[{index}]", value)
        return await (await self.lt.store()).find_messages(self.tenant, self.session, ids)

    async def ledger(self) -> list[CompactionRecord]:
        return await (await self.lt.store()).ledger(self.tenant, self.session)

    async def events(self) -> list[CompactionEvent]:
        return await (await self.lt.store()).events(self.tenant, self.session)

    async def window(self) -> list[Message]:
        loaded = await (await self.lt.store()).load_window(self.tenant, self.session)
        return list(loaded.state.messages)

    async def summaries(self) -> list[Summary]:
        loaded = await (await self.lt.store()).load_window(self.tenant, self.session)
        return list(loaded.state.summaries)
