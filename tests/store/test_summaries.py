"""Summaries are stored once each and window versions list their ids (migration 10), so a long
session's storage grows with what it holds, not with (versions × summaries)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.rows import DictRow

from memory.compaction import compose_record, plan_compaction
from memory.errors import InvalidInputError
from memory.models import Message, Summary
from memory.policy import CompactionPolicy
from memory.store.store import Store
from memory.undo import compose_undo

POLICY = CompactionPolicy(context_window=256, preserve_recent=2, hierarchy_fanout=2)


def _user(i: int) -> Message:
    return Message(id=f"m{i}", role="user", content=f"Note {i}: the parcel is in depot {i}.")


async def _compact_once(store: Store, session: str, n: int) -> None:
    loaded = await store.load_window("acme", session)
    plan = plan_compaction(loaded.state, POLICY, force=True, preserve_recent=2)
    assert plan is not None
    summary = Summary(id=f"s{n}", level=1, content=f"Summary {n}: parcels in depots.",
                      covers=plan.covered_ids)
    window, record = compose_record(loaded.state, plan, record_id=f"c{n}", seq=loaded.version,
                                    summary=summary, strategy="extractive")
    await store.commit_records("acme", session, loaded.version, [(record, window)],
                               loaded.next_base)


async def _one(store: Store, query: str, session: str) -> dict[str, object]:
    async with store.scoped("acme") as conn:
        cur = await conn.execute(query, (session,))
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def test_each_summary_is_stored_once_and_a_version_lists_ids(store: Store) -> None:
    session = f"s-{uuid.uuid4()}"
    for n in range(1, 13):
        await store.append_messages("acme", session, [_user(10 * n + k) for k in range(6)])
        await _compact_once(store, session, n)
    ledger = await store.ledger("acme", session)
    made = {s.id for r in ledger for s in (r.summary, r.merged_summary) if s is not None}
    assert any(r.merged_summary is not None for r in ledger)  # the hierarchy folded some
    stored = await _one(store, "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM summaries"
                               " WHERE session = %s", session)
    assert stored == {"n": len(made), "ids": len(made)}
    # A version row holds ids only: no summary text is copied into it.
    versions = await _one(store, "SELECT count(*) AS n, max(cardinality(summary_ids)) AS most,"
                                 " bool_and(NOT EXISTS (SELECT 1 FROM information_schema.columns"
                                 " WHERE table_name = 'window_versions' AND column_name ="
                                 " 'summaries')) AS ids_only FROM window_versions"
                                 " WHERE session = %s", session)
    assert versions["n"] == 12 and versions["ids_only"] is True
    assert 0 < int(str(versions["most"])) <= 1 + 2 * POLICY.hierarchy_fanout
    # The window read through a warm cache and by a process that has none are the same.
    warm = await store.read_window("acme", session, 4000)
    cold = await Store(store.pool).read_window("acme", session, 4000)
    assert warm.state == cold.state
    assert warm.state.summaries == (await store.load_window("acme", session)).state.summaries
    assert {s.id for s in warm.state.summaries} <= made


async def test_a_known_summary_id_with_other_content_is_refused(store: Store) -> None:
    session = f"s-{uuid.uuid4()}"
    await store.append_messages("acme", session, [_user(k) for k in range(8)])
    await _compact_once(store, session, 1)
    before = await store.load_window("acme", session)
    plan = plan_compaction(before.state, POLICY, force=True, preserve_recent=1)
    assert plan is not None
    forged = Summary(id="s1", level=1, content="Something else entirely.",
                     covers=plan.covered_ids)
    window, record = compose_record(before.state, plan, record_id="c2", seq=1, summary=forged,
                                    strategy="extractive")
    with pytest.raises(InvalidInputError, match=r"summary\.id.*'s1' is already stored"):
        await store.commit_records("acme", session, 1, [(record, window)], before.next_base)
    assert await store.load_window("acme", session) == before
    assert len(await store.ledger("acme", session)) == 1


async def test_a_summary_stored_before_a_field_existed_is_still_the_same_summary(
    store: Store, db: psycopg.AsyncConnection[DictRow],
) -> None:
    """Bodies migration 10 moved lack the fields added since (`merges`, `covered`, `span`);
    an undo that puts such a summary back brings it with them, and it is the same summary."""
    session = f"s-{uuid.uuid4()}"
    await store.append_messages("acme", session, [_user(k) for k in range(8)])
    await _compact_once(store, session, 1)
    # As migration 10 left it: the JSON of a summary written before those fields.
    await db.execute("UPDATE summaries SET summary = summary - 'merges' - 'covered' - 'span'"
                     " WHERE tenant = 'acme' AND session = %s", (session,))
    loaded = await store.load_window("acme", session)
    (record,) = await store.ledger("acme", session)
    originals = {m.id: m for m in await store.all_messages("acme", session)}
    order = {m.id: n for n, m in enumerate(originals.values())}
    window, undo = compose_undo(loaded.state, record.id, [record], seq=1, originals=originals,
                                order=order)
    assert record.summary is not None
    # The undo brings the stored summary again (as an undo of a merge brings what it folded).
    undo = undo.model_copy(update={"restored_summaries": (record.summary,)})
    await store.commit_records("acme", session, 1, [(undo, window)], loaded.next_base)
    # A body that really differs is still refused.
    forged = undo.model_copy(update={"id": "u9", "seq": 2, "restored_summaries": (
        record.summary.model_copy(update={"content": "Other words."}),)})
    with pytest.raises(InvalidInputError, match="already stored with other content"):
        await store.commit_records("acme", session, 2, [(forged, window)], loaded.next_base)
    assert len(await store.ledger("acme", session)) == 2
