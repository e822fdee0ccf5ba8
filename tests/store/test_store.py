"""The store against the real embedded Postgres with pgvector: no mocks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from activities.providers.embedders import LocalEmbedder
from memory.errors import LedgerConflictError
from memory.models import CompactionRecord, Message
from memory.store.store import Store

T0 = datetime(2023, 5, 8, 13, 0, tzinfo=UTC)
FACTS = [
    "Caroline went to the LGBTQ support group on Tuesday.",
    "Melanie painted a sunrise over the lake last year.",
    "The invoice for order 4711 shows 49.99 EUR.",
    "We went camping in the mountains with the kids.",
    "Caroline is researching adoption agencies.",
    "The deploy failed with error E1234 on the staging server.",
]


def _session() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"


async def _fill(store: Store, embedder: LocalEmbedder, tenant: str, session: str,
                texts: list[str]) -> list[Message]:
    messages = [Message(id=f"m{i}", role="user", content=t, created_at=T0 + timedelta(days=i),
                        name="Caroline") for i, t in enumerate(texts)]
    vectors = await embedder.embed(texts)
    await store.archive(tenant, session, list(enumerate(messages)), vectors)
    return messages


async def test_archiving_the_same_batch_twice_leaves_one_copy(
    store: Store, embedder: LocalEmbedder
) -> None:
    session = _session()
    messages = await _fill(store, embedder, "acme", session, FACTS)
    vectors = await embedder.embed(FACTS)
    again = await store.archive("acme", session, list(enumerate(messages)), vectors)
    assert again == 0
    assert await store.count("acme", session) == len(FACTS)
    assert await store.missing_ids("acme", session, ["m0", "zzz"]) == ["zzz"]


async def test_bodies_are_stored_verbatim(store: Store) -> None:
    session = _session()
    body = "'; DROP TABLE messages; -- \x07 \u202e ünïcødé 🎉 %s %(x)s \\x00" + "z" * 300_000
    message = Message(id="odd'id\"", role="assistant", content=body, metadata={"k": [1, "2"]})
    assert await store.archive("acme", session, [(0, message)]) == 1
    (back,) = await store.get_messages("acme", session, [message.id])
    assert back == message


async def test_hybrid_search_finds_semantic_and_lexical_matches(
    store: Store, embedder: LocalEmbedder
) -> None:
    session = _session()
    await _fill(store, embedder, "acme", session, FACTS)
    (q,) = await embedder.embed(["What is Caroline looking into about adopting a child?"])
    hits = await store.search("acme", session, "adopting child", q, k=3)
    assert hits[0].message.id == "m4"
    (q,) = await embedder.embed(["E1234"])
    hits = await store.search("acme", session, "E1234", q, k=3)
    assert hits[0].message.id == "m5"
    assert all(h.session == session for h in hits)


async def test_time_filters_and_neighbours(store: Store, embedder: LocalEmbedder) -> None:
    session = _session()
    await _fill(store, embedder, "acme", session, FACTS)
    (q,) = await embedder.embed(["painting"])
    hits = await store.search("acme", session, "painting", q, k=6,
                              since=T0 + timedelta(days=3), until=T0 + timedelta(days=5))
    assert {h.message.id for h in hits} == {"m3", "m4"}
    hits = await store.search("acme", session, "sunrise lake painted", q, k=1, neighbours=1)
    assert hits[0].message.id == "m1"
    assert {h.message.id for h in hits} == {"m0", "m1", "m2"}
    assert hits[0].score > max(h.score for h in hits[1:])


async def test_filtered_search_returns_k_rows_among_many_sessions(
    store: Store, embedder: LocalEmbedder
) -> None:
    texts = [f"note {i} about topic {i % 7}" for i in range(40)]
    vectors = await embedder.embed(texts)
    target = _session()
    for n in range(5):
        session = target if n == 2 else _session()
        msgs = [Message(id=f"x{i}", role="user", content=t) for i, t in enumerate(texts)]
        await store.archive("bulk", session, list(enumerate(msgs)), vectors)
    hits = await store.search("bulk", target, "zebra", vectors[0], k=25)
    assert len(hits) == 25
    assert {h.session for h in hits} == {target}


async def test_no_call_returns_another_tenants_rows(
    store: Store, embedder: LocalEmbedder
) -> None:
    session = _session()
    await _fill(store, embedder, "alpha", session, FACTS)
    await _fill(store, embedder, "beta", session, ["beta secret: the vault code is 9911"])
    record = CompactionRecord(id="r1", seq=0, level="medium", action="rolling_summary",
                              reason="test", covered_ids=("m0",), covered_hash="h",
                              strategy="extractive", tokens_before=10, tokens_after=5)
    await store.append_ledger("beta", session, record)
    await store.save_checkpoint("beta", session, '{"x": 1}', 1)
    (q,) = await embedder.embed(["vault code secret"])

    hits = await store.search("alpha", session, "vault code secret 9911", q, k=50,
                              neighbours=2)
    assert hits and all("9911" not in h.message.content for h in hits)
    assert len(await store.get_messages("alpha", session, ["m0"])) == 1
    assert await store.get_messages("gamma", session, ["m0"]) == []
    assert await store.count("gamma", session) == 0
    assert await store.ledger("alpha", session) == []
    assert await store.load_checkpoint("alpha", session) is None
    assert [s.session for s in await store.sessions("gamma")] == []
    # Row-level security holds even for a query that asks for the other tenant outright.
    async with store.scoped("alpha") as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM messages WHERE tenant = 'beta'")
        assert await cur.fetchone() == {"n": 0}
        with pytest.raises(Exception, match="row-level security"):
            await conn.execute(
                "INSERT INTO messages (tenant, session, id, seq, role, content)"
                " VALUES ('beta', 'x', 'y', 0, 'user', 'forged')")


async def test_ledger_append_is_idempotent_and_checkpoints_only_move_forward(
    store: Store,
) -> None:
    session = _session()
    record = CompactionRecord(id="r1", seq=0, level="light", action="dedup_and_archive_oldest",
                              reason="r", covered_ids=("a",), covered_hash="h",
                              strategy="archive-only", tokens_before=9, tokens_after=3)
    assert await store.append_ledger("acme", session, record) is True
    assert await store.append_ledger("acme", session, record) is False
    assert await store.ledger("acme", session) == [record]
    await store.save_checkpoint("acme", session, '{"v": 2}', 2)
    await store.save_checkpoint("acme", session, '{"v": 1}', 1)
    assert await store.load_checkpoint("acme", session) == ('{"v": 2}', 2)


async def test_the_first_ledger_write_wins_and_a_different_compaction_is_refused(
    store: Store,
) -> None:
    session = _session()
    first = CompactionRecord(id="c1", seq=0, level="medium", action="rolling_summary",
                             reason="r", covered_ids=("a", "b"), covered_hash="h1",
                             strategy="extractive", tokens_before=90, tokens_after=30,
                             at=T0, duration_ms=12.5)
    retried = first.model_copy(update={"at": T0 + timedelta(seconds=9), "duration_ms": 80.0})
    assert await store.append_ledger_stored("acme", session, first) == first
    assert await store.append_ledger_stored("acme", session, retried) == first
    other = first.model_copy(update={"covered_ids": ("a",), "covered_hash": "h2"})
    with pytest.raises(LedgerConflictError, match="seq 0"):
        await store.append_ledger_stored("acme", session, other)
    assert await store.ledger("acme", session) == [first]
