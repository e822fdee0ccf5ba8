"""An append named by its request (the workflow's update id) and run again reports what it
stored the first time: a workflow task lost after the store committed runs its local activity
again, and concurrent appends beside generate() were told "20 duplicates" for new messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from memory.errors import InvalidInputError
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
    assert (first.rerun, again.rerun) == (False, True)  # the worker's metrics count it once
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


async def test_a_run_again_is_still_checked_for_content(store: Store) -> None:
    """The request name changes only the count reported: a copy with other content (here a
    later `created_at`) is refused as ever; generate() sends such a copy as the stored one."""
    session = f"s-{uuid.uuid4()}"
    first = Message(id="a-1", role="assistant", content="It ships Monday.",
                    created_at=datetime(2026, 12, 6, 10, 0, tzinfo=UTC))
    later = first.model_copy(update={"created_at": datetime(2026, 12, 6, 10, 1, tzinfo=UTC)})
    await store.append_messages("acme", session, [first], request="g1/reply")
    again = await store.append_messages("acme", session, [first], request="g1/reply")
    assert (again.appended, again.duplicates, again.cursors.next_seq) == (1, 0, 1)
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.id: 'a-1' was already"):
        await store.append_messages("acme", session, [later], request="g1/reply")
    # A request name seen before, with a message it did not store, is an ordinary append.
    fresh = Message(id="a-2", role="assistant", content="Tracking: 4711.")
    out = await store.append_messages("acme", session, [first, fresh], request="g1/reply")
    assert (out.appended, out.duplicates, out.cursors.next_seq) == (1, 1, 2)
