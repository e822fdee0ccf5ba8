"""The inverted index is written after an append returns (migration 12, memory.store.indexing):
a search ranks the same whether the newest messages are indexed yet or not."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import DictRow, dict_row
from temporalio.testing import ActivityEnvironment

from activities.conversation import ConversationActivities
from activities.types import EmbedInput, StoreMessagesInput
from memory.models import Message
from memory.store import indexing
from memory.store import search as search_module
from memory.store.migrations import MIGRATIONS, setup
from memory.store.store import Store
from tests.store.old_schema import database_at

WORDS = ("parcel refund invoice zeppelin Leeds courier tracking label warehouse delay "
         "customer agent ticket order payment card bank branch Friday Monday").split()
QUERIES = ("parcel zeppelin", "refund invoice delay", "Leeds courier Friday", "order 4711",
           "8 May 2023", "bank card payment refund")


def _corpus(n: int, seed: int, start: int = 0) -> list[Message]:
    """Messages with skewed word counts (some words common, some rare) and a date on some."""
    rng = random.Random(seed)
    day = datetime(2023, 5, 1, tzinfo=UTC)
    out = []
    for i in range(start, start + n):
        words = rng.choices(WORDS, weights=range(len(WORDS), 0, -1), k=rng.randint(3, 12))
        if i % 7 == 0:
            words.append("4711")
        out.append(Message(id=f"m{i}", role="user", content=" ".join(words),
                           created_at=day + timedelta(days=i % 10) if i % 3 else None))
    return out


async def _terms(store: Store, tenant: str, session: str) -> int:
    async with store.scoped(tenant) as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM message_terms"
                                 " WHERE tenant = %s AND session = %s", (tenant, session))
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])


async def _cursor(store: Store, tenant: str, session: str) -> int | None:
    async with store.scoped(tenant) as conn:
        cur = await conn.execute("SELECT indexed_seq FROM lexical_cursors"
                                 " WHERE tenant = %s AND session = %s", (tenant, session))
        row = await cur.fetchone()
        return None if row is None else int(row["indexed_seq"])


async def _plan(store: Store, query: str, params: dict[str, object]) -> str:
    """The app role's plan for `query` with these values (EXPLAIN without ANALYZE: nothing
    runs), one line a node."""
    (rows,) = await store._batch("acme", [("EXPLAIN (COSTS OFF) " + query, params)],
                                 prepare=False)
    return "\n".join(r["QUERY PLAN"] for r in rows)


async def _ranks(store: Store, session: str) -> list[list[str]]:
    return [await store.lexical("acme", session, q, k=30) for q in QUERIES]


async def test_an_append_leaves_indexing_to_later_and_search_finds_it_meanwhile(
    store: Store,
) -> None:
    session = f"later-{uuid.uuid4()}"
    await store.append_messages("acme", session, _corpus(40, seed=1))
    assert await _terms(store, "acme", session) == 0  # the append wrote no postings
    before = await _ranks(store, session)
    assert all(before), "every query finds something while nothing is indexed"
    assert await store.index_terms("acme", session) == 40
    assert await _terms(store, "acme", session) > 40
    assert await _ranks(store, session) == before
    assert await store.index_terms("acme", session) == 0  # idempotent


@pytest.mark.parametrize("cap", [5, 12, search_module.LEXEME_POSTINGS_CAP])
async def test_a_half_indexed_session_ranks_as_a_whole_indexed_one(
    store: Store, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    """The postings cap counts the index and the tail together, so a lexeme is left out of
    the ranking exactly when it would be with everything indexed."""
    monkeypatch.setattr(search_module, "LEXEME_POSTINGS_CAP", cap)
    session = f"half-{uuid.uuid4()}"
    await store.append_messages("acme", session, _corpus(30, seed=2))
    await store.index_terms("acme", session)
    await store.append_messages("acme", session, _corpus(25, seed=3, start=30))
    half = await _ranks(store, session)
    assert await store.index_terms("acme", session) == 25
    whole = await _ranks(store, session)
    assert half == whole
    if cap == 5:  # the common words are past the cap here, in both states
        assert await store.lexical("acme", session, "parcel", k=30) == []


async def test_concurrent_indexing_writes_each_posting_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexing, "INDEX_TERMS_LIMIT", 50)
    monkeypatch.setattr("memory.store.store.INDEX_TERMS_LIMIT", 50)
    session = f"race-{uuid.uuid4()}"
    await store.append_messages("acme", session, _corpus(230, seed=4))
    counts = await asyncio.gather(*(store.index_terms("acme", session) for _ in range(3)))
    assert sum(counts) >= 230
    async with store.scoped("acme") as conn:
        cur = await conn.execute(
            "SELECT (SELECT indexed_seq FROM lexical_cursors WHERE tenant = 'acme'"
            " AND session = %(s)s) AS cursor,"
            " (SELECT count(*) FROM messages m, unnest(longthread_indexed(m.tsv, m.created_at))"
            "  WHERE tenant = 'acme' AND session = %(s)s) AS expected", {"s": session})
        row = await cur.fetchone()
    assert row is not None and row["cursor"] == 230
    assert await _terms(store, "acme", session) == row["expected"]


async def test_migration_twelve_starts_each_cursor_past_what_the_trigger_indexed(
    pg_url: str,
) -> None:
    async with database_at(pg_url, 11, dim=3) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                         row_factory=dict_row) as conn:
            for tenant, seq, text in (("alpha", 0, "a parcel in Leeds"),
                                      ("alpha", 1, "the zeppelin landed"),
                                      ("beta", 0, "an invoice")):
                await conn.execute(
                    "INSERT INTO messages (tenant, session, id, seq, role, content)"
                    " VALUES (%s, 's', %s, %s, 'user', %s)", (tenant, f"m{seq}", seq, text))
            assert await setup(conn, 3) == len(MIGRATIONS) >= 12
            await conn.execute("ALTER TABLE lexical_cursors NO FORCE ROW LEVEL SECURITY")
            cur = await conn.execute("SELECT tenant, session, indexed_seq FROM lexical_cursors"
                                     " ORDER BY tenant")
            assert await cur.fetchall() == [
                {"tenant": "alpha", "session": "s", "indexed_seq": 2},
                {"tenant": "beta", "session": "s", "indexed_seq": 1}]
            await conn.execute("ALTER TABLE messages NO FORCE ROW LEVEL SECURITY")
            await conn.execute("INSERT INTO messages (tenant, session, id, seq, role, content)"
                               " VALUES ('beta', 's', 'm1', 1, 'user', 'a refund')")
            cur = await conn.execute("SELECT DISTINCT id FROM message_terms"
                                     " WHERE tenant = 'beta' ORDER BY id")
            assert await cur.fetchall() == [{"id": "m0"}]  # no trigger indexes m1 any more


async def test_the_embedding_activity_indexes_everything_stored_before_it_embeds(
    activities: ConversationActivities, store: Store
) -> None:
    """The workflow starts the embedding activity after every append: that is what keeps the
    unindexed tail short. Its range is only what it embeds; it indexes all that is stored."""
    session = f"activity-{uuid.uuid4()}"
    env = ActivityEnvironment()
    await env.run(activities.store_messages, StoreMessagesInput(
        tenant="acme", session=session, messages=tuple(_corpus(6, seed=5))))
    assert await _cursor(store, "acme", session) is None
    await env.run(activities.embed_messages,
                  EmbedInput(tenant="acme", session=session, start=0, stop=2))
    assert await _cursor(store, "acme", session) == 6
    assert await _terms(store, "acme", session) > 6


async def test_the_embedding_activity_indexes_a_burst_in_bounded_steps_and_heartbeats(
    activities: ConversationActivities, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst larger than one step of indexing: the activity indexes INDEX_ROUNDS statements
    before each embedding batch, heartbeating after each, so it never goes silent (and gets
    retried from scratch) however far appends run ahead; the rest waits for the next step."""
    monkeypatch.setattr(indexing, "INDEX_TERMS_LIMIT", 4)
    monkeypatch.setattr("memory.store.store.INDEX_TERMS_LIMIT", 4)
    monkeypatch.setattr("activities.ingest.INDEX_ROUNDS", 2)
    session = f"burst-{uuid.uuid4()}"
    env = ActivityEnvironment()
    beats: list[object] = []
    env.on_heartbeat = lambda *args: beats.append(args)
    await env.run(activities.store_messages, StoreMessagesInput(
        tenant="acme", session=session, messages=tuple(_corpus(20, seed=6))))
    await env.run(activities.embed_messages,
                  EmbedInput(tenant="acme", session=session, start=0, stop=1))
    assert await _cursor(store, "acme", session) == 8  # 2 statements of 4, then it embedded
    assert beats == [(), (), (1,)]
    assert await store.index_terms("acme", session, rounds=1) == 4
    assert await _cursor(store, "acme", session) == 12
    assert await store.index_terms("acme", session) == 8  # unbounded: to the end
    assert await _cursor(store, "acme", session) == 20


