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
    from activities.types import CompactSessionInput, EmbedInput, StoreMessagesInput
    from memory.models import Cursors, Message
    from workflows.activities import call
    from workflows.types import (
        AppendResult,
        CompactOutcome,
        ConversationInput,
        ConversationState,
    )
    from workflows.updates import as_update_error

__all__ = ["EMBED_BATCH", "MAX_AUTO_ROUNDS", "UPDATES_BEFORE_CONTINUE", "ConversationCore"]

UPDATES_BEFORE_CONTINUE = 1000  # well before Temporal's ~2,000 updates per run
EMBED_BATCH = 512  # messages per embedding activity
MAX_AUTO_ROUNDS = 32


class ConversationCore:
    """The workflow's cursors, background loops and writes; ConversationWorkflow sets every
    attribute below in its `@workflow.init`."""

    input: ConversationInput
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
            self.state = self.state.model_copy(update={
                "next_seq": cursors.next_seq, "ledger_head": cursors.ledger_head,
                "window_tokens": cursors.window_tokens, "total_tokens": cursors.total_tokens,
                "rev": cursors.rev})

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
            stop = min(self.state.next_seq, self.state.embedded_seq + EMBED_BATCH)
            done = await call(specs.EMBED, EmbedInput(tenant=self.input.tenant,
                                                      session=self.input.session,
                                                      start=self.state.embedded_seq, stop=stop))
            # A pass is time-bounded and may stop short; it always moves forward.
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
            self.changing = True
            try:
                outcome = await call(spec, make(self.state.ledger_head))
            finally:
                self.changing = False
            self._adopt(outcome.cursors)
            return outcome

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
        update = workflow.current_update_info()
        try:
            result = await call(specs.STORE_MESSAGES, StoreMessagesInput(
                tenant=self.input.tenant, session=self.input.session, messages=messages,
                restamped=restamped, request=f"{update.id}{part}" if update else None))
        except ActivityError as exc:
            raise as_update_error(exc) from None
        finally:
            self.appending -= 1
        self._adopt(result.cursors)
        self.check_policy = self.check_policy or self._over_policy()
        self.state.last_active = workflow.now()
        return result
