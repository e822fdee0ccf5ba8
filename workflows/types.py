"""Typed inputs, results and carried state of the conversation workflow."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from memory.audit import ServedContext
from memory.compaction import WindowState
from memory.models import CompactionEvent, CompactionRecord, Message
from memory.policy import CompactionPolicy

# A tenant has no '-', so `conversation-{tenant}-{session}` can never name another tenant's
# workflow (tenant "a-b" + session "c" would otherwise collide with tenant "a" + session "b-c").
TENANT_PATTERN = r"^[A-Za-z0-9_.@:]{1,100}$"
SESSION_PATTERN = r"^[A-Za-z0-9_.@:-]{1,200}$"

__all__ = [
    "SESSION_PATTERN",
    "TENANT_PATTERN",
    "AppendInput",
    "AppendResult",
    "CompactInput",
    "ContextInput",
    "ConversationInput",
    "ConversationState",
    "ConversationStats",
    "GenerateInput",
    "GenerateResult",
    "RestoreInput",
    "UncompactInput",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ConversationState(BaseModel):
    """Everything a run hands to the next one at continue-as-new (and to checkpoints)."""

    next_seq: int = 0
    total_tokens: int = 0
    window: WindowState = Field(default_factory=WindowState)
    pending: list[tuple[int, Message]] = Field(default_factory=list)
    known: dict[str, tuple[int, str]] = Field(default_factory=dict)  # id -> (seq, digest)
    tool_call_ids: list[str] = Field(default_factory=list)
    ledger: list[CompactionRecord] = Field(default_factory=list)
    events: list[CompactionEvent] = Field(default_factory=list)
    served: list[ServedContext] = Field(default_factory=list)  # the most recent few
    served_pending: list[ServedContext] = Field(default_factory=list)  # not yet in the store
    served_seq: int = 0
    runs: int = 1
    last_active: datetime | None = None


class ConversationInput(_Model):
    tenant: str = Field(pattern=TENANT_PATTERN)
    session: str = Field(pattern=SESSION_PATTERN)
    policy: CompactionPolicy = Field(default_factory=CompactionPolicy)
    idle_timeout_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    state: ConversationState | None = None


class AppendInput(_Model):
    messages: tuple[Message, ...]


class AppendResult(_Model):
    appended: int
    duplicates: int
    total: int


class ContextInput(_Model):
    query: str | None = None
    max_tokens: int = Field(default=4000, ge=1, le=2_000_000)
    k: int = Field(default=40, ge=1, le=500)
    neighbours: int = Field(default=1, ge=0, le=5)
    # Budget shares (summary, retrieved, recent). None: 20/30/50 without a query; with a
    # query, retrieval first (10/65/25), since the question is what the window must answer.
    shares: tuple[float, float, float] | None = None


class CompactInput(_Model):
    preserve_recent: int | None = Field(default=None, ge=0, le=10_000)
    focus: str | None = Field(default=None, max_length=2000)


class RestoreInput(_Model):
    """Ledger records from an export, re-applied in order to a freshly imported session."""

    records: tuple[CompactionRecord, ...]


class UncompactInput(_Model):
    record_id: str


class GenerateInput(_Model):
    content: str = Field(min_length=1)
    id: str | None = None
    name: str | None = None
    max_tokens: int = Field(default=4000, ge=64, le=2_000_000)
    reply_tokens: int = Field(default=1024, ge=1, le=64_000)


class GenerateResult(_Model):
    reply: Message
    context_tokens: int
    model: str


class ConversationStats(_Model):
    tenant: str
    session: str
    messages: int
    archived: int
    window_messages: int
    window_tokens: int
    total_tokens: int
    compactions: int
    runs: int
    pending_archive: int
    busy: bool = False  # archiving or compacting in the background right now
