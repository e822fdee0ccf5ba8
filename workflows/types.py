"""Typed inputs, results and carried state of the conversation workflow.

The carried state is cursors and counters only: a few hundred bytes whatever the session's
length, because the conversation itself (messages, digests, tool calls, window versions,
summaries, ledger, served contexts) lives in Postgres.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities.types import AppendResult, CompactOutcome, ContextRequest
from memory.checks import INVISIBLE_IN_IDS
from memory.errors import InvalidInputError
from memory.models import Actor, CompactionRecord, Message, check_text
from memory.policy import CompactionPolicy

# Ids as people write them ('acme-corp', UUIDs, 'JIRA-4711', '#4711', 'acme/2024/17'): any
# visible characters. Workflow ids escape them (see workflows.conversation.workflow_id).
TENANT_PATTERN = r"^[^\s\x00-\x1f\x7f]{1,100}$"
SESSION_PATTERN = r"^[^\s\x00-\x1f\x7f]{1,200}$"
# What a client refuses in a new id besides (`memory.checks.INVISIBLE_IN_IDS`) is not in the
# patterns above, which a workflow's input is validated with on every replay: a session
# started before must stay reachable.

# Temporal caps a payload at 2 MB, and an update over it cannot even be refused cleanly (the
# refusal echoes the request, so the worker's task fails until the server drops the update).
# Inputs that can grow are held under this when they are built, i.e. in the client.
MAX_UPDATE_BYTES = 1_500_000

__all__ = [
    "INVISIBLE_IN_IDS",
    "MAX_UPDATE_BYTES",
    "SESSION_PATTERN",
    "TENANT_PATTERN",
    "AppendInput",
    "AppendResult",
    "CompactInput",
    "CompactOutcome",
    "ContextInput",
    "ConversationInput",
    "ConversationState",
    "ConversationStats",
    "EditInput",
    "GenerateInput",
    "GenerateResult",
    "RestoreInput",
    "UncompactInput",
]

ContextInput = ContextRequest


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ConversationState(BaseModel):
    """What a run hands to the next at continue-as-new: cursors into the store."""

    next_seq: int = 0
    ledger_head: int = 0
    window_tokens: int = 0
    total_tokens: int = 0
    embedded_seq: int = 0
    rev: int = -1  # the store's revision these cursors were read at
    hold_compaction: bool = False
    runs: int = 1
    last_active: datetime | None = None


class ConversationInput(_Model):
    tenant: str = Field(pattern=TENANT_PATTERN)
    session: str = Field(pattern=SESSION_PATTERN)
    policy: CompactionPolicy = Field(default_factory=CompactionPolicy)
    idle_timeout_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    state: ConversationState | None = None


class AppendInput(_Model):
    messages: tuple[Message, ...] = Field(max_length=10_000)
    # An import that carries a ledger holds automatic compaction until the ledger is restored
    # (or an ordinary append arrives), so the restored records apply to the window they were
    # made on.
    hold_compaction: bool = False


class CompactInput(_Model):
    preserve_recent: int | None = Field(default=None, ge=0, le=10_000)
    focus: str | None = Field(default=None, max_length=2000)
    actor: Actor = None  # recorded on the record


class EditInput(_Model):
    kind: Literal["pop", "clear"]
    actor: Actor = None


class RestoreInput(_Model):
    """Ledger records from an export, re-applied in order to a freshly imported session."""

    records: tuple[CompactionRecord, ...] = Field(max_length=100_000)
    # More records follow in another call (a ledger larger than one payload is sent in parts):
    # automatic compaction stays held until the last part, so every part applies on the head
    # the previous one left.
    more: bool = False

    @model_validator(mode="after")
    def _fits_a_payload(self) -> RestoreInput:
        size = len(self.model_dump_json().encode("utf-8"))
        if size > MAX_UPDATE_BYTES:
            raise InvalidInputError(
                "records", f"are {size} bytes; the limit per call is {MAX_UPDATE_BYTES} bytes "
                "(Temporal caps a payload at 2 MB)")
        return self


class UncompactInput(_Model):
    record_id: str = Field(min_length=1, max_length=200)
    with_later: bool = False
    actor: Actor = None


class GenerateInput(_Model):
    content: str = Field(min_length=1, max_length=2_000_000)
    id: str | None = None
    name: str | None = None
    max_tokens: int = Field(default=4000, ge=64, le=2_000_000)
    reply_tokens: int = Field(default=1024, ge=1, le=64_000)

    @model_validator(mode="after")
    def _fits_a_payload(self) -> GenerateInput:
        # Lone surrogates cannot even be serialized to send: refuse them (and NUL) by name.
        check_text("content", self.content)
        size = len(self.content.encode("utf-8"))
        if size > MAX_UPDATE_BYTES:
            raise InvalidInputError(
                "content", f"is {size} bytes; the limit per call is {MAX_UPDATE_BYTES} bytes "
                "(Temporal caps a payload at 2 MB)")
        return self


class GenerateResult(_Model):
    reply: Message
    context_tokens: int
    model: str


class ConversationStats(_Model):
    tenant: str
    session: str
    messages: int
    embedded: int
    ledger_head: int
    window_tokens: int
    total_tokens: int
    runs: int
    pending_embedding: int
    busy: bool = False  # appending, embedding or compacting in the background right now
    # Idle or asked to close: the run finishes its embedding backlog and ends; an append sent
    # now goes to the next run.
    closing: bool = False
