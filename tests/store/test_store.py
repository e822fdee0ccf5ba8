"""The store against the real embedded Postgres with pgvector: no mocks. Reads and retrieval;
the session's writes (appends, cursors, commits, windows) are in test_sessions.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from activities.providers.embedders import LocalEmbedder
from memory.audit import ServedContext
from memory.compaction import WindowState, compose_record, plan_compaction
from memory.models import Message
from memory.policy import CompactionPolicy
from memory.store.store import Store
from memory.window import BODY_REF_BYTES

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
    return f"s-{uuid.uuid4()}"


async def _fill(store: Store, embedder: LocalEmbedder, tenant: str, session: str,
                texts: list[str], prefix: str = "m") -> list[Message]:
    messages = [Message(id=f"{prefix}{i}", role="user", content=t,
                        created_at=T0 + timedelta(days=i), name="Caroline")
                for i, t in enumerate(texts)]
    await store.append_messages(tenant, session, messages)
    vectors = await embedder.embed(texts)
    await store.set_embeddings(tenant, session,
                               [(m.id, v) for m, v in zip(messages, vectors, strict=True)])
    return messages


async def test_appending_the_same_batch_twice_leaves_one_copy(
    store: Store, embedder: LocalEmbedder
) -> None:
    session = _session()
    messages = await _fill(store, embedder, "acme", session, FACTS)
    again = await store.append_messages("acme", session, messages)
    assert (again.appended, again.duplicates) == (0, len(FACTS))
    assert again.cursors.next_seq == len(FACTS)
    assert await store.count("acme", session) == len(FACTS)
    assert await store.all_messages("acme", session) == messages
    assert [s for s, _ in await store.get_with_seq("acme", session, ["m3", "m0", "zzz"])] \
        == [0, 3]


async def test_bodies_are_stored_verbatim(store: Store) -> None:
    session = _session()
    body = "'; DROP TABLE messages; -- \x07 \u202e ünïcødé 🎉 %s %(x)s \\x00" + "z" * 300_000
    message = Message(id="odd'id\"", role="assistant", content=body, metadata={"k": [1, "2"]})
    out = await store.append_messages("acme", session, [message])
    assert out.appended == 1
    (back,) = await store.get_messages("acme", session, [message.id])
    assert back == message
    # The window holds it by reference (a preview), the archive in full.
    loaded = await store.load_window("acme", session)
    (shown,) = loaded.state.messages
    assert len(body.encode()) > BODY_REF_BYTES
    assert shown.content.startswith(body[:2000]) and len(shown.content) < 3000
    assert shown.metadata["body_ref"] == len(body.encode())
    assert out.cursors.total_tokens > 10 * out.cursors.window_tokens > 0


async def test_get_messages_keeps_the_order_asked_for(store: Store) -> None:
    session = _session()
    messages = [Message(id=f"m{i}", role="user", content=f"note {i}") for i in range(5)]
    await store.append_messages("acme", session, messages)
    got = await store.get_messages("acme", session, ["m3", "ghost", "m0", "m4"])
    assert [m.id for m in got] == ["m3", "m0", "m4"]
    assert [(s, m.id) for s, m in await store.get_with_seq("acme", session,
                                                            ["m4", "m1"])] == [(1, "m1"),
                                                                               (4, "m4")]


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
    assert hits[0].seq == 5
    assert all(h.session == session for h in hits)


async def test_unembedded_messages_are_found_by_the_lexical_leg(
    store: Store, embedder: LocalEmbedder
) -> None:
    session = _session()
    await _fill(store, embedder, "acme", session, FACTS[:3])
    late = Message(id="late", role="user", content="The zeppelin tour was moved to Friday.")
    await store.append_messages("acme", session, [late])  # stored, not embedded yet
    assert await store.unembedded("acme", session, 0, 10) == [("late", late.content, None, 3)]
    (q,) = await embedder.embed(["zeppelin tour"])
    assert await store.lexical("acme", session, "zeppelin tour") == ["late"]
    hits = await store.search("acme", session, "zeppelin tour", q, k=3)
    assert "late" in [h.message.id for h in hits]


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
        await store.append_messages("bulk", session, msgs)
        await store.set_embeddings("bulk", session,
                                   [(m.id, v) for m, v in zip(msgs, vectors, strict=True)])
    hits = await store.search("bulk", target, "zebra", vectors[0], k=25)
    assert len(hits) == 25
    assert {h.session for h in hits} == {target}


async def test_exact_neighbours_match_the_index_on_a_small_session(
    store: Store, embedder: LocalEmbedder
) -> None:
    session = _session()
    await _fill(store, embedder, "acme", session, FACTS)
    (q,) = await embedder.embed(["adoption agencies"])
    exact = await store.exact_neighbours("acme", session, q, k=3)
    assert exact[0] == "m4" and len(exact) == 3
    hits = await store.search("acme", session, "", q, k=3)
    assert [h.message.id for h in hits] == exact


async def test_served_contexts_are_recorded_with_fresh_seqs_and_read_by_turn(
    store: Store,
) -> None:
    session = _session()

    def served(turn: int) -> ServedContext:
        return ServedContext(seq=0, turn=turn, query="q", max_tokens=100, tokens=40,
                             source_ids=("m0",), digest=f"d{turn}", ledger_seq=0)

    first = await store.record_served("acme", session, served(2))
    second = await store.record_served("acme", session, served(5))
    assert 0 < first.seq < second.seq
    assert first.model_copy(update={"seq": 0}) == served(2)
    records = await store.served("acme", session)
    assert [ServedContext.model_validate(r) for r in records] == [first, second]
    assert [r["digest"] for r in await store.served("acme", session, at_turn=4)] == ["d2"]
    assert await store.served("other", session) == []


async def test_served_contexts_are_numbered_per_session(store: Store) -> None:
    """One tenant's numbers never count another's calls (or its other sessions'): each
    session's served contexts are 1, 2, 3 ..., however the calls interleave."""
    session = _session()
    served = ServedContext(seq=0, turn=1, query=None, max_tokens=10, tokens=5,
                           source_ids=(), digest="d", ledger_seq=0)
    calls = [("acme", session), ("beta", session), ("acme", session), ("acme", f"{session}-2"),
             ("beta", session), ("acme", session)]
    got = [(t, s, (await store.record_served(t, s, served)).seq) for t, s in calls]
    assert [seq for _, _, seq in got] == [1, 1, 2, 1, 2, 3]
    # Concurrent calls of one session take distinct numbers, none skipped.
    many = await asyncio.gather(*(store.record_served("acme", session, served)
                                  for _ in range(20)))
    assert sorted(r.seq for r in many) == list(range(4, 24))


async def test_sessions_are_listed_per_tenant(store: Store) -> None:
    tenant = f"list-{uuid.uuid4()}"
    a, b = sorted([_session(), _session()])
    await store.append_messages(tenant, a, [
        Message(id="m0", role="user", content="hi", created_at=T0),
        Message(id="m1", role="user", content="there", created_at=T0 + timedelta(hours=2))])
    await store.append_messages(tenant, b, [Message(id="m0", role="user", content="yo")])
    infos = await store.sessions(tenant)
    assert [(i.session, i.messages) for i in infos] == [(a, 2), (b, 1)]
    assert (infos[0].first_at, infos[0].last_at) == (T0, T0 + timedelta(hours=2))
    # Without created_at, the conversation's times are unknown, but when it was last
    # appended to is not.
    assert (infos[1].first_at, infos[1].last_at) == (None, None)
    assert infos[1].appended_at >= infos[0].appended_at > datetime.now(UTC) - timedelta(hours=1)


async def test_no_call_returns_another_tenants_rows(
    store: Store, embedder: LocalEmbedder
) -> None:
    session = _session()
    await _fill(store, embedder, "alpha", session, FACTS)
    secret = await _fill(store, embedder, "beta", session,
                         ["beta secret: the vault code is 9911"] * 4, prefix="b")
    policy = CompactionPolicy(context_window=256, preserve_recent=1)
    state = WindowState(messages=tuple(secret))
    plan = plan_compaction(state, policy, force=True)
    assert plan is not None
    window, record = compose_record(state, plan, record_id="c1", seq=0, summary=None,
                                    strategy="archive-only")
    await store.commit_records("beta", session, 0, [(record, window)], next_base=4)
    await store.record_served("beta", session, ServedContext(
        seq=0, turn=4, query=None, max_tokens=10, tokens=5, source_ids=("b0",), digest="d",
        ledger_seq=1))
    (q,) = await embedder.embed(["vault code secret"])

    hits = await store.search("alpha", session, "vault code secret 9911", q, k=50,
                              neighbours=2)
    assert hits and all("9911" not in h.message.content for h in hits)
    assert await store.lexical("alpha", session, "vault 9911") == []
    assert len(await store.get_messages("alpha", session, ["m0"])) == 1
    assert await store.get_messages("alpha", session, ["b0"]) == []
    assert await store.get_messages("gamma", session, ["m0"]) == []
    assert await store.count("gamma", session) == 0
    assert await store.ledger("alpha", session) == []
    assert await store.served("alpha", session) == []
    assert (await store.cursors("alpha", session)).ledger_head == 0
    assert (await store.load_window("alpha", session)).version == 0
    assert [s.session for s in await store.sessions("gamma")] == []
    # Row-level security holds even for a query that asks for the other tenant outright.
    async with store.scoped("alpha") as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM messages WHERE tenant = 'beta'")
        assert await cur.fetchone() == {"n": 0}
        with pytest.raises(Exception, match="row-level security"):
            await conn.execute(
                "INSERT INTO messages (tenant, session, id, seq, role, content)"
                " VALUES ('beta', 'x', 'y', 0, 'user', 'forged')")
