"""How a window's budget is shared among its sections: fixed `Shares`, or the adaptive
`AssemblyPolicy`, and their defaults.

Apart from `memory.assembly` (which re-exports every name here) so that module stays about
building the window; these are the settings callers pass to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from memory.errors import InvalidInputError
from memory.retrieval import DEFAULT_RERANK, RerankPolicy

__all__ = ["DEFAULT_POLICY", "DEFAULT_SHARES", "QUERY_SHARES", "AssemblyPolicy", "Shares"]


@dataclass(frozen=True)
class Shares:
    summary: float = 0.2
    retrieved: float = 0.3
    recent: float = 0.5

    def __post_init__(self) -> None:
        parts = (self.summary, self.retrieved, self.recent)
        if min(parts) < 0 or sum(parts) <= 0:
            raise InvalidInputError("shares", "must be non-negative and not all zero")


@dataclass(frozen=True)
class AssemblyPolicy:
    """How version 2 spends a budget; the defaults are what the LoCoMo ablation supports."""

    rerank: RerankPolicy | None = DEFAULT_RERANK  # None: candidates in fused-score order
    dated_lines: bool = True  # the date on every retrieved line, not in group headers
    summary_cap: float = 0.10  # of the budget, while retrieval is answering a query
    recent_floor: float = 0.10  # cap on the newest exchange kept while retrieval answers
    reach: float = 0.25  # version 4: weight of the turns two away (half the adjacent turns')
    head: float = 0.5  # version 4: share of the block the top hits fill before `reach` reorders


DEFAULT_SHARES = Shares()
QUERY_SHARES = Shares(summary=0.1, retrieved=0.65, recent=0.25)
DEFAULT_POLICY = AssemblyPolicy()