async def test_a_statement_stops_at_its_size_bound_after_one_message_at_least(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The postings a statement writes bound its time, not its messages: 2,000 messages of
    10 KB logs were 1.8 million postings, one statement outlasted the activity's heartbeat,
    and it was retried on the same statement over and over."""
    session = f"postings-{uuid.uuid4()}"
    words = [10, 10, 10, 40, 10]  # distinct words per message
    await store.append_messages("acme", session, [
        Message(id=f"p{i}", role="user", content=" ".join(f"w{i}x{j}" for j in range(n)))
        for i, n in enumerate(words)])
    async with store.scoped("acme") as conn:
        cur = await conn.execute("SELECT pg_column_size(tsv) AS size FROM messages WHERE"
                                 " tenant = 'acme' AND session = %s ORDER BY seq", (session,))
        size = [int(r["size"]) for r in await cur.fetchall()]
    assert size[3] > size[0] + size[1]  # what the steps below rely on
    # The first three start within the bound; the fourth would start past it.
    monkeypatch.setattr("memory.store.store.INDEX_TERMS_BYTES", size[0] + size[1] + 1)
    assert await store.index_terms_once("acme", session) == (3, True)
    assert await _cursor(store, "acme", session) == 3
    # One message, however large: else a large one would never be indexed.
    assert await store.index_terms_once("acme", session) == (1, True)
    assert await store.index_terms_once("acme", session) == (1, False)
    assert await store.index_terms_once("acme", session) == (0, False)
    assert await _cursor(store, "acme", session) == 5
    assert await _terms(store, "acme", session) == sum(words)


async def test_both_reads_past_the_cursor_go_through_the_seq_index(
    store: Store, db: psycopg.AsyncConnection[DictRow]
) -> None:
    """Under row-level security a bound the planner thinks leaky is applied as a filter, not
    an index condition, and one bound alone looks like a third of the session: either way
    the step and the search would read a big session from seq 0. (A big session, with
    statistics that say so: for a few rows any index is as good.)"""
    session = f"plan-{uuid.uuid4()}"
    for start in range(0, 4000, 500):
        await store.append_messages("acme", session, _corpus(500, seed=6, start=start))
    await store.index_terms("acme", session)
    await db.execute("ANALYZE messages")
    step = await _plan(store, indexing.INDEX_TERMS,
                       {"tenant": "acme", "session": session, "limit": 50, "bytes": 1_000_000})
    search = await _plan(store, search_module.LEXICAL, search_module.lexical_params(
        "acme", session, "parcel zeppelin", 10, None, None))
    for plan in (step, search):
        conds = [line for line in plan.splitlines() if "Index Cond" in line and "seq >=" in line]
        assert conds, plan
    # the rows it indexes are read back by the primary key, one at a time
    assert any("id = n.id" in line for line in step.splitlines() if "Index Cond" in line), step
    assert any("seq <" in line for line in search.splitlines() if "Index Cond" in line), search


async def test_a_cursor_only_moves_forward(store: Store) -> None:
    session = f"forward-{uuid.uuid4()}"
    await store.append_messages("acme", session, _corpus(5, seed=7))
    await store.index_terms("acme", session)
    async with store.scoped("acme") as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="may not move back"):
            await conn.execute("UPDATE lexical_cursors SET indexed_seq = 0"
                               " WHERE tenant = 'acme' AND session = %s", (session,))
    async with store.scoped("acme") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("UPDATE lexical_cursors SET tenant = 'acme'"
                               " WHERE session = %s", (session,))
    assert await _cursor(store, "acme", session) == 5
