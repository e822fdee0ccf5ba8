"""What the CLI commands do, as plain async functions over the client and the store."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from longthread.cli_errors import undo_of_undo, unsettled
from longthread.client import NO_ARCHIVE, Conversation, Longthread, check_ids
from longthread.commands_audit import AuditCommands
from longthread.replies import described
from longthread.settings import acting_for, resolve_settings
from longthread.sizes import MAX_BATCH_BYTES
from longthread.transfer import (
    SessionFile,
    at_line,
    check_writable,
    ledger_left,
    message_parts,
    read_session_file,
    write_export,
)
from longthread.verify import ledger_findings
from longthread.views import (
    counted,
    ledger_table,
    print_message,
    print_window,
)
from memory.audit import ServedContext
from memory.errors import InvalidInputError, LongthreadError, NotFoundError
from memory.messages import Message, as_jsonb, check_not_future
from memory.store.db import open_archive
from memory.store.store import Store
from memory.window import by_reference

__all__ = ["Ctx", "ImportPlan", "connected", "plan_import"]

SETTLE_SECONDS = 60.0


class ImportPlan(NamedTuple):
    """A file checked whole and split into append calls, before anything connects."""

    data: SessionFile
    parts: list[tuple[int, tuple[Message, ...]]]


def plan_import(path: Path, batch: int) -> ImportPlan:
    """Read and check a file to import, with no stack needed: the CLI does this before it
    connects, so a bad file is diagnosed without one (ut27)."""
    data = read_session_file(path)
    if not data.messages and not data.ledger and data.source is None:
        # not even an export's header (an empty session's export re-imports as one)
        raise InvalidInputError("FILE", "holds no messages")
    # Split (and refuse a message too large for any call, or dated after tomorrow, as the
    # store would refuse it) before the session exists, so nothing is half imported.
    parts = message_parts(data.messages, data.lines, batch, MAX_BATCH_BYTES)
    try:
        check_not_future(data.messages, datetime.now(UTC))
    except InvalidInputError as exc:
        raise at_line(exc, data.lines, 0) from None
    check_file_ledger(data)
    return ImportPlan(data, parts)


def check_file_ledger(data: SessionFile) -> None:
    """Refuse a file whose ledger does not apply to its own messages before anything is
    stored. The worker checks each record again when it restores them; before this, a file
    with one edited message was refused only then, with every message stored, and the
    half-imported session went on to compact itself (session 30's auditor test). Times are
    read in whatever zone the records' hashes were taken in (`ledger_findings`)."""
    if not data.ledger:
        return
    as_stored = [m.model_copy(update={"metadata": as_jsonb(dict(m.metadata))})
                 for m in data.messages]  # as the worker will read them back
    findings = ledger_findings([by_reference(m) for m in as_stored], data.ledger)
    if findings:
        index = next(n for n, r in enumerate(data.ledger) if r.id == findings[0].ident)
        raise InvalidInputError(f"records[{index}]", f"ledger record {findings[0].ident!r}: "
                                f"{findings[0].problem}; nothing was imported")


class Ctx(AuditCommands):
    """One command's connections (the client, and the archive when it is reachable) and
    what each command does with them; the audit commands come from `AuditCommands`."""

    def __init__(self, lt: Longthread, store: Store | None, console: Console) -> None:
        self.lt = lt
        self.store = store
        self.out = console
        self.err = Console(stderr=True)

    def need_store(self) -> Store:
        if self.store is None:
            raise ConnectionError(NO_ARCHIVE)
        return self.store

    async def existing(self, session: str, tenant: str) -> Conversation:
        """A session that exists (running, or archived/checkpointed); never creates one."""
        conv, _ = await self._find(session, tenant)
        return conv

    async def settled(self, session: str, tenant: str, strict: bool = False) -> Conversation:
        """An existing session whose background archiving and audit writes are done, so what
        the store says (ledger, served contexts, export) is the whole story."""
        conv, running = await self._find(session, tenant)
        if running:
            started = time.monotonic()
            try:
                await conv.settle(timeout=SETTLE_SECONDS)
            except (RPCError, TimeoutError) as exc:  # say why, then show what is stored
                why = unsettled(session, exc, time.monotonic() - started, SETTLE_SECONDS,
                                self.lt.settings.task_queue)
                if strict:
                    raise LongthreadError(f"{why} Nothing was written.") from None
                self.err.print(f"[yellow]warning:[/yellow] {escape(why)} What follows is what "
                               "is stored, which may not have caught up yet.", highlight=False)
        return conv

    async def _find(self, session: str, tenant: str) -> tuple[Conversation, bool]:
        """The session and whether its workflow is running (an idle-closed session flushed
        everything before its run ended)."""
        check_ids(tenant, session)
        conv = Conversation(self.lt, session, tenant)
        run = await described(conv.handle)
        if run is not None:
            return conv, run.status == WorkflowExecutionStatus.RUNNING
        store = self.need_store()
        if await store.count(tenant, session):  # idle-closed, its data stored
            return conv, False
        raise await store.missing(tenant, session)

    # -- commands ---------------------------------------------------------------------------
    async def import_file(self, session: str, plan: ImportPlan, tenant: str) -> None:
        data, parts = plan
        conv = await self.lt.conversation(session, tenant)
        if data.ledger:  # a ledger of its own refuses the file's: say so before storing any of it
            ledger_left(await conv.ledger(), data.ledger)
        appended = duplicates = 0
        with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=self.out) as progress:
            task = progress.add_task("import", total=len(data.messages))
            for start, chunk in parts:
                try:
                    result = await conv.append_many(list(chunk),
                                                    hold_compaction=bool(data.ledger))
                except Exception as exc:  # the error follows; first say what is already stored
                    progress.stop()
                    held = ("; automatic compaction waits for the rest (or the next ordinary "
                            "append)" if start and data.ledger else "")
                    self.out.print(f"import stopped: messages 1-{start} of "
                                   f"{len(data.messages)} are stored; importing the file again "
                                   f"skips them{held}" if start else
                                   "import stopped: nothing stored")
                    if isinstance(exc, InvalidInputError):  # name the line, not messages[i]
                        raise at_line(exc, data.lines, start) from None
                    raise
                appended += result.appended
                duplicates += result.duplicates
                progress.advance(task, len(chunk))
        restored = 0
        if data.ledger:
            left = ledger_left(await conv.ledger(), data.ledger)
            if left:
                restored = await conv.restore_ledger(left)
        recorded = await self._record_served(tenant, session, data)
        self.out.print(f"{appended} appended, {duplicates} already present"
                       + (f", {counted(restored, 'ledger record')} restored" if restored else "")
                       + (f", {counted(recorded, 'served context')} recorded for replay"
                          if recorded else ""))

    async def _record_served(self, tenant: str, session: str, data: SessionFile) -> int:
        """The export's served contexts, so `replay` on the copy shows what the model saw in
        the original. They are numbered anew (seqs are the archive's). Importing the file
        again adds none: each one already recorded (same turn, request and window digest)
        is matched once, so two identical calls at one turn stay two."""
        if not data.served:
            return 0
        store = self.need_store()
        # A turn counts the session's messages: it means the same in the copy only when the
        # copy's first messages are the file's, in the file's order.
        placed = [seq for seq, _ in await store.get_with_seq(
            tenant, session, [m.id for m in data.messages])]
        if placed != list(range(len(data.messages))):
            self.out.print(f"[yellow]served contexts not recorded[/yellow]: {session!r} held "
                           "other messages before the file's, so its turns name other messages "
                           "than the export's; import into a new session to replay them")
            return 0

        def key(s: ServedContext) -> tuple[object, ...]:
            return (s.turn, s.query, s.max_tokens, s.ledger_seq, s.digest)

        known = Counter(key(ServedContext.model_validate(r))
                        for r in await store.served(tenant, session))
        recorded = 0
        for context in data.served:
            if known[key(context)]:
                known[key(context)] -= 1
                continue
            await store.record_served(tenant, session, context)
            recorded += 1
        return recorded

    async def context(self, session: str, tenant: str, query: str | None, max_tokens: int,
                      as_json: bool) -> None:
        conv = await self.existing(session, tenant)
        window = await conv.context(query, max_tokens)
        if as_json:
            self.out.print_json(window.model_dump_json())
        else:
            print_window(self.out, window)

    async def show(self, session: str, tenant: str, ids: list[str], as_json: bool) -> None:
        """Print the messages found, then name every id that is not (exit 2): one mistyped id
        among several should not hide the others. A long id may be given as the tail a window
        shows for it (`…9f02873d`); one that several ids end with is named as ambiguous."""
        conv = await self.existing(session, tenant)
        lookup = await conv.lookup(ids)
        found, missing = lookup.messages, lookup.missing
        if as_json:
            self.out.print_json(json.dumps([m.model_dump(mode="json") for m in found]))
        else:
            for n, message in enumerate(found):
                if n:
                    self.out.print()
                print_message(self.out, message)
        problems = [lookup.ambiguity(i) for i in lookup.ambiguous]
        if missing:
            named = ", ".join(map(repr, missing[:10])) + (
                f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
            problems.insert(0, f"no message{'s' if len(missing) > 1 else ''} {named} in "
                            f"session {session!r}")
        if problems:
            why = "; ".join(problems) + (f"; {len(found)} shown" if found else "")
            raise NotFoundError(f"ids: {why}") if missing else InvalidInputError("ids", why)

    async def compact(self, session: str, tenant: str, preserve_recent: int | None,
                      focus: str | None) -> None:
        conv = await self.existing(session, tenant)
        attempt = await conv.try_compact(preserve_recent, focus,
                                         actor=acting_for(self.lt.settings, "cli"))
        if attempt.record is not None:
            self.out.print(ledger_table([attempt.record]))
        else:
            self.out.print(attempt.nothing_because(preserve_recent, "--preserve-recent"))

    async def uncompact(self, session: str, tenant: str, record_id: str,
                        with_later: bool = False) -> None:
        conv = await self.existing(session, tenant)
        head = await self.store.ledger_length(tenant, session) \
            if with_later and self.store else None  # where its undo records will start
        try:
            record = await conv.uncompact(record_id, with_later=with_later,
                                          actor=acting_for(self.lt.settings, "cli"))
        except InvalidInputError as exc:  # "no compaction": maybe the id is an undo's
            if exc.field != "record_id" or self.store is None:
                raise
            why = undo_of_undo(record_id, await self.store.ledger(tenant, session,
                                                                 ids=[record_id]))
            if why is None:
                raise
            raise InvalidInputError("record_id", why) from None
        records = [record]
        if self.store is not None and head is not None:
            # Every undo this call made: one step, so they share the target's undo time; a
            # record another client or an automatic compaction committed meanwhile does not.
            records = [r for r in await self.store.ledger(tenant, session, start=head,
                                                          stop=record.seq + 1)
                       if r.trigger == "undo" and r.at == record.at]
        self.out.print(ledger_table(records))

    async def export(self, session: str, tenant: str, path: Path, force: bool) -> None:
        check_writable(path, force)
        await self.settled(session, tenant, strict=True)
        store = self.need_store()
        served = await store.served(tenant, session)
        count = write_export(path, tenant, session, await store.all_messages(tenant, session),
                             await store.ledger(tenant, session), served)
        self.out.print(f"exported {counted(count, 'message')}, the ledger and "
                       f"{counted(len(served), 'served context')} to {path}")


@asynccontextmanager
async def connected(console: Console, need_db: bool = False) -> AsyncIterator[Ctx]:
    settings = resolve_settings()
    lt = await Longthread.connect(settings)
    pool = None
    if settings.database_url:
        try:
            pool = await open_archive(settings.database_url, max_size=4, timeout=10)
        except ConnectionError:
            if need_db:
                raise
    store = Store(pool) if pool else None
    try:
        yield Ctx(Longthread(lt.client, settings, store=store), store, console)
    finally:
        if pool is not None:
            await pool.close()
