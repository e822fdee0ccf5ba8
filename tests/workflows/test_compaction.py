"""Auto and manual compaction, undo, large bodies and idle sessions on the real dev server."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.providers.embedders import LocalEmbedder
from longthread.client import Longthread
from longthread.settings import Settings
from longthread.transfer import ledger_parts
from memory.errors import InvalidInputError
from memory.models import CompactionEvent
from memory.policy import CompactionPolicy
from memory.store.store import Store
from tests.conftest import LtFactory

LINES = [
    "My order 4711 has not arrived since May 3.",
    "Sorry! Which address did you use for the order?",
    "It was shipped to 12 Baker Street, London.",
    "The parcel is stuck in Leeds; we decided to resend it by express.",
    "Can you refund the 10 EUR shipping fee?",
    "Yes, the refund of 10 EUR is approved today.",
]


def _turns(n: int, prefix: str = "m") -> list[dict[str, object]]:
    return [{"id": f"{prefix}{i}", "role": "user" if i % 2 == 0 else "assistant",
             "content": f"{LINES[i % len(LINES)]} (turn {i})"} for i in range(n)]


async def _until(predicate: object, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():  # type: ignore[operator]
            await asyncio.sleep(0.2)


async def test_auto_compaction_archives_first_and_stays_within_the_window(
    client: Client, make_lt: LtFactory, worker: Worker, store: Store
) -> None:
    lt = make_lt(client)
    conv = await lt.conversation("auto", tenant="acme")
    await conv.append({"id": "sys", "role": "system", "content": "You are Acme support."})
    for start in range(0, 60, 10):
        await conv.append_many(_turns(60)[start : start + 10])

    async def compacted() -> bool:
        return (await conv.stats()).ledger_head >= 1

    await _until(compacted)
    settled = await conv.settle(timeout=120)
    assert not settled.busy and settled.pending_embedding == 0
    assert settled.window_tokens < 400, "auto compaction brings the window under the policy"
    ledger = await conv.ledger()
    archived = {m.id for m in await store.all_messages("acme", "auto")}
    for record in ledger:
        assert set(record.covered_ids) <= archived, "only stored messages may be compacted"
        assert record.tokens_after < record.tokens_before
        assert record.engine_version is not None
        assert record.trigger == "auto" and record.level != "none"
    window_ids = [m.id for m in await conv.window()]
    assert window_ids[0] == "sys"
    covered = [i for r in ledger for i in r.covered_ids]
    assert len(covered) == len(set(covered))
    assert not set(covered) & set(window_ids)
    ctx = await conv.context("Where was the parcel stuck?", max_tokens=300)
    assert ctx.tokens <= 300
    assert ctx.messages[0].section == "system"
    assert await store.ledger("acme", "auto") == ledger


async def test_manual_compact_then_uncompact_restores_originals(
    client: Client, make_lt: LtFactory, worker: Worker
) -> None:
    lt = make_lt(client, window=100_000)
    conv = await lt.conversation("manual", tenant="acme")
    await conv.append_many(_turns(12))
    before = await conv.window()
    record = await conv.compact(preserve_recent=2, focus="refund", actor="agent:ana")
    assert record is not None and record.summary is not None
    assert record.trigger == "manual"
    # Who asked, and what the caller kept verbatim, are in the record an auditor reads.
    assert record.actor == "agent:ana" and record.preserve_recent == 2
    assert record.covered_ids == tuple(f"m{i}" for i in range(10))
    assert "refund" in record.summary.content.lower()
    assert [m.id for m in await conv.window()] == ["m10", "m11"]
    assert (await conv.summaries())[0].id == record.summary.id
    with pytest.raises(InvalidInputError, match="actor: is 201 characters; the limit is 200"):
        await conv.uncompact(record.id, actor="x" * 201)
    undo = await conv.uncompact(record.id, actor="auditor:bo")
    assert undo.undoes == record.id and undo.trigger == "undo"
    # The undo names its own asker, not the compaction's, and kept nothing of its own.
    assert undo.actor == "auditor:bo" and undo.preserve_recent is None
    assert await conv.window() == before
    assert await conv.summaries() == []
    assert [r.id for r in await conv.ledger()] == [record.id, undo.id]


async def test_uncompact_with_later_undoes_the_merges_in_one_step(
    client: Client, task_queue: str, store: Store, embedder: LocalEmbedder, worker: Worker
) -> None:
    """A compaction whose summary a later one merged: refused alone, naming the merge; with
    `with_later`, the merge and then it are undone in one update, one transaction."""
    lt = Longthread(client, Settings(task_queue=task_queue),
                    CompactionPolicy(context_window=100_000, preserve_recent=4,
                                     hierarchy_fanout=2), store=store, embedder=embedder)
    conv = await lt.conversation("with-later", tenant="acme")
    await conv.append_many(_turns(10))
    for round_ in range(3):  # the third compaction folds the first two summaries
        await conv.append_many(_turns(6, f"r{round_}-"))
        assert await conv.compact(preserve_recent=4) is not None
    ledger = await conv.ledger()
    merge = next(r for r in ledger if r.merged_summary is not None)
    folded = next(r for r in ledger if r.summary is not None
                  and r.summary.id in merge.removed_summary_ids)
    with pytest.raises(InvalidInputError, match=f"undo {merge.id} first"):
        await conv.uncompact(folded.id)
    assert [r.id for r in await conv.ledger()] == [r.id for r in ledger]  # nothing changed
    record = await conv.uncompact(folded.id, with_later=True)
    made = (await conv.ledger())[len(ledger):]
    assert [r.undoes for r in made] == [merge.id, folded.id] and made[-1] == record
    window = {m.id for m in await conv.window()}
    assert set(folded.covered_ids) <= window  # its messages are back, verbatim


async def test_a_compact_that_would_not_shrink_says_why_after_hundreds_of_events(
    client: Client, make_lt: LtFactory, worker: Worker, store: Store
) -> None:
    """The reason travels in the outcome, not through the event list (which returns the
    newest 200 only), so a long session's skipped compaction is still explained."""
    lt = make_lt(client, window=100_000)
    conv = await lt.conversation("long-tiny", tenant="acme")
    await conv.append_many([{"id": f"0c9a1b2e-{i:04d}-4a5b-9c8d-1234567890ab", "role": "user",
                             "content": "ok"} for i in range(6)])
    for n in range(210):
        await store.add_event("acme", "long-tiny", CompactionEvent(
            kind="completed", record_id=f"old{n}", level="light", reason="earlier",
            tokens_before=10))
    before = await conv.window()
    attempt = await conv.try_compact(preserve_recent=1)
    assert attempt.record is None
    assert attempt.skipped is not None
    assert attempt.skipped.startswith("compacting 5 messages would not shrink the window")
    assert await conv.compact(preserve_recent=1) is None
    assert await conv.ledger() == [] and await conv.window() == before
    assert (await conv.events())[-1].kind == "skipped"


