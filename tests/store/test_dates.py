"""Migration 9: the day a message was sent is in its lexical index, as memory.text writes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg.rows import DictRow, dict_row

from memory.errors import InvalidInputError
from memory.models import Message
from memory.store.migrations import MIGRATIONS, setup
from memory.store.store import Store
from memory.text import day_text, indexed_text
from tests.store.old_schema import database_at


def _at(day: int, hour: int = 13) -> datetime:
    return datetime(2023, 5, day, hour, 56, tzinfo=UTC)


async def test_a_date_query_finds_that_days_message_lexically(store: Store) -> None:
    session = f"dates-{uuid.uuid4()}"
    await store.append_messages("acme", session, [
        Message(id="a", role="user", content="We went camping by the lake.", created_at=_at(1)),
        Message(id="b", role="user", content="The painting is finished.", created_at=_at(8)),
        Message(id="c", role="user", content="Off to the support group.", created_at=_at(20)),
        Message(id="d", role="user", content="No date on this one, 8 of them."),
    ])
    # Nothing in the content says 8 May 2023: only the indexed day does.
    assert (await store.lexical("acme", session, "What happened on 8 May 2023?"))[0] == "b"
    assert set(await store.lexical("acme", session, "May 2023", k=10)) == {"a", "b", "c"}
    assert await store.lexical("acme", session, "June 2024") == []
    # The content's own words still rank as before.
    assert (await store.lexical("acme", session, "painting"))[0] == "b"


async def test_the_day_in_sql_is_the_day_in_python(db: psycopg.AsyncConnection[DictRow]) -> None:
    stamps = [_at(8), datetime(2023, 5, 8, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
              datetime(1999, 12, 31, 0, 0, tzinfo=UTC), datetime(2024, 2, 29, 12, 0)]
    for stamp in stamps:
        cur = await db.execute("SELECT longthread_day(%s) AS day", (stamp,))
        assert (await cur.fetchone()) == {"day": day_text(stamp)}
    assert day_text(stamps[1]) == "9 May 2023"  # 23:30 at -05:00 is the 9th in UTC
    assert indexed_text("Hi", _at(8)) == "Hi (8 May 2023)"
    assert indexed_text("Hi", None) == "Hi"


async def test_migration_nine_backfills_days_under_the_policy(pg_url: str) -> None:
    async with database_at(pg_url, 8, dim=3) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                         row_factory=dict_row) as conn:
            for tenant, text, stamp in (("alpha", "a parcel in Leeds", _at(8)),
                                        ("beta", "a zeppelin over Leeds", None)):
                await conn.execute(
                    "INSERT INTO messages (tenant, session, id, seq, role, content, created_at)"
                    " VALUES (%s, 's', 'm0', 0, 'user', %s, %s)", (tenant, text, stamp))
            assert await setup(conn, 3) == len(MIGRATIONS) >= 9
            assert await setup(conn, 3) == len(MIGRATIONS)  # idempotent
            cur = await conn.execute(
                "SELECT tenant, lexeme, tf, doc_len FROM message_terms ORDER BY tenant, lexeme")
            rows = [(r["tenant"], r["lexeme"], r["tf"], r["doc_len"])
                    for r in await cur.fetchall()]
            assert rows == [("alpha", "2023", 1, 5), ("alpha", "8", 1, 5),
                            ("alpha", "leed", 1, 5), ("alpha", "may", 1, 5),
                            ("alpha", "parcel", 1, 5),
                            ("beta", "leed", 1, 2), ("beta", "zeppelin", 1, 2)]
            cur = await conn.execute("SELECT relname, relforcerowsecurity AS forced FROM pg_class"
                                     " WHERE relname IN ('messages', 'message_terms')")
            assert all(r["forced"] for r in await cur.fetchall())


async def test_a_time_more_than_a_day_ahead_is_refused_by_name_and_nothing_is_stored(
        store: Store) -> None:
    """9999-12-31 is a storable instant, but a placeholder or typo, not when a message was
    sent: it would date every retrieved line wrong. A skewed clock or a local time sent
    without its zone (up to 14 hours ahead) is still taken."""
    session = f"future-{uuid.uuid4()}"
    now = datetime.now(UTC)
    soon = Message(id="ok", role="user", content="Sent from a fast clock.",
                   created_at=now + timedelta(hours=14))
    for late in (datetime(9999, 12, 31, tzinfo=UTC), now + timedelta(days=2)):
        with pytest.raises(InvalidInputError) as caught:
            await store.append_messages("acme", session, [
                soon, Message(id="late", role="user", content="From the future.",
                              created_at=late)])
        assert caught.value.field == "messages[1].created_at"
        assert "more than a day after now" in caught.value.problem
        assert late.isoformat() in caught.value.problem
        assert await store.get_messages("acme", session, ["ok", "late"]) == []
    out = await store.append_messages("acme", session, [soon])
    assert out.appended == 1
