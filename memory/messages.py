"""Messages as they arrive and are stored forever: their validation (errors name the field and
the limit), their order rules (no duplicate ids, no orphan tool results) and their digests.

Pure pydantic, so workflows import it inside the sandbox and the same models travel through
Temporal's pydantic data converter unchanged. `memory.models` re-exports all of it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

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
    check_json_depth,
    check_new_id,
    check_text,
    invalid_input,
)
from memory.errors import InvalidInputError
from memory.provider_shapes import flat_call, flat_message
from memory.thinking import THINKING, check_thinking

__all__ = ["ARCHIVE", "FUTURE_SLACK", "Frozen", "Message", "ToolCall", "as_jsonb", "check_intake",
           "check_not_future",
           "content_hash", "message_digest", "parse_messages", "utc_instant",
           "validate_sequence"]

# How far ahead of the clock a created_at may be. A day covers skewed clocks and a local time
# sent without its zone (taken as UTC, up to 14 hours early); beyond it, the time is a typo or
# a placeholder (9999-12-31) that would date retrieved lines and order nothing sensibly.
FUTURE_SLACK = timedelta(days=1)

TAIL_MARK = "…"  # before the last characters of a long id, where a window shows it so
_NAME_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# Validation context for what the archive holds (`Model.model_validate(doc, context=ARCHIVE)`):
# a field this version does not know was written by a newer one, and is left out.
ARCHIVE = {"archive": True}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _written_by_a_newer_version(cls, data: Any, info: ValidationInfo) -> Any:
        """Unknown fields are refused, from callers and files (a typo must not pass as
        nothing), except in what the archive holds: there a newer version wrote them, and a
        worker or client not yet upgraded (a rolling upgrade) must still read its ledger.
        Ledger records gaining `actor` and `preserve_recent` broke every older reader."""
        if isinstance(info.context, dict) and info.context.get("archive") is True \
                and isinstance(data, dict):
            return {key: value for key, value in data.items() if key in cls.model_fields}
        return data


class ToolCall(Frozen):
    """A tool invocation requested by an assistant message; `arguments` is the raw JSON text."""

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    arguments: str = "{}"

    @model_validator(mode="before")
    @classmethod
    def _provider_shapes(cls, value: object) -> object:
        """Take a call as the providers' APIs return it (`memory.provider_shapes.flat_call`)."""
        return value if isinstance(value, ToolCall) else flat_call(value)

    @model_validator(mode="after")
    def _storable(self) -> ToolCall:
        check_text("id", self.id)
        check_text("name", self.name)
        check_text("arguments", self.arguments)
        if len(self.arguments.encode("utf-8")) > MAX_CONTENT_BYTES:
            raise InvalidInputError("arguments", f"is over {MAX_CONTENT_BYTES} bytes")
        return self


class Message(Frozen):
    """One conversation message, stored verbatim and forever under its id."""

    id: str
    role: Role
    content: str = ""
    created_at: datetime | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _provider_shapes(cls, value: object) -> object:
        """Take a message as the provider SDKs hand it back (`memory.provider_shapes.
        flat_message`): an agent loop appends `ChatCompletionMessage.model_dump()` or
        Anthropic content blocks as they are, and stores what the flat form would."""
        return value if isinstance(value, Message) else flat_message(value)

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


def check_not_future(messages: Sequence[Message], now: datetime) -> None:
    """Refuse a created_at more than FUTURE_SLACK after `now`. Not a model validator: those also
    run inside the workflow sandbox, where a wall clock would break determinism; the store and
    `memory.Session` call this before they keep anything."""
    latest = utc_instant(now) + FUTURE_SLACK
    for index, message in enumerate(messages):
        if message.created_at is not None and utc_instant(message.created_at) > latest:
            raise InvalidInputError(
                f"messages[{index}].created_at",
                f"{utc_instant(message.created_at).isoformat()} is more than a day after now "
                f"({utc_instant(now).isoformat(timespec='seconds')})")


