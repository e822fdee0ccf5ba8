"""`verify` on the real stack: a session's messages, ledger and served contexts check out, and
an edit made behind the application's back is named where it shows (session 30's auditor test:
an owner's UPDATE of one message went unnoticed by `show`, `why` and `export`)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg.rows import DictRow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.providers.embedders import LocalEmbedder
from longthread.client import Longthread
from longthread.settings import Settings
from longthread.verify import verify_session
from memory.errors import NotFoundError
from memory.policy import CompactionPolicy
from memory.store.store import Store
from tests.workflows.test_compaction import _turns


async def _served(store: Store, session: str, count: int) -> None:
    """Served contexts are recorded in the background: wait for them."""
    async with asyncio.timeout(30):
        while len(await store.served("acme", session)) < count:
            await asyncio.sleep(0.2)


async def test_verify_names_an_edited_message_its_record_and_the_window_that_showed_it(
    client: Client, task_queue: str, store: Store, embedder: LocalEmbedder, worker: Worker,
    db: psycopg.AsyncConnection[DictRow],
) -> None:
    lt = Longthread(client, Settings(task_queue=task_queue),
                    CompactionPolicy(context_window=100_000, preserve_recent=4,
                                     hierarchy_fanout=2), store=store, embedder=embedder)
    conv = await lt.conversation("audited", tenant="acme")
    # jsonb gives a float of 1e16 or more back as an integer: not an edit.
    await conv.append({"id": "meta", "role": "user", "content": "Timed.",
                       "metadata": {"ns": 1.7e18, "nested": [{"big": -2.5e20}]}})
    await conv.append_many(_turns(10))
    await conv.context(query="refund", max_tokens=2_000)  # shows m4 verbatim
    for round_ in range(3):  # the third compaction merges the first two summaries
        await conv.append_many(_turns(6, f"r{round_}-"))
        assert await conv.compact(preserve_recent=4) is not None
    ledger = await conv.ledger()
    folded = next(r for r in ledger if r.summary is not None and "m4" in r.covered_ids)
    await conv.uncompact(folded.id, with_later=True)  # undo records check against targets
    await conv.context(max_tokens=2_000)
    await _served(store, "audited", 2)

    report = await verify_session(store, "acme", "audited")
    assert report.ok, report.findings
    assert (report.messages, report.records, report.served) == (29, len(ledger) + 2, 2)

    await db.execute("UPDATE messages SET content = replace(content, 'refund', 'REFUND') "
                     "WHERE tenant = 'acme' AND session = 'audited' AND id = 'm4'")
    report = await verify_session(store, "acme", "audited")
    named = {(f.kind, f.ident): f.problem for f in report.findings}
    assert "turn 6" in named["message", "m4"]
    assert "(changed: m4)" in named["record", folded.id]
    first = min(int(s["seq"]) for s in await store.served("acme", "audited"))
    assert ("served", str(first)) in named  # the window that quoted m4 no longer rebuilds
    assert not any(f.ident.startswith("r") for f in report.findings if f.kind == "message")
    quick = await verify_session(store, "acme", "audited", served=False)
    assert quick.served == 0 and {f.kind for f in quick.findings} == {"message", "record"}
    # A message stored before digests were kept is counted, not flagged; a deleted row is
    # named by the turn after the gap.
    await db.execute("UPDATE messages SET digest = NULL WHERE tenant = 'acme' AND "
                     "session = 'audited' AND id = 'meta'")
    await db.execute("DELETE FROM messages WHERE tenant = 'acme' AND session = 'audited' AND "
                     "id = 'r1-2'")
    report = await verify_session(store, "acme", "audited")
    named = {(f.kind, f.ident): f.problem for f in report.findings}
    assert report.undigested == 1 and ("message", "meta") not in named
    assert named["message", "r1-3"] == ("turn 21: the archive holds no message at turn 20 "
                                        "before it")
    assert "'r1-2', which is not in the window" in " ".join(named.values())  # its record
    with pytest.raises(NotFoundError, match="no session 'audited' for tenant 'bank-b'"):
        await verify_session(store, "bank-b", "audited")  # another tenant sees nothing
