"""Audit records: what one context() call served, so it can be rebuilt and checked later."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

from memory.models import ContextWindow

__all__ = ["ServedContext", "window_digest"]


def window_digest(window: ContextWindow) -> str:
    return hashlib.sha256(window.model_dump_json().encode()).hexdigest()


class ServedContext(BaseModel):
    """Enough to rebuild a served window exactly: the turn it was served after, the request,
    how many ledger records were in force, the retrieved candidates with their scores, and a
    digest of the window itself to compare against."""

    model_config = ConfigDict(frozen=True)

    seq: int
    turn: int
    query: str | None
    max_tokens: int
    tokens: int
    source_ids: tuple[str, ...]
    digest: str
    ledger_seq: int
    retrieved: tuple[tuple[str, float], ...] = ()
    # (summary, retrieved, recent) when the caller fixed them; None: assembly adapted them.
    shares: tuple[float, float, float] | None = (0.2, 0.3, 0.5)
    assembly_version: int = 1  # records from before issue 12 carry none: version 1
