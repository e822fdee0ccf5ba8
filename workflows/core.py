"""What ConversationWorkflow's run loop and update handlers share, below the handlers.

The carried cursors (how they are adopted from the store, when the policy asks for compaction,
when a run should continue as new), the two background loops (embedding, automatic
compaction) and the two ways the workflow writes (storing a batch, changing the window under
one lock). They are a base class of the workflow, not a separate object, so they read and set
the same attributes the handlers and the `stats` query do and every command is issued exactly
as before; the workflow module keeps the workflow's surface (its run method, updates, signal
and query). Workflow code: deterministic, every effect goes through the SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities import specs
    from activities.specs import ActivitySpec
    from activities.types import CompactSessionInput, EmbedInput, SessionRef, StoreMessagesInput
    from memory.models import Cursors, Message
    from workflows.activities import call
    from workflows.types import (
        AppendResult,
        CompactOutcome,
        ConversationInput,
        ConversationState,
    )
    from workflows.updates import as_update_error

__all__ = ["EMBED_BATCH", "MAX_AUTO_ROUNDS", "RESYNC_PATCH", "UPDATES_BEFORE_CONTINUE",
           "ConversationCore"]

UPDATES_BEFORE_CONTINUE = 1000  # well before Temporal's ~2,000 updates per run
EMBED_BATCH = 512  # messages per embedding activity
MAX_AUTO_ROUNDS = 32
# Runs recorded before the archive could be found behind a run's cursors took no fresh reading
# on a ledger conflict; `workflow.patched` keeps their replay as made.
RESYNC_PATCH = "resync-behind-archive"


def _positions(cursors: Cursors) -> dict[str, int]:
    """What a run takes from a store reading; the embedding cursor is the run's own."""
    return {"next_seq": cursors.next_seq, "ledger_head": cursors.ledger_head,
            "window_tokens": cursors.window_tokens, "total_tokens": cursors.total_tokens,
            "rev": cursors.rev}