async def test_large_bodies_are_archived_first_and_carried_by_reference(
    lt: Longthread, worker: Worker, store: Store
) -> None:
    conv = await lt.conversation("large", tenant="acme")
    body = "log line with details\n" * 30_000  # ~660 KB
    await conv.append({"id": "big", "role": "user", "content": body})
    (in_window,) = await conv.window()
    assert len(in_window.content) < 3000 and in_window.metadata["body_ref"] == len(body)
    (archived,) = await store.get_messages("acme", "large", ["big"])
    assert archived.content == body


async def test_idle_session_checkpoints_closes_and_resumes(
    client: Client, make_lt: LtFactory, worker: Worker, store: Store
) -> None:
    lt = make_lt(client, window=100_000, idle_timeout_seconds=2)
    conv = await lt.conversation("idle", tenant="acme")
    await conv.append_many(_turns(5))
    stats = await conv.handle.result()  # completes by itself once idle
    assert stats.messages == 5 and stats.pending_embedding == 0
    assert await store.count("acme", "idle") == 5

    conv = await lt.conversation("idle", tenant="acme")
    resumed = await conv.stats()
    assert resumed.messages == 5  # the cursors come back from the store
    again = await conv.append_many(_turns(6))  # m0..m4 are known: only m5 is new
    assert (again.appended, again.duplicates) == (1, 5)
    assert [m.id for m in await conv.window()] == [f"m{i}" for i in range(6)]


async def test_pop_and_clear_are_undoable_records(lt: Longthread, worker: Worker,
                                                  store: Store) -> None:
    conv = await lt.conversation("edit", tenant="acme")
    await conv.append_many(_turns(4))
    popped = await conv.pop()
    assert [m.id for m in popped] == ["m3"]
    assert [m.id for m in await conv.window()] == ["m0", "m1", "m2"]
    cleared = await conv.clear()
    assert cleared is not None and cleared.trigger == "clear"
    assert await conv.window() == []
    await conv.uncompact(cleared.id)
    assert [m.id for m in await conv.window()] == ["m0", "m1", "m2"]
    assert await store.count("acme", "edit") == 4  # nothing left the archive
    assert [r.trigger for r in await conv.ledger()] == ["pop", "clear", "undo"]


