"""The activities that change the window by a ledger record other than a compaction: undo
(with the later records that took its summary, `with_later`), pop and clear, and the
re-application of an exported ledger to an imported copy; and the commit path every ledger
record takes, compactions included.

A base class of `ConversationActivities` (which sets `store`), kept apart so the compaction
module stays about compaction. Each activity is idempotent by the ledger head it was asked at:
run again after it committed, it answers with what it committed (`_already`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import specs
from activities.running import refused
from activities.types import (
    CompactOutcome,
    EditWindowInput,
    RestoreLedgerInput,
    SessionRef,
    UncompactSessionInput,
)
from memory.audit import CoveredHashes
from memory.compaction import apply_record
from memory.errors import InvalidInputError, LedgerConflictError
from memory.models import CompactionRecord, Message
from memory.store.sessions import LoadedWindow
from memory.store.store import Store
from memory.undo import compose_undos, undo_targets
from memory.window import by_reference, compose_removal

__all__ = ["EditActivities", "now"]


def now() -> datetime:
    return datetime.now(UTC)


class EditActivities:
    """Undo, pop/clear and ledger restore, and the commit path; `ConversationActivities`
    sets `store`."""

    store: Store

    async def _already(self, ref: SessionRef, loaded: LoadedWindow,
                       expected: int) -> CompactOutcome:
        """The head moved past `expected`: an earlier attempt of this activity committed."""
        if loaded.version < expected:
            raise ApplicationError(f"ledger is at {loaded.version}, not {expected}",
                                   type="LedgerConflictError", non_retryable=True)
        records = await self.store.ledger(ref.tenant, ref.session, start=expected,
                                          stop=loaded.version)
        return CompactOutcome(record_ids=tuple(r.id for r in records),
                              cursors=await self.store.cursors(ref.tenant, ref.session))

    async def _commit(self, ref: SessionRef, head: int,
                      steps: list[tuple[CompactionRecord, Any]], next_base: int
                      ) -> CompactOutcome:
        try:
            out = await self.store.commit_records(ref.tenant, ref.session, head, steps,
                                                  next_base)
        except LedgerConflictError as exc:
            raise ApplicationError(str(exc), type="LedgerConflictError",
                                   non_retryable=True) from None
        except InvalidInputError as exc:  # a forged import: a summary id with another body
            raise refused(exc) from None
        first, last = out.records[0], out.records[-1]
        return CompactOutcome(record_ids=tuple(r.id for r in out.records),
                              tokens_before=first.tokens_before, tokens_after=last.tokens_after,
                              cursors=out.cursors)

    async def _originals(self, ref: SessionRef, ids: tuple[str, ...]
                         ) -> tuple[dict[str, Message], dict[str, int]]:
        found = await self.store.get_with_seq(ref.tenant, ref.session, ids)
        return ({m.id: by_reference(m) for _, m in found}, {m.id: seq for seq, m in found})

    @activity.defn(name=specs.UNCOMPACT.name)
    async def uncompact_session(self, input: UncompactSessionInput) -> CompactOutcome:
        loaded = await self.store.load_window(input.tenant, input.session)
        if loaded.version != input.expected_head:
            return await self._already(input, loaded, input.expected_head)
        ledger = await self.store.ledger(input.tenant, input.session)
        targets = undo_targets(input.record_id, ledger, loaded.state, input.with_later)
        covered = tuple(i for r in ledger if r.id in targets and r.trigger != "undo"
                        for i in r.covered_ids)
        originals, order = await self._originals(input, covered)
        try:
            steps = compose_undos(
                loaded.state, targets, ledger, seq=loaded.version, originals=originals,
                order={**loaded.order, **order}, at=now(), actor=input.actor)
        except InvalidInputError as exc:
            raise refused(exc) from None
        return await self._commit(input, loaded.version,
                                  [(record, window) for window, record in steps],
                                  loaded.next_base)

    @activity.defn(name=specs.EDIT_WINDOW.name)
    async def edit_window(self, input: EditWindowInput) -> CompactOutcome:
        """Pop the newest message (with its tool unit) or clear the window, as a ledger record:
        the originals stay archived and the record can be undone."""
        loaded = await self.store.load_window(input.tenant, input.session)
        if loaded.version != input.expected_head:
            return await self._already(input, loaded, input.expected_head)
        made = compose_removal(loaded.state, input.kind, seq=loaded.version, at=now(),
                               actor=input.actor)
        if made is None:
            return CompactOutcome(cursors=await self.store.cursors(input.tenant, input.session))
        window, record = made
        return await self._commit(input, loaded.version, [(record, window)], loaded.next_base)

    @activity.defn(name=specs.RESTORE_LEDGER.name)
    async def restore_ledger(self, input: RestoreLedgerInput) -> CompactOutcome:
        """Re-apply an exported ledger to an imported copy, all or nothing: each record must
        match the imported originals (same covered ids in the window, same covered hash, with
        times in whichever zone the exporting database read them)."""
        loaded = await self.store.load_window(input.tenant, input.session)
        if loaded.version != input.expected_head:
            return await self._already(input, loaded, input.expected_head)
        named = {i for r in input.records for i in (r.id, r.undoes) if i}
        known = {r.id: r for r in await self.store.ledger(input.tenant, input.session,
                                                          ids=named)}
        state, steps = loaded.state, []
        order = dict(loaded.order)
        hashes = CoveredHashes()  # taken in the exporting database's time zone
        try:
            for n, record in enumerate(input.records):
                where = f"records[{n}]"
                if record.seq != loaded.version + n:
                    raise InvalidInputError(f"{where}.seq", f"expected {loaded.version + n}, "
                                                            f"got {record.seq}")
                if record.id in known:
                    raise InvalidInputError(f"{where}.id", f"{record.id!r} is already in the "
                                                           "ledger")
                if record.trigger == "undo":
                    if record.undoes not in known:
                        raise InvalidInputError(f"{where}.undoes", f"{record.undoes!r} names no "
                                                                   "earlier record")
                    originals, seqs = await self._originals(input, record.covered_ids)
                    order.update(seqs)
                    state = apply_record(state, record, originals=originals, order=order)
                else:
                    in_window = {m.id: m for m in state.messages}
                    missing = [i for i in record.covered_ids if i not in in_window]
                    if missing:
                        raise InvalidInputError(f"{where}.covered_ids", f"{missing[0]!r} is not "
                                                                        "in the window")
                    # In a thread: a mismatch tries some 600 zones (about 1 s for 200
                    # messages), which would stall this worker's other activities.
                    if not await asyncio.to_thread(
                            hashes.match, [in_window[i] for i in record.covered_ids],
                            record.covered_hash):
                        raise InvalidInputError(f"{where}.covered_hash", "the covered messages "
                                                "differ from the imported originals")
                    state = apply_record(state, record)
                known[record.id] = record
                steps.append((record, state))
        except InvalidInputError as exc:
            raise refused(exc) from None
        if not steps:
            return CompactOutcome(cursors=await self.store.cursors(input.tenant, input.session))
        return await self._commit(input, loaded.version, steps, loaded.next_base)
