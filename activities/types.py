"""One `...Input` and one `...Result` per activity. Payloads carry ids, not bodies, wherever
the bodies are already archived (summaries read originals from the store by id)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from memory.audit import ServedContext
from memory.models import CompactionRecord, ContextWindow, Message, ScoredMessage

__all__ = [
    "ArchiveInput",
    "ArchiveResult",
    "ChatInput",
    "ChatResult",
    "CheckpointInput",
    "LoadCheckpointInput",
    "LoadCheckpointResult",
    "LoadMessagesInput",
    "LoadMessagesResult",
    "RecordCompactionInput",
    "RecordServedInput",
    "RetrieveInput",
    "RetrieveResult",
    "SeqMessage",
    "SummarizeInput",
    "SummarizeResult",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class SeqMessage(_Model):
    seq: int = Field(ge=0)
    message: Message


class ArchiveInput(_Model):
    tenant: str
    session: str
    messages: tuple[SeqMessage, ...]


class ArchiveResult(_Model):
    inserted: int
    already_archived: int


class SummarizeInput(_Model):
    tenant: str
    session: str
    ids: tuple[str, ...]
    max_tokens: int = Field(ge=1)
    focus: str | None = None


class SummarizeResult(_Model):
    text: str
    quoted_ids: tuple[str, ...] = ()
    strategy: str
    model: str | None = None
    prompt_version: str | None = None
    fallback: str | None = None


class RetrieveInput(_Model):
    tenant: str
    session: str
    query: str
    k: int = Field(default=20, ge=1, le=500)
    neighbours: int = Field(default=0, ge=0, le=5)
    since: datetime | None = None
    until: datetime | None = None


class RetrieveResult(_Model):
    candidates: tuple[ScoredMessage, ...]


class CheckpointInput(_Model):
    tenant: str
    session: str
    state_json: str
    version: int


class LoadCheckpointInput(_Model):
    tenant: str
    session: str


class LoadCheckpointResult(_Model):
    state_json: str | None = None
    version: int = 0


class RecordCompactionInput(_Model):
    tenant: str
    session: str
    record: CompactionRecord


class LoadMessagesInput(_Model):
    tenant: str
    session: str
    ids: tuple[str, ...]


class LoadMessagesResult(_Model):
    messages: tuple[Message, ...]


class RecordServedInput(_Model):
    tenant: str
    session: str
    records: tuple[ServedContext, ...]


class ChatInput(_Model):
    window: ContextWindow
    max_tokens: int = Field(default=1024, ge=1, le=64_000)


class ChatResult(_Model):
    content: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
