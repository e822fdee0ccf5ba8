"""Audit records: what one context() call served, so it can be rebuilt and checked later."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from memory.checks import MAX_TURN, check_text, check_texts
from memory.messages import content_hash
from memory.models import ContextWindow, Message

__all__ = ["CoveredHashes", "ServedContext", "window_digest"]


def window_digest(window: ContextWindow) -> str:
    return hashlib.sha256(window.model_dump_json().encode()).hexdigest()


class ServedContext(BaseModel):
    """Enough to rebuild a served window exactly: the turn it was served after, the request,
    how many ledger records were in force, the retrieved candidates with their scores, and a
    digest of the window itself to compare against."""

    model_config = ConfigDict(frozen=True)

    # Bounded as the store's columns are: records also arrive from export files.
    seq: int = Field(ge=0)
    turn: int = Field(ge=0, le=MAX_TURN)
    query: str | None
    max_tokens: int = Field(ge=1)
    tokens: int = Field(ge=0)
    source_ids: tuple[str, ...]
    digest: str
    ledger_seq: int = Field(ge=0, le=MAX_TURN)
    retrieved: tuple[tuple[str, float], ...] = ()
    # (summary, retrieved, recent) when the caller fixed them; None: assembly adapted them.
    shares: tuple[float, float, float] | None = (0.2, 0.3, 0.5)
    assembly_version: int = 1  # records from before issue 12 carry none: version 1

    @field_validator("query", "digest")
    @classmethod
    def _storable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            check_text(str(info.field_name), value)  # jsonb refuses NUL
        return value

    @field_validator("source_ids")
    @classmethod
    def _storable_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        check_texts("source_ids", value)
        return value

    @field_validator("retrieved")
    @classmethod
    def _storable_retrieved(cls, value: tuple[tuple[str, float], ...]
                            ) -> tuple[tuple[str, float], ...]:
        check_texts("retrieved", (i for i, _ in value))
        return value


class CoveredHashes:
    """Whether messages give a record's covered hash in the time zone it was taken in.

    A covered hash is over the messages as the worker's database session read them, times in
    that session's zone (the server's default, PGTZ, a login's setting), which need not be the
    reader's: an export from a database in Berlin was refused by the restore check of one in
    UTC (session 30). `verify`, `import`'s pre-check and the worker's restore check all ask
    here. Which zone: tried as read, then the zone that
    matched last, UTC, and every zone the system knows (a mismatch costs one pass of about
    600; a match is tried first from then on). A zone only renders the same instants: no
    choice of zone makes edited content give the hash."""

    def __init__(self) -> None:
        self.found: tzinfo | None = None

    def match(self, messages: list[Message], expected: str) -> bool:
        if content_hash(messages) == expected:
            return True
        if not any(m.created_at is not None for m in messages):
            return False
        for zone in self._candidates():
            moved = [m if m.created_at is None else m.model_copy(
                update={"created_at": m.created_at.astimezone(zone)}) for m in messages]
            if content_hash(moved) == expected:
                self.found = zone
                return True
        return False

    def _candidates(self) -> Iterator[tzinfo]:
        if self.found is not None:
            yield self.found
        yield UTC
        for name in sorted(available_timezones()):
            yield ZoneInfo(name)
