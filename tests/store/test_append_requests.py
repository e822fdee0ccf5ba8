"""An append named by its request (the workflow's update id) and run again reports what it
stored the first time: a workflow task lost after the store committed runs its local activity
again, and concurrent appends beside generate() were told "20 duplicates" for new messages."""

from __future__ import annotations

import uuid

from memory.models import Message
from memory.store.appends import RECENT_REQUESTS
from memory.store.store import Store


def _batch(prefix: str, n: int = 3) -> list[Message]:
    return [Message(id=f"{prefix}-{k}", role="user", content=f"Note {prefix} {k}.")
            for k in range(n)]


async def test_an_append_run_again_reports_what_it_stored_the_first_time(store: Store) -> None:
    session = f"s-{uuid.uuid4()}"
    first = await store.append_messages("acme", session, _batch("a"), request="u1")
    again = await store.append_messages("acme", session, _batch("a"), request="u1")
    assert (first.appended, first.duplicates) == (again.appended, again.duplicates) == (3, 0)
    assert again.cursors.next_seq == 3  # stored once
    # Another request sending the same messages is told they were duplicates.
    other = await store.append_messages("acme", session, _batch("a"), request="u2")
    assert (other.appended, other.duplicates) == (0, 3)
    assert (await store.append_messages("acme", session, _batch("a"), request="u2")
            ).appended == 0  # and so is its own run again
    # Without a request name, a repeat is a duplicate, as before.
    assert (await store.append_messages("acme", session, _batch("a"))).duplicates == 3


async def test_a_session_remembers_only_its_last_requests(store: Store) -> None:
    session = f"s-{uuid.uuid4()}"
    for n in range(RECENT_REQUESTS + 1):
        await store.append_messages("acme", session, _batch(f"r{n}", 1), request=f"u{n}")
    oldest = await store.append_messages("acme", session, _batch("r0", 1), request="u0")
    newest = await store.append_messages("acme", session, _batch(f"r{RECENT_REQUESTS}", 1),
                                         request=f"u{RECENT_REQUESTS}")
    assert (oldest.appended, newest.appended) == (0, 1)
    async with store.scoped("acme") as conn:
        cur = await conn.execute("SELECT cardinality(recent_requests) AS n, cardinality("
                                 "recent_appended) AS m FROM sessions WHERE session = %s",
                                 (session,))
        row = await cur.fetchone()
    assert row is not None and row["n"] == row["m"] == RECENT_REQUESTS
