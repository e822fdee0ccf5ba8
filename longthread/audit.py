"""Replay: rebuild exactly the window the model saw at turn N, from the archive and ledger.

The workflow records every served context (turn, request, ledger position, retrieved ids and
scores, digest). Replay takes the archive's messages up to that turn, re-applies the ledger
records that were in force, re-fetches the retrieved originals and assembles the window again
with the same pure code; the digests must match.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from memory.assembly import Shares, assemble_context
from memory.audit import ServedContext, window_digest
from memory.compaction import CompactionPlan, WindowState, apply_compaction, undo_compaction
from memory.errors import NotFoundError
from memory.models import CompactionRecord, ContextWindow, Message, ScoredMessage
from memory.store.store import Store
from workflows.compactor import by_reference

__all__ = ["ReplayResult", "replay_at"]


class ReplayResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    served: ServedContext
    window: ContextWindow
    matches: bool


def _apply(state: WindowState, record: CompactionRecord, ledger: list[CompactionRecord],
           originals: dict[str, Message], order: dict[str, int]) -> WindowState:
    if record.trigger == "undo":
        target = next(r for r in ledger if r.id == record.undoes)
        restored = [originals[i] for i in target.covered_ids]
        return undo_compaction(state, target, restored, order)
    plan = CompactionPlan(level=record.level, action=record.action, reason=record.reason,
                          covered_ids=record.covered_ids, summarize=record.summary is not None,
                          summary_max_tokens=32, merge_summary_ids=record.removed_summary_ids,
                          tokens_before=record.tokens_before)
    window, _ = apply_compaction(state, plan, record_id=record.id, seq=record.seq,
                                 summary=record.summary, strategy=record.strategy)
    return window


async def replay_at(store: Store, tenant: str, session: str, turn: int) -> ReplayResult:
    served_docs = await store.served(tenant, session, at_turn=turn)
    if not served_docs:
        raise NotFoundError(f"turn: no context was served in {session!r} at or before turn {turn}")
    served = ServedContext.model_validate(served_docs[-1])
    messages = await store.all_messages(tenant, session)
    ledger = await store.ledger(tenant, session)
    order = {m.id: n for n, m in enumerate(messages)}
    originals = {m.id: by_reference(m) for m in messages}
    state = WindowState(messages=tuple(originals[m.id] for m in messages[: served.turn]))
    for record in ledger[: served.ledger_seq]:
        state = _apply(state, record, ledger, originals, order)
    by_id = {m.id: m for m in messages}
    retrieved = [ScoredMessage(message=by_id[i], score=score, session=session, seq=order[i])
                 for i, score in served.retrieved if i in by_id]
    window = assemble_context(
        max_tokens=served.max_tokens,
        system=[m for m in state.messages if m.role == "system"],
        summaries=state.summaries, recent=[m for m in state.messages if m.role != "system"],
        retrieved=retrieved, shares=Shares(*served.shares))
    matches = window_digest(window) == served.digest
    return ReplayResult(served=served, window=window, matches=matches)
