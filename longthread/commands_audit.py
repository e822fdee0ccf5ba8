"""The CLI commands that read what the archive says happened (`ledger`, `why`, `replay`,
`sessions`), and how `why` and the MCP tools find a message by the id a reader holds.

Apart from `longthread/commands.py` so that module stays readable; `Ctx` mixes them in.
"""

from __future__ import annotations

import json
import re

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from longthread.audit import TurnHistory, message_of, replay_at, why_at, why_of_id
from longthread.client import Conversation, Longthread, check_ids
from longthread.verify import verify_session
from longthread.views import (
    counted,
    ledger_table,
    print_window,
    search_json,
    search_table,
    sessions_table,
    visible,
    why_lines,
)
from memory.checks import MAX_TURN, check_id
from memory.errors import InvalidInputError, NotFoundError
from memory.models import Message
from memory.store.store import Store
from memory.store.tenant_search import TENANT_POSTINGS_CAP

__all__ = ["AuditCommands", "message_named", "turn_or_id", "why_of"]

_NUMBER = re.compile(r"[0-9]+")


def turn_or_id(text: str, by_id: bool = False) -> int | str:
    """The CLI's `why` argument: a number is a turn, anything else (or anything with
    `by_id`, for an id that is a number) a message id, whole or as a window shows its tail."""
    if by_id or not _NUMBER.fullmatch(text):
        return text
    turn = int(text)
    if not 1 <= turn <= MAX_TURN:
        raise InvalidInputError("turn", f"must be 1 to {MAX_TURN} (the N-th message stored), "
                                "or a message id")
    return turn


async def message_named(conv: Conversation, ident: str, field: str) -> tuple[int, Message]:
    """The one message `ident` names in the session (its whole id, or the tail a window shows
    for a long one: `Conversation.lookup`) and its seq; refused naming `field` otherwise."""
    check_id(field, ident)
    return message_of(await conv.lookup([ident]), ident, field, conv.session)


async def why_of(conv: Conversation, store: Store, target: int | str,
                 field: str = "turn") -> TurnHistory:
    """`why` for a turn number, or for a message by id: an auditor holds ids (from `show`,
    `search`, the ledger, a window's lines) as often as turns. Turn N is the N-th message
    stored (seq N-1, turns count from 1, as `replay --at` counts the messages a session
    held), so a message's turn is its seq + 1."""
    if isinstance(target, int):
        return await why_at(store, conv.tenant, conv.session, target)
    return await why_of_id(store, conv.tenant, conv.session, target, field)