async def test_a_ledger_larger_than_one_payload_is_restored_in_parts(
    client: Client, make_lt: LtFactory, worker: Worker, store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An export's ledger is re-applied in parts when it is larger than one update may carry
    (here the limit is lowered to about two records); automatic compaction stays held until
    the last part, so each part applies on the head the previous one left."""
    source = await make_lt(client, window=100_000).conversation("parts-src", tenant="acme")
    await source.append_many(_turns(40))
    for keep in (34, 28, 22, 16, 10, 4):
        assert await source.compact(preserve_recent=keep) is not None
    ledger = await source.ledger()
    limit = 2 * max(len(r.model_dump_json()) for r in ledger) + 4
    assert len(ledger_parts(ledger, limit)) >= 3
    originals = await store.all_messages("acme", "parts-src")
    # The copy's policy is far over by the imported messages alone: a compaction between
    # parts would move the head, and the next part would be refused.
    copy = await make_lt(client, window=300).conversation("parts-copy", tenant="acme")
    await copy.append_many(originals, hold_compaction=True)
    fresh = await make_lt(client, window=100_000).conversation("parts-bad", tenant="acme")
    await fresh.append_many(originals, hold_compaction=True)
    monkeypatch.setattr("longthread.conversation.MAX_BATCH_BYTES", limit)
    assert await copy.restore_ledger(ledger) == len(ledger)
    assert await copy.ledger() == ledger  # and no compaction of its own (next append decides)
    assert await copy.window() == await source.window()
    assert await copy.summaries() == await source.summaries()
    # A record the worker refuses is named by its place in the whole ledger, not in its part.
    # The parts before it stay applied (each record checked against the originals), and the
    # rest of the genuine ledger then applies on top of them.
    forged = list(ledger)
    forged[4] = forged[4].model_copy(update={"covered_hash": "0" * 64})
    with pytest.raises(InvalidInputError, match=r"records\[4\]\.covered_hash"):
        await fresh.restore_ledger(forged)
    kept = await fresh.ledger()
    assert kept == ledger[: len(kept)] and len(kept) <= 4  # nothing of the bad part
    assert await fresh.restore_ledger(ledger[len(kept):]) == len(ledger) - len(kept)
    assert await fresh.ledger() == ledger


async def test_a_restored_copy_over_its_policy_compacts_at_its_next_append(
    client: Client, make_lt: LtFactory, worker: Worker, store: Store
) -> None:
    """An import reproduces the session as it stood, ledger included: a copy over its own
    policy compacts at its next append, as the original would, not at once (session 30's
    auditor test: the copy's ledger and `why` differed from the original's)."""
    source = await make_lt(client, window=100_000).conversation("as-was-src", tenant="acme")
    await source.append_many(_turns(40))
    record = await source.compact(preserve_recent=4)
    assert record is not None
    await source.uncompact(record.id)  # every message is back in the window
    ledger = await source.ledger()
    copy = await make_lt(client, window=256).conversation("as-was-copy", tenant="acme")
    await copy.append_many(await store.all_messages("acme", "as-was-src"), hold_compaction=True)
    assert await copy.restore_ledger(ledger) == len(ledger)
    await copy.settle(timeout=60)
    assert (await copy.stats()).window_tokens > 256 * 0.7  # over its policy ...
    assert await copy.ledger() == ledger  # ... and as the original was
    await copy.append({"id": "after-import", "role": "user", "content": "One more thing."})
    await copy.settle(timeout=60)
    grown = await copy.ledger()
    assert grown[: len(ledger)] == ledger and grown[-1].trigger == "auto"


async def test_a_million_token_window_compacts_and_serves(
    client: Client, make_lt: LtFactory, worker: Worker
) -> None:
    """Models with 1M-token windows exist: the policy took at most 250,000, a limit left from
    when the window travelled in workflow state. The window is in Postgres now."""
    lt = make_lt(client, window=1_000_000)
    conv = await lt.conversation("million", tenant="acme")
    body = " ".join(LINES) * 50  # ~2,400 tokens a message, as a long tool output might be
    messages = [{"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant",
                 "content": f"(turn {i}) {body}"} for i in range(320)]
    for start in range(0, len(messages), 80):  # each call under one payload's bytes
        await conv.append_many(messages[start:start + 80])

    async def compacted() -> bool:
        return (await conv.stats()).ledger_head >= 1

    await _until(compacted, timeout=120)
    settled = await conv.settle(timeout=300)
    assert not settled.busy
    assert 700_000 * 0.5 < settled.window_tokens < 700_000  # under the light threshold
    ctx = await conv.context("Where was the parcel stuck?", max_tokens=600_000)
    assert 100_000 < ctx.tokens <= 600_000, (settled, ctx.tokens)
