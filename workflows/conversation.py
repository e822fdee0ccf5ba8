"""ConversationWorkflow: one durable workflow per (tenant, session), holding cursors only.

Postgres holds the conversation. The workflow orders and retries every write to it: an append
stores its batch through a local activity before the update returns (one transaction, no
second workflow task); embedding follows in the background; compaction runs when the policy
asks, never waiting for the embedding backlog, and commits its ledger record and window version
in one transaction against the ledger head it was planned on. Planning, summarizing and
assembly run in activities, so improving them is not a determinism change. The state carried
through continue-as-new is a few cursors, whatever the session's length.

The cursors, the background loops and the writes the handlers share live in workflows/core.py
(the workflow's base class); this module is the workflow's surface: run, updates, signal, query.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import specs
    from activities.types import (
        ChatInput,
        CompactSessionInput,
        ContextRequest,
        EditWindowInput,
        RestoreLedgerInput,
        ServeContextInput,
        SessionRef,
        UncompactSessionInput,
    )
    from memory.messages import check_intake
    from memory.models import ContextWindow, Message
    from workflows.activities import call
    from workflows.core import UPDATES_BEFORE_CONTINUE, ConversationCore
    from workflows.types import (
        AppendInput,
        AppendResult,
        CompactInput,
        CompactOutcome,
        ConversationInput,
        ConversationState,
        ConversationStats,
        EditInput,
        GenerateInput,
        GenerateResult,
        RestoreInput,
        UncompactInput,
    )
    from workflows.updates import (
        BUILD_CONTEXT_RETRY,
        as_refusal,
        as_update_error,
        parse,
        refusal,
        refusing,
        workflow_id,
    )

__all__ = ["UPDATES_BEFORE_CONTINUE", "ConversationWorkflow", "workflow_id"]


def _ident(text: str) -> str:
    """An id part from an update or run id: as it is when it is short and plain, else hashed
    (an update id from a raw Temporal client may hold anything a message id may not)."""
    if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", text):
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@workflow.defn
class ConversationWorkflow(ConversationCore):
    @workflow.init
    def __init__(self, input: ConversationInput) -> None:
        self.input = input
        self.ref = SessionRef(tenant=input.tenant, session=input.session)
        self.state = input.state or ConversationState()
        self.ready = input.state is not None
        self.refused: ApplicationError | None = None  # the session may not be opened
        self.closed = False
        self.stopping = False  # continue-as-new or close is under way: background work pauses
        self.check_policy = False
        self.changing = False  # a compaction, undo or restore is in flight
        self.appending = 0
        self.window_lock = asyncio.Lock()
        self.updates = 0

    # -- the run loop -----------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ConversationInput) -> ConversationStats:
        if not self.ready:  # a new session, or one resuming after close: read the cursors
            try:
                cursors = await call(specs.OPEN_SESSION, self.ref)
            # An erased session: every update is refused with the store's reason, then the run
            # ends. (A local activity's refusal can arrive as the ApplicationError itself.)
            except (ActivityError, ApplicationError) as exc:
                self.refused = as_refusal(exc)
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self.stats()
            self.state.embedded_seq = cursors.embedded_seq
            self._adopt(cursors)
            self.ready = True
        self.check_policy = self._over_policy()
        embedding = asyncio.create_task(self._embed_loop())
        idle = timedelta(seconds=input.idle_timeout_seconds)
        idle_wait = idle
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self.closed or self.check_policy or self._continue_due(),
                    timeout=idle_wait)
                idle_wait = idle
            except TimeoutError:
                quiet = self._idle_left(idle)
                if quiet is not None and workflow.patched("idle-from-last-append"):
                    # An append reset nothing: the wait began before it. Idle is counted from
                    # the last append, so a session in use is never closed under its user.
                    idle_wait = quiet
                    continue
                # Formatted here: the SDK appends the workflow's details, whose id holds '%'
                # ('-' is escaped as %2D), to the message before logging formats it with args.
                workflow.logger.info(f"session idle for {idle}: closing")
                self.closed = True
            if self.check_policy and not self.closed:
                self.check_policy = False
                await self._auto_compact()
            if self.closed or self._continue_due():
                self.stopping = True
                await embedding  # on close it finishes the backlog first
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self.closed:
                    return self.stats()
                self.state.runs += 1
                workflow.continue_as_new(self.input.model_copy(update={"state": self.state}))

    def _idle_left(self, idle: timedelta) -> timedelta | None:
        """What is left of `idle` since the last append, or None when it has run out. An
        append still storing counts as activity now (its time is set once it has stored)."""
        if self.appending > 0:
            return idle
        last = self.state.last_active
        left = idle - (workflow.now() - last) if last is not None else None
        return left if left is not None and left > timedelta(0) else None

    # -- appending --------------------------------------------------------------------------
    @workflow.update
    async def attach(self, *args: Any) -> ConversationStats:
        """Pairs with update-with-start, to start or attach a session."""
        await self._opened()
        return self.stats()

    @attach.validator
    def _validate_attach(self, *args: Any) -> None:
        if args:
            raise refusal("attach", f"takes no argument, got {len(args)}")

    @workflow.update
    async def append_many(self, *args: Any) -> AppendResult:
        request = parse(AppendInput, args)
        self.updates += 1
        await self._opened()
        return await self._store(request.messages, request.hold_compaction)

    @append_many.validator
    def _validate_append(self, *args: Any) -> None:
        request = parse(AppendInput, args)
        if self.closed:
            raise refusal("session", "is closed")
        if not request.messages:
            raise refusal("messages", "must hold at least one message")
        for index, message in enumerate(request.messages):  # validators never run on replay
            with refusing(f"messages[{index}]"):
                check_intake(message)

    # -- compaction and generation ----------------------------------------------------------
    @workflow.update
    async def compact(self, *args: Any) -> CompactOutcome:
        request = parse(CompactInput, args)
        return await self._manual(specs.COMPACT, lambda head: CompactSessionInput(
            tenant=self.input.tenant, session=self.input.session, expected_head=head,
            policy=self.input.policy, trigger="manual", preserve_recent=request.preserve_recent,
            focus=request.focus, force=True, actor=request.actor))

    @compact.validator
    def _validate_compact(self, *args: Any) -> None:
        parse(CompactInput, args)

    @workflow.update
    async def uncompact(self, *args: Any) -> CompactOutcome:
        request = parse(UncompactInput, args)
        return await self._manual(specs.UNCOMPACT, lambda head: UncompactSessionInput(
            tenant=self.input.tenant, session=self.input.session, expected_head=head,
            record_id=request.record_id, with_later=request.with_later, actor=request.actor))

    @uncompact.validator
    def _validate_uncompact(self, *args: Any) -> None:
        parse(UncompactInput, args)

    @workflow.update
    async def edit_window(self, *args: Any) -> CompactOutcome:
        request = parse(EditInput, args)
        return await self._manual(specs.EDIT_WINDOW, lambda head: EditWindowInput(
            tenant=self.input.tenant, session=self.input.session, expected_head=head,
            kind=request.kind, actor=request.actor))

    @edit_window.validator
    def _validate_edit(self, *args: Any) -> None:
        parse(EditInput, args)

    @workflow.update
    async def restore_ledger(self, *args: Any) -> CompactOutcome:
        request = parse(RestoreInput, args)
        holding = restored = False
        try:
            outcome = await self._manual(specs.RESTORE_LEDGER, lambda head: RestoreLedgerInput(
                tenant=self.input.tenant, session=self.input.session, expected_head=head,
                records=request.records))
            holding = request.more  # a refused part ends the import: compaction resumes
            restored = True
            return outcome
        finally:
            # A restored ledger leaves the window as the original's was, and its next
            # compaction waits for the next ordinary append (or a run after it), as the
            # original's does: held in the state, so a continue-as-new does not compact it
            # either. An auditor's copy of a session over its policy (after an undo)
            # compacted at once, and its ledger and `why` differed from the original's.
            if restored and not holding and workflow.patched("restore-waits-for-append"):
                self.state.hold_compaction = True
            elif not holding:
                self.state.hold_compaction = False
                self.check_policy = self._over_policy()

    @restore_ledger.validator
    def _validate_restore(self, *args: Any) -> None:
        parse(RestoreInput, args)

    @staticmethod
    def _user_message(request: GenerateInput, ident: str) -> Message:
        """generate()'s user message; bad content, id or name is refused naming the field."""
        with refusing():
            return Message(id=request.id or ident, role="user", content=request.content,
                           name=request.name)

    @workflow.update
    async def generate(self, *args: Any) -> GenerateResult:
        request = parse(GenerateInput, args)
        self.updates += 1
        await self._opened()
        if workflow.patched("generate-chat-ready"):  # histories from before replay as made
            try:  # no chat model on this worker: refused before anything is stored
                await call(specs.CHAT_READY, self.ref)
            except ActivityError as exc:
                raise as_update_error(exc) from None
        # Ids made from the update's own id, not `workflow.uuid4()`: a workflow task run again
        # with other updates in it draws the random ids in another order, and one question's
        # id went to another's turn, refused as "already appended with other content". The
        # reply's id also names the run: a client retrying the update in a later run (its
        # answer was lost) gets the model's new answer stored beside the first, as documented.
        update = workflow.current_update_info()
        turn_id = _ident(update.id if update else str(workflow.uuid4()))
        reply_id = _ident(f"{workflow.info().run_id}/{turn_id}")
        user = self._user_message(request, f"u-{turn_id}").model_copy(
            update={"created_at": workflow.now()})
        # Both turns are stamped with the workflow task's time, which is later when the task
        # runs again: stored as re-stamped copies, they are the same turns, not conflicts; with
        # the caller's id, a retry (the provider was down) stores no second copy.
        await self._store((user,), restamped=True, part="/turn")
        try:
            window: ContextWindow = await workflow.execute_activity(
                specs.BUILD_CONTEXT.name, ServeContextInput(
                    tenant=self.input.tenant, session=self.input.session,
                    request=ContextRequest(query=request.content,
                                           max_tokens=request.max_tokens)),
                result_type=ContextWindow, start_to_close_timeout=specs.BUILD_CONTEXT.timeout,
                retry_policy=BUILD_CONTEXT_RETRY)
            reply = await call(specs.COMPLETE_CHAT,
                               ChatInput(window=window, max_tokens=request.reply_tokens))
        except ActivityError as exc:
            raise as_update_error(exc) from None
        # A model's reply is stored as it came, except what Postgres cannot hold (NUL, lone
        # surrogates); it must never fail the workflow task (`refusing` fails the update). A
        # blank reply never gets here: the chat activity refuses it.
        text = reply.content.replace("\x00", "\ufffd").encode("utf-8", "replace").decode()
        with refusing("reply"):
            assistant = Message(id=f"a-{reply_id}", role="assistant", content=text,
                                created_at=workflow.now())
        await self._store((assistant,), restamped=True, part="/reply")
        return GenerateResult(reply=assistant, context_tokens=window.tokens, model=reply.model)

    @generate.validator
    def _validate_generate(self, *args: Any) -> None:
        message = self._user_message(parse(GenerateInput, args), "u-validating")
        with refusing():
            check_intake(message)

    # -- reading ----------------------------------------------------------------------------
    @workflow.query
    def stats(self) -> ConversationStats:
        s = self.state
        return ConversationStats(
            tenant=self.input.tenant, session=self.input.session, messages=s.next_seq,
            embedded=s.embedded_seq, ledger_head=s.ledger_head, window_tokens=s.window_tokens,
            total_tokens=s.total_tokens, runs=s.runs,
            pending_embedding=s.next_seq - s.embedded_seq,
            busy=self.changing or self.check_policy or self.appending > 0
            or s.embedded_seq < s.next_seq, closing=self.closed)

    @workflow.signal
    def close(self, *args: Any) -> None:
        """Finish embedding and end the run. It takes no argument; one sent anyway is ignored
        (a signal cannot be refused, and raising here would fail the workflow task)."""
        self.closed = True
