"""The summarizer protocol and its offline default, the extractive strategy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from memory.extractive import extractive_summary
from memory.models import Message
from memory.packing import short_line_ids, shown_id
from memory.tokens import TokenCounter, default_counter

__all__ = ["ExtractiveSummarizer", "Summarizer", "SummaryResult"]


class SummaryResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    quoted_ids: tuple[str, ...] = ()
    strategy: str
    model: str | None = None
    prompt_version: str | None = None


class Summarizer(Protocol):
    def summarize(
        self, messages: Sequence[Message], max_tokens: int, focus: str | None = None
    ) -> SummaryResult: ...


class ExtractiveSummarizer:
    """Deterministic, offline, and unable to invent anything: the default.

    Its `max_tokens` holds for the summary as a window shows it (`shown_ids`, the default):
    long ids by their tails (`memory.packing.short_line_ids`). Metered with whole UUIDs, ids
    were ~40% of a summary's tokens, and the summary held that many fewer sentences (engine
    version 4). A tail another quoted id shares is shown whole; then the summary is made again,
    metered whole, so it never passes its budget as shown."""

    def __init__(self, counter: TokenCounter | None = None, shown_ids: bool = True) -> None:
        self._counter = counter or default_counter()
        self._shown_ids = shown_ids

    def summarize(
        self, messages: Sequence[Message], max_tokens: int, focus: str | None = None
    ) -> SummaryResult:
        counter = self._counter
        result = extractive_summary(messages, max_tokens, focus=focus, counter=counter,
                                    shown=shown_id if self._shown_ids else None)
        if self._shown_ids and counter.count(
                short_line_ids(result.text, result.quoted_ids)[0]) > max_tokens:
            result = extractive_summary(messages, max_tokens, focus=focus, counter=counter)
        return SummaryResult(text=result.text, quoted_ids=result.quoted_ids, strategy="extractive")
