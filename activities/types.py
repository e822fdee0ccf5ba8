"""One `...Input` and one `...Result` per activity. Payloads carry ids and cursors, not bodies:
the conversation lives in the store, and the workflow only orders the writes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from memory.checks import MAX_CONTEXT_TOKENS, MAX_NEIGHBOURS, MAX_QUERY_CHARS, MAX_RETRIEVE
from memory.models import Actor, CompactionRecord, ContextWindow, Cursors, Message, Trigger
from memory.policy import CompactionPolicy

__all__ = [
    "MAX_CHAT_WINDOW_BYTES",
    "AppendResult",
    "ChatInput",
    "ChatResult",
    "CompactOutcome",
    "CompactSessionInput",
    "ContextRequest",
    "EditWindowInput",
    "EmbedInput",
    "EmbedResult",
    "RestoreLedgerInput",
    "ServeContextInput",
    "SessionRef",
    "StoreMessagesInput",
    "UncompactSessionInput",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class SessionRef(_Model):
    tenant: str
    session: str


class StoreMessagesInput(SessionRef):
    messages: tuple[Message, ...]
    # The workflow stamped `created_at` (generate()'s turns), not the caller: a known id equal
    # in everything else is the same message, sent again by a retried generate() or by a
    # workflow task run again.
    restamped: bool = False
    # Names this append (the update's id), so one run again after a lost workflow task
    # reports what it stored the first time (`Store.append_messages`).
    request: str | None = None


class AppendResult(_Model):
    appended: int
    duplicates: int
    total: int
    cursors: Cursors = Field(default_factory=Cursors)


class EmbedInput(SessionRef):
    start: int = Field(ge=0)
    stop: int = Field(ge=0)


class EmbedResult(_Model):
    embedded: int
    # Where the pass stopped: everything in [start, reached) is embedded. None in histories
    # recorded before passes were time-bounded, when a pass always reached its stop.
    reached: int | None = None


class CompactSessionInput(SessionRef):
    expected_head: int = Field(ge=0)
    policy: CompactionPolicy
    trigger: Trigger = "auto"
    preserve_recent: int | None = Field(default=None, ge=0, le=10_000)
    focus: str | None = Field(default=None, max_length=2000)
    force: bool = False
    actor: Actor = None


class UncompactSessionInput(SessionRef):
    expected_head: int = Field(ge=0)
    record_id: str = Field(min_length=1, max_length=200)
    with_later: bool = False  # also undo the later records that merged its summary
    actor: Actor = None


class EditWindowInput(SessionRef):
    expected_head: int = Field(ge=0)
    kind: Literal["pop", "clear"]
    actor: Actor = None


class RestoreLedgerInput(SessionRef):
    expected_head: int = Field(ge=0)
    records: tuple[CompactionRecord, ...]


class CompactOutcome(_Model):
    """What the workflow learns of a committed change: ids and numbers, never the bodies."""

    record_ids: tuple[str, ...] = ()
    tokens_before: int = 0
    tokens_after: int = 0
    cursors: Cursors = Field(default_factory=Cursors)
    error: str | None = None  # a refused request (the field and the problem), nothing changed
    skipped: str | None = None  # composed but not committed: why (it would not shrink the window)


class ContextRequest(_Model):
    query: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)
    max_tokens: int = Field(default=4000, ge=1, le=MAX_CONTEXT_TOKENS)
    k: int = Field(default=40, ge=1, le=MAX_RETRIEVE)
    neighbours: int = Field(default=1, ge=0, le=MAX_NEIGHBOURS)
    # Budget shares (summary, retrieved, recent); None lets assembly choose for the query.
    shares: tuple[float, float, float] | None = None


class ServeContextInput(SessionRef):
    request: ContextRequest


# A window generate() hands on through Temporal (as an activity result, then in ChatInput) is
# held to this many bytes of JSON; Temporal refuses payloads over 2 MB.
MAX_CHAT_WINDOW_BYTES = 1_500_000


class ChatInput(_Model):
    window: ContextWindow
    max_tokens: int = Field(default=1024, ge=1, le=64_000)


class ChatResult(_Model):
    content: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
