"""The domain's frozen models. Validation errors name the field and the limit.

Everything here is pure pydantic, so workflows can import it inside the sandbox and the same
models travel through Temporal's pydantic data converter unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from memory.checks import (
    MAX_CONTENT_BYTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TOOL_CALLS,
    ROLES,
    Role,
    check_id,
    check_instant,
    check_json,
    check_text,
    check_texts,
    invalid_input,
)
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
    "check_instant",
    "check_json",
    "check_text",
    "content_hash",
    "invalid_input",
    "message_digest",
    "parse_messages",
    "validate_sequence",
]

class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Frozen):
    """A tool invocation requested by an assistant message; `arguments` is the raw JSON text."""

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    arguments: str = "{}"

    @model_validator(mode="before")
    @classmethod
    def _provider_shapes(cls, value: object) -> object:
        """Take a call as the providers' APIs return it, stored in the flat form: OpenAI's
        `{"id", "type": "function", "function": {"name", "arguments"}}` and Anthropic's
        `{"type": "tool_use", "id", "name", "input": {...}}` (its input kept as JSON text)."""
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("function"), dict):
            if value.get("type", "function") != "function":
                raise InvalidInputError("type", f"{value['type']!r} is not 'function'")
            function = value["function"]
            unknown = set(value) - {"id", "type", "function"}
            if unknown:
                raise InvalidInputError(sorted(unknown)[0], "unexpected beside 'function'")
            return {"id": value.get("id"), "name": function.get("name"),
                    "arguments": function.get("arguments", "{}")}
        if value.get("type") == "tool_use":
            flat = {k: v for k, v in value.items() if k not in ("type", "input")}
            flat["arguments"] = json.dumps(value.get("input", {}), ensure_ascii=False)
            return flat
        return value

    @model_validator(mode="after")
    def _storable(self) -> ToolCall:
        check_text("id", self.id)
        check_text("name", self.name)
        check_text("arguments", self.arguments)
        if len(self.arguments.encode("utf-8")) > MAX_CONTENT_BYTES:
            raise InvalidInputError("arguments", f"is over {MAX_CONTENT_BYTES} bytes")
        return self


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
        check_id("id", value)
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None:
            if len(value) > MAX_NAME_CHARS:
                raise InvalidInputError("name", f"must be at most {MAX_NAME_CHARS} characters")
            check_text("name", value)
        return value

    @model_validator(mode="after")
    def _valid_shape(self) -> Message:
        check_text("content", self.content)
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
        if self.tool_call_id is not None:
            if len(self.tool_call_id) > MAX_ID_CHARS:
                raise InvalidInputError("tool_call_id",
                                        f"must be at most {MAX_ID_CHARS} characters")
            check_text("tool_call_id", self.tool_call_id)
        check_instant("created_at", self.created_at)
        check_json("metadata", self.metadata)
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
    """A summary standing in the window for the messages it covers (`covers`, in order).

    A merged summary lists the summaries it condenses (`merges`) instead of copying their
    `covers`: copies made each level up hold the whole archive again, and a session's ledger
    would grow with (merges x archive). `covered` and `span` say how many messages it stands
    for and the first and last of them; the originals are found through `merges`."""

    id: str
    level: int = Field(ge=1)
    content: str
    covers: tuple[str, ...]
    quoted_ids: tuple[str, ...] = ()
    strategy: str = "extractive"
    created_at: datetime | None = None
    merges: tuple[str, ...] = ()
    covered: int | None = Field(default=None, ge=0)
    span: tuple[str, str] | None = None

    @field_validator("id", "content", "strategy")
    @classmethod
    def _storable_text(cls, value: str, info: ValidationInfo) -> str:
        check_text(str(info.field_name), value)
        return value

    @field_validator("covers", "quoted_ids", "merges", "span")
    @classmethod
    def _storable_ids(cls, value: tuple[str, ...] | None,
                      info: ValidationInfo) -> tuple[str, ...] | None:
        if value is not None:
            check_texts(str(info.field_name), value)
        return value

    @property
    def message_count(self) -> int:
        """How many original messages this summary stands for."""
        return self.covered if self.covered is not None else len(self.covers)

    @property
    def ends(self) -> tuple[str, str] | None:
        """The first and last original message it stands for, if any."""
        if self.span is not None:
            return self.span
        return (self.covers[0], self.covers[-1]) if self.covers else None

    def header(self, show: Callable[[str], str] | None = None) -> str:
        """The line that introduces this summary wherever it is shown to a model; `show` is how
        the ids of its span are shown (whole by default)."""
        ends = self.ends
        show = show or str
        span = f"{show(ends[0])} … {show(ends[1])}" if ends else "none"
        return f"Summary of {self.message_count} earlier messages ({span}), level {self.level}."

    @field_validator("created_at")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        check_instant("created_at", value)
        return value


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

    # Ledger records arrive from exports (restore_ledger): every text must be storable.
    @field_validator("id", "action", "reason", "covered_hash", "strategy", "model",
                     "prompt_version", "fallback", "engine_version", "undoes")
    @classmethod
    def _storable_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            check_text(str(info.field_name), value)
        return value

    @field_validator("covered_ids", "removed_summary_ids")
    @classmethod
    def _storable_ids(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        check_texts(str(info.field_name), value)
        return value

    @field_validator("at")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        check_instant("at", value)
        return value

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
    if isinstance(raw, (dict, str, bytes, BaseModel)):
        raise InvalidInputError("messages", f"expected a list of messages, got "
                                f"{type(raw).__name__} (to add one message, pass [message])")
    parsed: list[Message] = []
    for index, item in enumerate(raw):
        if isinstance(item, Message):
            parsed.append(item)
            continue
        try:
            parsed.append(Message.model_validate(item))
        except ValidationError as exc:
            error = invalid_input(exc)
            where = "" if error.field == exc.title else f".{error.field}"
            raise InvalidInputError(f"messages[{index}]{where}", error.problem) from None
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
    """Started / completed / failed / skipped (composed but not committed: it would not make
    the window smaller), for logs, metrics and live displays."""

    kind: Literal["started", "completed", "failed", "skipped"]
    record_id: str
    level: str
    reason: str
    tokens_before: int
    tokens_after: int | None = None
    ratio: float | None = None
    duration_ms: float | None = None
    error: str | None = None
    # Which activity run failed (workflow run id / activity id): a later compaction at the same
    # ledger head reuses the record id, so only this tells its own failures from older ones.
    activity: str | None = None