def utc_instant(stamp: datetime) -> datetime:
    """An instant in UTC; a naive time is taken as UTC (as `message_digest` compares them)."""
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def message_digest(message: Message) -> str:
    """Identity of a message's content for dedup: canonical JSON, so the order of metadata keys
    (or of fields) never makes the same message look different."""
    data = message.model_dump(mode="json")
    if message.created_at is not None:  # one instant, however it was written (Postgres
        data["created_at"] = utc_instant(message.created_at).isoformat()  # hands it in UTC)
    doc = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:32]


def as_jsonb(value: JsonValue) -> JsonValue:
    """A JSON value as Postgres's jsonb gives it back: each object's keys shorter first, then
    by their UTF-8 bytes, and a float written with a positive exponent (1e+16) as the integer
    its decimal text names. A covered hash is taken over messages read from the archive, so a
    check of a file's ledger before storing it (`import`) hashes its messages in this form:
    a file whose metadata keys were re-sorted (`jq -S`) was refused there, though the worker,
    hashing what the archive gave back, would have matched it."""
    if isinstance(value, dict):
        return {key: as_jsonb(value[key])
                for key in sorted(value, key=lambda k: (len(k.encode("utf-8")), k.encode()))}
    if isinstance(value, list):
        return [as_jsonb(item) for item in value]
    if isinstance(value, float) and "e+" in repr(value):
        return int(Decimal(repr(value)))
    return value


def content_hash(messages: Iterable[Message]) -> str:
    """A stable digest of the exact originals a compaction covered, for the audit trail."""
    digest = hashlib.sha256()
    for message in messages:
        digest.update(message.model_dump_json().encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def check_intake(message: Message) -> None:
    """Rules for a message arriving now, which messages stored before them may break: so they
    are checked where messages come in (`parse_messages`, the workflow's update validators),
    never in `Message`'s own validators, which also run when a recorded history replays.
    From session 25's security review:
    - an id may not start with "…": the CLI, the MCP tools and the audit page read "…9f3c2a1b"
      as the tail a window shows a long id by, and such an id took another message's lookup;
    - a name is one line: shown before its message's quote ("[…9f3c2a1b] Caroline: …"), a
      line break in it started a forged line of the block;
    - metadata nests at most MAX_JSON_DEPTH levels (5,000 raised a RecursionError);
    - an id holds no invisible or direction-changing characters and is in NFC
      (`memory.checks.check_new_id`; session 29);
    - thinking blocks kept in metadata (`memory.thinking`) are an assistant's, and whole: one
      that is not would be left out of every request, unsaid."""
    check_new_id("id", message.id)
    if message.id.startswith(TAIL_MARK):
        raise InvalidInputError("id", f"must not start with {TAIL_MARK!r}, which marks a long "
                                "id shown by its tail")
    if message.name is not None and _NAME_BREAKS.search(message.name):
        raise InvalidInputError("name", "must be one line, with no control characters")
    check_json_depth("metadata", message.metadata)
    if THINKING in message.metadata:
        if message.role != "assistant":
            raise InvalidInputError(f"metadata.{THINKING}", "is kept only on assistant "
                                    "messages, which Anthropic returned it with")
        check_thinking(f"metadata.{THINKING}", message.metadata[THINKING])


def parse_messages(raw: Sequence[object]) -> list[Message]:
    """Turn user input into messages, reporting the first problem as one clear error."""
    if isinstance(raw, (dict, str, bytes, BaseModel)):
        raise InvalidInputError("messages", f"expected a list of messages, got "
                                f"{type(raw).__name__} (to add one message, pass [message])")
    parsed: list[Message] = []
    for index, item in enumerate(raw):
        try:
            if isinstance(item, dict):  # before pydantic, which recurses into it
                check_json_depth("metadata", item.get("metadata"))
            message = item if isinstance(item, Message) else Message.model_validate(item)
            check_intake(message)
        except InvalidInputError as exc:
            raise InvalidInputError(f"messages[{index}].{exc.field}", exc.problem) from None
        except ValidationError as exc:
            error = invalid_input(exc)
            where = "" if error.field == exc.title else f".{error.field}"
            raise InvalidInputError(f"messages[{index}]{where}", error.problem) from None
        parsed.append(message)
    validate_sequence(parsed, open_tool_calls=None)
    return parsed
