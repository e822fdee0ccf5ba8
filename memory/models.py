"""The domain's frozen models. Validation errors name the field and the limit.

Everything here is pure pydantic, so workflows can import it inside the sandbox and the same
models travel through Temporal's pydantic data converter unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from memory.errors import InvalidInputError

__all__ = [
    "MAX_CONTENT_BYTES",
    "MAX_ID_CHARS",
    "CompactionEvent",
    "CompactionRecord",
    "ContextMessage",
    "ContextWindow",
    "Cursors",
    "Message",
    "Role",
    "ScoredMessage",
    "SectionUsage",
    "Summary",
    "ToolCall",
    "content_hash",
    "message_digest",
    "parse_messages",
    "validate_sequence",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

# A Temporal payload is capped at 2 MB; bodies are carried by reference above a threshold, but
# one message may never exceed this, so it can always be archived in a single row.
MAX_CONTENT_BYTES = 2_000_000
MAX_ID_CHARS = 200
MAX_NAME_CHARS = 200
MAX_TOOL_CALLS = 64


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_text(field: str, value: str) -> None:
    """Postgres text refuses NUL and lone surrogates cannot be encoded: refuse both up front."""
    if "\x00" in value:
        raise InvalidInputError(field, "contains a NUL character, which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(field, f"is not valid UTF-8 ({exc.reason})") from None


class ToolCall(_Frozen):
    """A tool invocation requested by an assistant message; `arguments` is the raw JSON text."""

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    arguments: str = "{}"


class Message(_Frozen):
    """One conversation message, stored verbatim and forever under its id."""

    id: str
    role: Role
    content: str = ""
    created_at: datetime | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("role", mode="before")
    @classmethod
    def _known_role(cls, value: object) -> object:
        if value not in ROLES:
            raise InvalidInputError("role", f"{value!r} is not one of {', '.join(ROLES)}")
        return value

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not value or len(value) > MAX_ID_CHARS:
            raise InvalidInputError("id", f"must be 1 to {MAX_ID_CHARS} characters")
        if any(ord(c) < 32 for c in value):
            raise InvalidInputError("id", "must not contain control characters")
        _check_text("id", value)
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None:
            if len(value) > MAX_NAME_CHARS:
                raise InvalidInputError("name", f"must be at most {MAX_NAME_CHARS} characters")
            _check_text("name", value)
        return value

    @model_validator(mode="after")
    def _valid_shape(self) -> Message:
        _check_text("content", self.content)
        size = len(self.content.encode("utf-8"))
        if size > MAX_CONTENT_BYTES:
            raise InvalidInputError(
                "content", f"is {size} bytes; the limit is {MAX_CONTENT_BYTES} bytes"
            )
        if not self.content.strip() and not self.tool_calls:
            raise InvalidInputError("content", "must not be empty (unless tool_calls is set)")
        if len(self.tool_calls) > MAX_TOOL_CALLS:
            raise InvalidInputError("tool_calls", f"at most {MAX_TOOL_CALLS} per message")
        if self.tool_calls and self.role != "assistant":
            raise InvalidInputError("tool_calls", "only assistant messages may carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise InvalidInputError("tool_call_id", "is required on a tool message")
        if self.role != "tool" and self.tool_call_id:
            raise InvalidInputError("tool_call_id", "is only allowed on tool messages")
        return self

    @property
    def pinned(self) -> bool:
        return self.metadata.get("pinned") is True


def validate_sequence(
    messages: Sequence[Message],
    seen_ids: Iterable[str] = (),
    open_tool_calls: Iterable[str] | None = (),
) -> None:
    """Refuse duplicate ids and tool results that answer no earlier call.

    `seen_ids` and `open_tool_calls` describe what the conversation already holds, so a batch is
    validated against the whole session, not only against itself. `open_tool_calls=None` skips
    the tool check, for callers that cannot know the session's earlier calls.
    """
    seen = set(seen_ids)
    calls = set(open_tool_calls or ())
    for index, message in enumerate(messages):
        if message.id in seen:
            raise InvalidInputError(f"messages[{index}].id", f"duplicate id {message.id!r}")
        seen.add(message.id)
        for call in message.tool_calls:
            calls.add(call.id)
        if open_tool_calls is not None and message.role == "tool" \
                and message.tool_call_id not in calls:
            raise InvalidInputError(
                f"messages[{index}].tool_call_id",
                f"{message.tool_call_id!r} answers no earlier tool call (orphan tool result)",
            )


def message_digest(message: Message) -> str:
    """Identity of a message's content for dedup: canonical JSON, so the order of metadata keys
    (or of fields) never makes the same message look different."""
    data = message.model_dump(mode="json")
    if message.created_at is not None:  # one instant, however it was written (Postgres
        stamp = message.created_at  # hands it back in UTC); naive times are taken as UTC
        stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
        data["created_at"] = stamp.isoformat()
    doc = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:32]


def content_hash(messages: Iterable[Message]) -> str:
    """A stable digest of the exact originals a compaction covered, for the audit trail."""
    digest = hashlib.sha256()
    for message in messages:
        digest.update(message.model_dump_json().encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


class Summary(_Frozen):
    """A summary standing in the window for the messages it covers (`covers`, in order)."""

    id: str
    level: int = Field(ge=1)
    content: str
    covers: tuple[str, ...]
    quoted_ids: tuple[str, ...] = ()
    strategy: str = "extractive"
    created_at: datetime | None = None


class ScoredMessage(_Frozen):
    """A retrieval candidate: an archived message and its fused relevance score."""

    message: Message
    score: float
    session: str | None = None
    seq: int | None = None  # position in the session, for chronological display


Trigger = Literal["auto", "manual", "idle", "undo", "pop", "clear"]


class CompactionRecord(_Frozen):
    """One ledger entry: what was compacted, why, how, and how to undo it."""

    id: str
    seq: int = Field(ge=0)
    at: datetime | None = None
    trigger: Trigger = "auto"
    level: Literal["none", "light", "medium", "heavy", "emergency"]
    action: str
    reason: str
    covered_ids: tuple[str, ...]
    covered_hash: str
    removed_summary_ids: tuple[str, ...] = ()
    summary: Summary | None = None
    # Everything needed to rebuild the window this record produced travels with it: the
    # summary that replaced merged ones (hierarchy), the summaries an undo puts back, the
    # summary budget and the engine that made it. `apply_record` needs nothing else.
    merged_summary: Summary | None = None
    restored_summaries: tuple[Summary, ...] = ()
    summary_max_tokens: int | None = None
    engine_version: str | None = None
    strategy: str
    model: str | None = None
    prompt_version: str | None = None
    fallback: str | None = None
    tokens_before: int = Field(ge=0)
    tokens_after: int = Field(ge=0)
    duration_ms: float = 0.0
    undoes: str | None = None

    @property
    def ratio(self) -> float:
        return self.tokens_before / self.tokens_after if self.tokens_after else float("inf")


Section = Literal["system", "summary", "retrieved", "recent"]


class ContextMessage(_Frozen):
    """A provider-ready message; `source_ids` lists the originals it quotes verbatim."""

    role: Role
    content: str
    source_ids: tuple[str, ...] = ()
    section: Section
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tokens: int = 0


class SectionUsage(_Frozen):
    name: str
    budget: int
    tokens: int
    items: int


class ContextWindow(_Frozen):
    """What the model sees for one call: always within `budget`."""

    messages: tuple[ContextMessage, ...]
    tokens: int
    budget: int
    sections: tuple[SectionUsage, ...] = ()

    @property
    def source_ids(self) -> list[str]:
        return [sid for message in self.messages for sid in message.source_ids]


def parse_messages(raw: Sequence[object]) -> list[Message]:
    """Turn user input into messages, reporting the first problem as one clear error."""
    from pydantic import ValidationError

    parsed: list[Message] = []
    for index, item in enumerate(raw):
        if isinstance(item, Message):
            parsed.append(item)
            continue
        try:
            parsed.append(Message.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            cause = (first.get("ctx") or {}).get("error")
            if isinstance(cause, InvalidInputError):
                where, text = cause.field, cause.problem
            else:
                where = ".".join(str(part) for part in first["loc"]) or "message"
                text = str(first["msg"])
            raise InvalidInputError(f"messages[{index}].{where}", text) from None
    validate_sequence(parsed, open_tool_calls=None)
    return parsed


class Cursors(_Frozen):
    """A session's position in the store: all the workflow keeps of it, read back after every
    write. `rev` orders readings: the one with the higher rev is the newer."""

    next_seq: int = 0
    ledger_head: int = 0
    window_tokens: int = 0
    total_tokens: int = 0
    embedded_seq: int = 0
    rev: int = 0


class CompactionEvent(_Frozen):
    """Started / completed / failed, for logs, metrics and live displays."""

    kind: Literal["started", "completed", "failed"]
    record_id: str
    level: str
    reason: str
    tokens_before: int
    tokens_after: int | None = None
    ratio: float | None = None
    duration_ms: float | None = None
    error: str | None = None
