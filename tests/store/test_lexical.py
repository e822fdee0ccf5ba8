"""The BM25 leg over the inverted index, and migration 5's backfill of what was archived."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from memory.models import Message
from memory.store import search as search_module
from memory.store.migrations import MIGRATIONS, setup
from memory.store.store import Store


def _messages(texts: list[str]) -> list[Message]:
    return [Message(id=f"m{i}", role="user", content=t) for i, t in enumerate(texts)]


async def test_bm25_ranks_a_rare_term_above_a_repeated_common_one(store: Store) -> None:
    session = f"bm25-{uuid.uuid4()}"
    texts = [f"Parcel update {i}: the parcel is on its way." for i in range(30)]
    texts.append("The parcel parcel parcel was scanned again.")  # m30: the common word, often
    texts.append("A zeppelin was seen over Leeds.")  # m31: the rare word, once
    await store.append_messages("acme", session, _messages(texts))
    ranked = await store.lexical("acme", session, "parcel zeppelin", k=5)
    assert ranked[0] == "m31"
    assert ranked[1] == "m30"  # among the parcel messages, term frequency decides
    assert await store.lexical("acme", session, "submarine") == []
    assert await store.lexical("acme", session, "the and of") == []  # stop words only


async def test_a_number_finds_the_ids_that_hold_it_and_not_the_dates(
        store: Store) -> None:
    """Postgres reads the hyphen in ORD-58213-KX as a minus sign ('-58213'): "58213" alone
    found none of them (user test, session 31). Indexed or still in the tail, either way. An
    id's part is not read as a bare number: INV-2026-0042 must not match every message dated
    in 2026 (the day is indexed with each message)."""
    session = f"ids-{uuid.uuid4()}"
    texts = [f"Parcel update {i}: the parcel is on its way." for i in range(20)]
    texts += ["Your order ORD-58213-KX shipped.", "Refund RF-77310 is approved.",
              "Gateway error E-4471 again.", "The refund for 77310 went out.",
              "Weights: ABC-12.5 kg."]
    await store.append_messages("acme", session, _messages(texts))
    for indexed in (False, True):
        if indexed:
            await store.index_terms("acme", session)
        assert (await store.lexical("acme", session, "58213", k=3))[:1] == ["m20"]
        assert (await store.lexical("acme", session, "error 4471", k=3))[:1] == ["m22"]
        assert set(await store.lexical("acme", session, "77310", k=3)) == {"m21", "m23"}
        assert await store.lexical("acme", session, "RF-77310", k=3) == ["m21"]
        assert (await store.lexical("acme", session, "12.5", k=3))[:1] == ["m24"]
    hits = await store.search_tenant("acme", "58213", 3)
    assert [h.message.id for h in hits if h.session == session] == ["m20"]
    dated = f"{session}-dated"
    day = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    await store.append_messages("acme", dated, [
        Message(id=f"d{i}", role="user", content=f"Checked step {i}.", created_at=day)
        for i in range(10)] + [Message(id="inv", role="user", created_at=day,
                                       content="Invoice INV-2026-0042 is paid.")])
    await store.index_terms("acme", dated)
    assert await store.lexical("acme", dated, "INV-2026-0042", k=5) == ["inv"]
    await store.append_messages("acme", dated, [Message(
        id="iso", role="user", content="Shipped on 2026-11-02 from the depot.")])
    assert await store.lexical("acme", dated, "room 11", k=5) == []  # not the date's '-11'

    assert [h.message.id for h in await store.search_tenant("acme", "INV-2026-0042", 5)
            if h.session == dated] == ["inv"]


async def test_lexemes_past_the_postings_cap_are_not_ranked_by(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = f"cap-{uuid.uuid4()}"
    texts = [f"Invoice number {i} for the refund." for i in range(12)]
    texts.append("A refund for the zeppelin tour.")
    await store.append_messages("acme", session, _messages(texts))
    assert len(await store.lexical("acme", session, "refund", k=20)) == 13
    monkeypatch.setattr(search_module, "LEXEME_POSTINGS_CAP", 10)
    assert await store.lexical("acme", session, "refund", k=20) == []
    assert await store.lexical("acme", session, "refund zeppelin", k=20) == ["m12"]


async def test_the_inverted_index_is_tenant_scoped(store: Store) -> None:
    session = f"iso-{uuid.uuid4()}"
    await store.append_messages("alpha", session, _messages(["alpha secret vault code 1234"]))
    await store.append_messages("beta", session, _messages(["beta secret vault code 9911"]))
    assert await store.lexical("alpha", session, "vault 9911") == ["m0"]
    async with store.scoped("alpha") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM message_terms WHERE tenant = 'beta'")
        assert await cur.fetchone() == {"n": 0}
        with pytest.raises(psycopg.Error, match="row-level security"):
            await conn.execute("INSERT INTO message_terms VALUES "
                               "('beta', 'x', 'forged', 'm0', 1, 1)")


async def test_migration_five_backfills_messages_archived_before_it(pg_url: str) -> None:
    name = f"lt_backfill_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(pg_url, dbname=name)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                     row_factory=dict_row) as conn:
        await conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY,"
                           " applied_at timestamptz NOT NULL DEFAULT now())")
        for version, statement in enumerate(MIGRATIONS[:4], start=1):
            await conn.execute(statement.format(dim=sql.Literal(3)))
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        for tenant, text in (("alpha", "the parcel is stuck in Leeds"),
                             ("beta", "a zeppelin over Leeds")):
            await conn.execute("INSERT INTO messages (tenant, session, id, seq, role, content)"
                               " VALUES (%s, 's', 'm0', 0, 'user', %s)", (tenant, text))
        assert await setup(conn, 3) == len(MIGRATIONS)
        conn.row_factory = dict_row
        cur = await conn.execute(
            "SELECT tenant, lexeme, tf, doc_len FROM message_terms ORDER BY tenant, lexeme")
        rows = [(r["tenant"], r["lexeme"], r["tf"], r["doc_len"]) for r in await cur.fetchall()]
        assert rows == [("alpha", "leed", 1, 3), ("alpha", "parcel", 1, 3),
                        ("alpha", "stuck", 1, 3), ("beta", "leed", 1, 2),
                        ("beta", "zeppelin", 1, 2)]
        cur = await conn.execute("SELECT relforcerowsecurity AS forced FROM pg_class"
                                 " WHERE relname IN ('messages', 'message_terms')")
        assert [r["forced"] for r in await cur.fetchall()] == [True, True]
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
