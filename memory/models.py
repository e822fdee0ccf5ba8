"""The domain's frozen models: summaries, ledger records, served windows, cursors and events.
Validation errors name the field and the limit. Messages live in `memory.messages`; they are
re-exported here, where the rest of the code has always found them.

Everything here is pure pydantic, so workflows can import it inside the sandbox and the same
models travel through Temporal's pydantic data converter unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, JsonValue, ValidationInfo, field_validator

from memory.checks import (
    MAX_CONTENT_BYTES,
    MAX_ID_CHARS,
    Role,
    check_instant,
    check_json,
    check_text,
    check_texts,
    invalid_input,
)
from memory.errors import InvalidInputError
from memory.messages import (
    Frozen,
    Message,
    ToolCall,
    content_hash,
    message_digest,
    parse_messages,
    validate_sequence,
)

__all__ = [
    "MAX_ACTOR",
    "MAX_CONTENT_BYTES",
    "MAX_ID_CHARS",
    "Actor",
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
    "check_actor",
    "check_instant",
    "check_json",
    "check_text",
    "content_hash",
    "invalid_input",
    "message_digest",
    "parse_messages",
    "validate_sequence",
]


class Summary(Frozen):
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


class ScoredMessage(Frozen):
    """A retrieval candidate: an archived message and its fused relevance score."""

    message: Message
    score: float
    session: str | None = None
    seq: int | None = None  # position in the session, for chronological display


Trigger = Literal["auto", "manual", "idle", "undo", "pop", "clear"]
MAX_ACTOR = 200  # characters of a record's `actor`


def check_actor(value: str | None) -> str | None:
    """Who asked for a record (see `CompactionRecord.actor`): storable text, at most
    MAX_ACTOR characters, blank as None; checked where a request is built, before any work."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError("actor", f"must be a string, not {type(value).__name__}")
    if len(value) > MAX_ACTOR:
        raise InvalidInputError("actor", f"is {len(value)} characters; the limit is {MAX_ACTOR}")
    check_text("actor", value)
    return value if value.strip() else None


def _valid_actor(value: str | None) -> str | None:
    try:
        return check_actor(value)
    except InvalidInputError as exc:  # the field's name comes from where it is validated
        raise ValueError(exc.problem) from None  # (LONGTHREAD_ACTOR, `actor`), once


Actor = Annotated[str | None, AfterValidator(_valid_actor)]


class CompactionRecord(Frozen):
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
    # What the caller asked the summary to keep (`compact(focus=...)`), so an auditor reading
    # the ledger sees what the summarizer was told, not only what it wrote.
    focus: str | None = None
    # Who asked for a manual compaction, an undo, a pop or a clear, as the caller named itself
    # (the `actor` setting; the CLI adds its user): a claim, like a commit's author, not an
    # authenticated identity. None on automatic records and on records from before it.
    actor: Actor = None
    # The `preserve_recent` the compaction was planned with (the policy's, or the caller's):
    # it kept at least that many of the newest messages verbatim, more when a tool call and
    # its results, a call awaiting its result or the running turn's task had to stay whole.
    # None on undos, pops, clears and records from before it.
    preserve_recent: int | None = Field(default=None, ge=0)

    # Ledger records arrive from exports (restore_ledger): every text must be storable.
    @field_validator("id", "action", "reason", "covered_hash", "strategy", "model",
                     "prompt_version", "fallback", "engine_version", "undoes", "focus")
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


class ContextMessage(Frozen):
    """A provider-ready message; `source_ids` lists the originals it quotes verbatim."""

    role: Role
    content: str
    source_ids: tuple[str, ...] = ()
    section: Section
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tokens: int = 0
    # Anthropic thinking blocks sent first in this assistant message (`memory.thinking`),
    # counted in `tokens`; assembly version 15 sets them on the newest turn only. Left out of
    # a dump when there are none, so a window dumps (and digests) as before version 15, and
    # the digests recorded for windows served before it still match their replay.
    thinking: tuple[dict[str, JsonValue], ...] = Field(default=(), exclude_if=lambda v: not v)


class SectionUsage(Frozen):
    name: str
    budget: int
    tokens: int
    items: int


class ContextWindow(Frozen):
    """What the model sees for one call: always within `budget`."""

    messages: tuple[ContextMessage, ...]
    tokens: int
    budget: int
    sections: tuple[SectionUsage, ...] = ()

    @property
    def source_ids(self) -> list[str]:
        return [sid for message in self.messages for sid in message.source_ids]


class Cursors(Frozen):
    """A session's position in the store: all the workflow keeps of it, read back after every
    write. `rev` orders readings: the one with the higher rev is the newer."""

    next_seq: int = 0
    ledger_head: int = 0
    window_tokens: int = 0
    total_tokens: int = 0
    embedded_seq: int = 0
    rev: int = 0


class CompactionEvent(Frozen):
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