class AuditCommands:
    """Mixed into `longthread.commands.Ctx`, which provides these."""

    out: Console
    lt: Longthread

    def need_store(self) -> Store:
        raise NotImplementedError

    async def existing(self, session: str, tenant: str) -> Conversation:
        raise NotImplementedError

    async def settled(self, session: str, tenant: str, strict: bool = False) -> Conversation:
        raise NotImplementedError

    async def ledger(self, session: str, tenant: str, as_json: bool) -> None:
        await self.settled(session, tenant)
        records = await self.need_store().ledger(tenant, session)
        if as_json:
            self.out.print_json(json.dumps([r.model_dump(mode="json") for r in records]))
        elif not records:
            self.out.print(f"no compactions yet in {session!r}: the window holds every message")
        else:
            self.out.print(ledger_table(records))

    async def why(self, session: str, tenant: str, target: str, as_json: bool,
                  by_id: bool = False) -> None:
        """`target` is a turn number or a message id (`turn_or_id`)."""
        turn = turn_or_id(target, by_id)
        conv = await self.settled(session, tenant)
        try:
            history = await why_of(conv, self.need_store(), turn, field="id")
        except NotFoundError as exc:  # a number that is no turn may be an id
            if isinstance(turn, str) or not str(exc).startswith("turn:"):
                raise
            raise NotFoundError(f"{exc}; to read {target!r} as a message id, pass --id") \
                from None
        if as_json:
            self.out.print_json(history.model_dump_json())
            return
        for line in why_lines(history):
            self.out.print(line, markup=False, highlight=False)

    async def replay(self, session: str, tenant: str, turn: int, as_json: bool,
                     seq: int | None = None) -> bool:
        await self.settled(session, tenant)
        result = await replay_at(self.need_store(), tenant, session, turn, seq=seq)
        if as_json:
            self.out.print_json(result.model_dump_json())
        else:
            served = result.served
            newest = (f", the newest at or before turn {turn}"
                      if seq is None and served.turn < turn else "")
            self.out.print(f"context {served.seq} served after turn {served.turn}{newest} "
                           f"(query {visible(repr(served.query))}, "
                           f"max_tokens {served.max_tokens}, {served.ledger_seq} ledger records "
                           "in force), rebuilt from the archive and the ledger:", markup=False,
                           highlight=False)
            others = [s for s in result.served_at_turn if s != served.seq]
            if others:
                listed = ", ".join(map(str, others[:20])) + (", …" if len(others) > 20 else "")
                self.out.print(f"[yellow]{len(result.served_at_turn)} contexts were served "
                               f"after turn {served.turn}[/yellow]; the others are {listed}: "
                               "replay one with --seq N")
            print_window(self.out, result.window)
            verdict = "[green]MATCHES[/green]" if result.matches else "[red]DIFFERS[/red]"
            self.out.print(f"{verdict} what was served (sha256 {served.digest[:16]}…)")
        return result.matches

    async def verify(self, session: str, tenant: str, as_json: bool, served: bool) -> bool:
        """`longthread.verify` from the store alone (no workflow need run): True when every
        message, record and served context checks out."""
        check_ids(tenant, session)
        with Progress(TextColumn("replaying served contexts"), BarColumn(),
                      MofNCompleteColumn(), console=self.out, transient=True,
                      disable=as_json) as bar:
            task = bar.add_task("served", total=None)
            report = await verify_session(
                self.need_store(), tenant, session, served=served,
                progress=lambda done, total: bar.update(task, completed=done, total=total))
        if as_json:
            self.out.print_json(report.model_dump_json())
            return report.ok
        checked = (f"{counted(report.messages, 'message')}, "
                   f"{counted(report.records, 'ledger record')}"
                   + (f", {counted(report.served, 'served context')}" if served else
                      " (served contexts not replayed)"))
        if report.undigested:
            checked += (f" ({counted(report.undigested, 'message')} stored before digests "
                        "were kept: checked by the records covering them only)")
        if report.ok:
            self.out.print(f"[green]verified[/green] {checked} of {session!r}: each matches "
                           "the digest or hash stored with it")
            return True
        for finding in report.findings:
            self.out.print(f"[red]{finding.kind} {visible(finding.ident)}[/red]: "
                           f"{finding.problem}", highlight=False)
        self.out.print(f"[red]{counted(len(report.findings), 'problem')}[/red] in {checked} "
                       f"of {session!r}")
        return False

    async def sessions(self, tenant: str, as_json: bool = False) -> None:
        """`--json`: one object per session, its fields those of `SessionInfo` (times in ISO
        8601, null when the messages carry none), as `ledger --json` lists records."""
        check_ids(tenant, "x")
        found = await self.need_store().sessions(tenant)
        if as_json:
            self.out.print_json(json.dumps([s.model_dump(mode="json") for s in found]))
        else:
            self.out.print(sessions_table(tenant, found))

    async def search(self, query: str, tenant: str, session: str | None, k: int,
                     as_json: bool) -> None:
        """Across the tenant's sessions (lexical), or in one session (hybrid)."""
        if session is None:
            hits = await self.lt.search(query, tenant, k)
        else:
            hits = await (await self.existing(session, tenant)).search(query, k)
        if as_json:
            self.out.print_json(json.dumps(search_json(hits)))
        elif not hits:  # say why it may be empty: BM25 leaves the commonest words out
            # Said as the rule, not as the cause: the cause is most often that nothing matches.
            self.out.print(f"no message of tenant {tenant!r} matches {query!r} (a word in "
                           f"{TENANT_POSTINGS_CAP:,} or more of its messages is left out of "
                           "the search, like a stop word)"
                           if session is None else f"no message matches {query!r}")
        else:
            self.out.print(search_table(query, hits))