class ConversationCore:
    """The workflow's cursors, background loops and writes; ConversationWorkflow sets every
    attribute below in its `@workflow.init`."""

    input: ConversationInput
    ref: SessionRef
    state: ConversationState
    ready: bool
    refused: ApplicationError | None
    closed: bool
    stopping: bool
    check_policy: bool
    changing: bool
    appending: int
    window_lock: asyncio.Lock
    updates: int
    resyncs = 0  # how many times this run took the archive's cursors (`_resync`)

    async def _opened(self) -> None:
        """Wait until the run has read its cursors; if the store refused to open the session
        (it was erased), fail the update with that refusal."""
        await workflow.wait_condition(lambda: self.ready or self.refused is not None)
        if self.refused is not None:
            raise ApplicationError(self.refused.message, type=self.refused.type,
                                   non_retryable=True)

    # -- cursors ----------------------------------------------------------------------------
    def _continue_due(self) -> bool:
        return (workflow.info().is_continue_as_new_suggested()
                or self.updates >= UPDATES_BEFORE_CONTINUE)

    def _over_policy(self) -> bool:
        return (not self.state.hold_compaction
                and self.input.policy.should_compact(self.state.window_tokens))

    def _adopt(self, cursors: Cursors) -> None:
        """Take the store's cursors if they are newer than ours (rev orders readings)."""
        if cursors.rev >= self.state.rev:
            self.state = self.state.model_copy(update=_positions(cursors))

    def _take(self, cursors: Cursors, sent_rev: int, wrote: bool) -> None:
        """Adopt a write's reading, or resync to it if the archive went back in time. A write
        that began after this run had seen rev `sent_rev` reads a rev above it (`wrote`: every
        append and every commit adds one) or at least equal (a change that found nothing to
        do), unless the archive was restored from an older copy (a backup, a failover that
        lost commits, even one). Adopting by rev alone kept the run's newer cursors then:
        compaction was refused against a ledger head the archive no longer had, and restored
        messages past the run's embedding cursor were never embedded. Only while the run
        still holds cursors that new: after a resync, an older reading of a write sent before
        it is ordered by rev as ever."""
        behind = cursors.rev <= sent_rev if wrote else cursors.rev < sent_rev
        if behind and self.state.rev >= sent_rev and workflow.patched(RESYNC_PATCH):
            self._resync(cursors)
        else:
            self._adopt(cursors)

    def _resync(self, cursors: Cursors) -> None:
        """Take the archive's cursors whatever their rev, and embed again from the first
        message it holds unembedded."""
        workflow.logger.warning(
            f"the archive is behind this session's cursors (rev {cursors.rev} < "
            f"{self.state.rev}, ledger head {cursors.ledger_head} vs {self.state.ledger_head}, "
            f"{cursors.next_seq} messages vs {self.state.next_seq}): it was restored from an "
            "older copy; continuing from the archive's")
        self.state = self.state.model_copy(update={
            **_positions(cursors),
            "embedded_seq": min(self.state.embedded_seq, cursors.embedded_seq)})
        self.resyncs += 1

    # -- background work --------------------------------------------------------------------
    async def _embed_loop(self) -> None:
        """Embed what is stored, in order, a batch at a time; the lexical leg of retrieval
        finds messages before this reaches them."""
        while True:
            await workflow.wait_condition(
                lambda: self.stopping or self.state.embedded_seq < self.state.next_seq)
            behind = self.state.embedded_seq < self.state.next_seq
            if self.stopping and not (self.closed and behind):
                return
            start, resyncs = self.state.embedded_seq, self.resyncs
            stop = min(self.state.next_seq, start + EMBED_BATCH)
            done = await call(specs.EMBED, EmbedInput(tenant=self.input.tenant,
                                                      session=self.input.session,
                                                      start=start, stop=stop))
            # A pass is time-bounded and may stop short; it always moves forward, unless a
            # resync moved the cursor back meanwhile (`_resync`).
            if self.resyncs == resyncs:
                self.state.embedded_seq = stop if done.reached is None else done.reached

    async def _auto_compact(self) -> None:
        """Compact while the policy asks and each round helps; give way to continue-as-new
        (the next run carries on from the cursors)."""
        for _ in range(MAX_AUTO_ROUNDS):
            if not self._over_policy() or self._continue_due() or self.closed:
                return
            outcome = await self._change(specs.COMPACT, lambda head: CompactSessionInput(
                tenant=self.input.tenant, session=self.input.session, expected_head=head,
                policy=self.input.policy, trigger="auto"))
            if not outcome.record_ids or outcome.tokens_after >= outcome.tokens_before:
                return

    # -- writes -----------------------------------------------------------------------------
    async def _change(self, spec: ActivitySpec[CompactOutcome],
                      make: Callable[[int], BaseModel]) -> CompactOutcome:
        """One window change at a time, planned on the ledger head it will commit against."""
        async with self.window_lock:
            sent = self.state.rev
            self.changing = True
            try:
                try:
                    outcome = await call(spec, make(self.state.ledger_head))
                except ActivityError as exc:
                    if not await self._restored(exc, sent):
                        raise
                    sent = self.state.rev
                    outcome = await call(spec, make(self.state.ledger_head))
            finally:
                self.changing = False
            self._take(outcome.cursors, sent, wrote=bool(outcome.record_ids))
            return outcome

    async def _restored(self, exc: ActivityError, sent_rev: int) -> bool:
        """Whether a ledger conflict came from an archive restored behind this run (it holds
        a shorter ledger than the head the change was planned on): then resync, so the change
        can be planned again on the archive's head. Any other conflict stays an error."""
        cause = exc.cause
        if not (isinstance(cause, ApplicationError) and cause.type == "LedgerConflictError"
                and workflow.patched(RESYNC_PATCH)):
            return False
        fresh = await call(specs.OPEN_SESSION, self.ref)
        if fresh.rev >= sent_rev:
            return False
        self._resync(fresh)
        return True

    async def _manual(self, spec: ActivitySpec[CompactOutcome],
                      make: Callable[[int], BaseModel]) -> CompactOutcome:
        self.updates += 1
        await self._opened()
        try:
            return await self._change(spec, make)
        except ActivityError as exc:
            raise as_update_error(exc) from None

    async def _store(self, messages: tuple[Message, ...], hold: bool = False,
                     restamped: bool = False, part: str = "") -> AppendResult:
        """Store through a local activity named by the update's id (and `part`, for an update
        that stores twice): run again after a lost workflow task, it reports what it stored
        the first time."""
        self.state.hold_compaction = hold
        self.appending += 1
        sent = self.state.rev
        update = workflow.current_update_info()
        try:
            result = await call(specs.STORE_MESSAGES, StoreMessagesInput(
                tenant=self.input.tenant, session=self.input.session, messages=messages,
                restamped=restamped, request=f"{update.id}{part}" if update else None))
        except ActivityError as exc:
            raise as_update_error(exc) from None
        finally:
            self.appending -= 1
        self._take(result.cursors, sent, wrote=True)
        self.check_policy = self.check_policy or self._over_policy()
        self.state.last_active = workflow.now()
        return result
