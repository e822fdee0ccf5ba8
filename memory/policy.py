"""The progressive compaction policy: a pure function from window usage to a decision.

Below 70% of the context window nothing happens; 70-85% is light (deduplicate, archive the
oldest); 85-95% medium (rolling summary of older turns); 95-100% heavy (hierarchical summaries
plus retrieval); at or above 100% emergency. Every decision carries its reason, which goes
verbatim into the ledger, so an auditor can see why turn 37 was summarized away.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memory.errors import InvalidInputError

__all__ = ["CompactionDecision", "CompactionPolicy", "Level"]

Level = Literal["none", "light", "medium", "heavy", "emergency"]

ACTIONS: dict[str, str] = {
    "none": "store_verbatim",
    "light": "dedup_and_archive_oldest",
    "medium": "rolling_summary",
    "heavy": "hierarchical_summary",
    "emergency": "emergency_summary",
}


class CompactionDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: Level
    action: str
    reason: str
    tokens: int
    limit: int
    usage: float
    target_tokens: int


class CompactionPolicy(BaseModel):
    """Thresholds are fractions of `context_window`; `target` is where a compaction aims to land."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    # Models with windows of a million tokens and more exist; the window lives in Postgres
    # (the workflow keeps cursors), so nothing here grows with it. As large as a context() may be.
    context_window: int = Field(default=8_000, ge=256, le=2_000_000)
    thresholds: tuple[float, float, float] = (0.70, 0.85, 0.95)
    preserve_recent: int = Field(default=6, ge=0, le=10_000)
    target: float = Field(default=0.5, gt=0.0, lt=1.0)
    summary_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    hierarchy_fanout: int = Field(default=4, ge=2, le=64)
    chunk_fraction: float = Field(default=0.4, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> CompactionPolicy:
        light, medium, heavy = self.thresholds
        if not 0.0 < light < medium < heavy <= 1.0:
            raise InvalidInputError(
                "thresholds", "must be increasing fractions in (0, 1], e.g. (0.70, 0.85, 0.95)"
            )
        if self.target >= light:
            raise InvalidInputError("target", f"must be below the first threshold {light}")
        return self

    def level_for(self, tokens: int, limit: int | None = None) -> Level:
        usage = tokens / (limit or self.context_window)
        light, medium, heavy = self.thresholds
        if usage >= 1.0:
            return "emergency"
        if usage >= heavy:
            return "heavy"
        if usage >= medium:
            return "medium"
        if usage >= light:
            return "light"
        return "none"

    def decide(self, tokens: int, limit: int | None = None) -> CompactionDecision:
        """What to do about a window holding `tokens` out of `limit` (default: the window)."""
        if tokens < 0:
            raise InvalidInputError("tokens", "must be >= 0")
        cap = limit or self.context_window
        level = self.level_for(tokens, cap)
        usage = tokens / cap
        if level == "none":
            reason = f"{tokens} tokens is {usage:.0%} of {cap}, below {self.thresholds[0]:.0%}"
        else:
            reason = (
                f"{tokens} tokens is {usage:.0%} of {cap}: {level} level "
                f"(thresholds {', '.join(f'{t:.0%}' for t in self.thresholds)})"
            )
        return CompactionDecision(
            level=level,
            action=ACTIONS[level],
            reason=reason,
            tokens=tokens,
            limit=cap,
            usage=usage,
            target_tokens=int(cap * self.target),
        )

    def should_compact(self, tokens: int, token_limit: int | None = None) -> bool:
        return self.level_for(tokens, token_limit) != "none"
