"""The summarizer protocol and its offline default, the extractive strategy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from memory.extractive import extractive_summary
from memory.models import Message
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
    """Deterministic, offline, and unable to invent anything: the default."""

    def __init__(self, counter: TokenCounter | None = None) -> None:
        self._counter = counter or default_counter()

    def summarize(
        self, messages: Sequence[Message], max_tokens: int, focus: str | None = None
    ) -> SummaryResult:
        result = extractive_summary(messages, max_tokens, focus=focus, counter=self._counter)
        return SummaryResult(text=result.text, quoted_ids=result.quoted_ids, strategy="extractive")
