"""How assembly spends a budget: split it among sections, fill a section, and the recent run.

Pure helpers of `memory.assembly`, apart so that module stays about its sections. Each is
deterministic: the same arguments give the same choice, which `replay` relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from memory.models import ContextMessage, Message, ScoredMessage

__all__ = ["UNFLATTEN_TRIES", "allocate", "greedy", "newest_run", "unflatten"]

T = TypeVar("T")
Repack = Callable[[list[ScoredMessage], int], tuple[ContextMessage | None, list[ScoredMessage]]]


def allocate(needs: dict[str, int], shares: dict[str, float], total: int) -> dict[str, int]:
    """Water-filling: each section gets its share, and what a section does not need flows on."""
    alloc = dict.fromkeys(needs, 0)
    active = [name for name, need in needs.items() if need > 0 and shares[name] > 0]
    left = total
    while active and left > 0:
        weight = sum(shares[name] for name in active)
        offer = {name: int(left * shares[name] / weight) for name in active}
        done = [name for name in active if needs[name] - alloc[name] <= offer[name]]
        if not done:
            for name in active:
                alloc[name] += offer[name]
            break
        for name in done:
            left -= needs[name] - alloc[name]
            alloc[name] = needs[name]
            active.remove(name)
    return alloc


def greedy(items: Sequence[T], budget: int, cost: Callable[[list[T]], int]) -> list[T]:
    chosen: list[T] = []
    for item in items:
        if cost([*chosen, item]) <= budget:
            chosen.append(item)
    return chosen


def newest_run(costs: Sequence[int], start: int, limit: int, first_limit: int,
            stop: Callable[[int], bool] = lambda _: False) -> list[int]:
    """Units start-1, start-2, … (newest first) while they fit: a contiguous run. The first
    is held to `first_limit` instead of `limit` (the newest unit is kept whenever it fits)."""
    taken: list[int] = []
    used = 0
    for index in range(start - 1, -1, -1):
        if stop(index) or used + costs[index] > (limit if taken else first_limit):
            break
        taken.append(index)
        used += costs[index]
    return taken


UNFLATTEN_TRIES = 8  # repacks at most: each moves the recent run back one quoted turn


def unflatten(units: Sequence[Sequence[Message]], unit_cost: Sequence[int], oldest: int,
               fresh: Sequence[ScoredMessage], chosen: Sequence[ScoredMessage], space: int,
               repack: Repack
               ) -> tuple[list[int], ContextMessage | None, list[ScoredMessage]] | None:
    """Version 7: the recent run moved back over the window's turns that retrieval quoted, as
    far as the block, repacked without them in what is left, still shows every line it
    showed (as a line or as a turn). (units taken, block, chosen), or None if no move is free.

    A short chat asked with a query used to come back as one quoted block and its newest
    exchange, and a tool result whose call was quoted was in no section. All the way back is
    tried first; otherwise one quoted turn at a time, a repack each, hence the cap."""
    unit_of = {m.id: i for i, unit in enumerate(units[:oldest]) for m in unit}
    targets = sorted({unit_of[c.message.id] for c in chosen if c.message.id in unit_of},
                     reverse=True)

    def back_to(target: int) -> tuple[list[int], ContextMessage | None,
                                      list[ScoredMessage]] | None:
        moved = list(range(target, oldest))
        budget = space - sum(unit_cost[i] for i in moved)
        if budget < 0:
            return None
        shown = {m.id for i in moved for m in units[i]}
        block, kept = repack([c for c in fresh if c.message.id not in shown], budget)
        still = shown | {c.message.id for c in kept}
        return None if any(c.message.id not in still for c in chosen) else (moved, block, kept)

    whole = back_to(targets[-1]) if targets else None  # a short chat: one repack
    if whole is not None:
        return whole
    best = None
    for target in targets[:UNFLATTEN_TRIES]:
        step = back_to(target)
        if step is None:
            break
        best = step
    return best
