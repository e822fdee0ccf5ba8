"""What an SRE's user test found in the activities. A database error no retry mends fails
the append at once, naming the cause (with the application role's SELECT on `sessions`
revoked, an append waited ten minutes without a word while the worker logged a traceback for
each attempt); and a compaction committed by an attempt that died before its "completed"
event gets that event from the retry."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.rows import DictRow
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.conversation import ConversationActivities
from activities.types import StoreMessagesInput
from memory.models import Message
from memory.store.store import Store


def _input(session: str) -> StoreMessagesInput:
    return StoreMessagesInput(tenant="acme", session=session, messages=(
        Message(id="m1", role="user", content="Order 4711 has not arrived."),))


async def test_a_missing_grant_fails_the_append_and_stores_nothing(
    activities: ConversationActivities, store: Store, db: psycopg.AsyncConnection[DictRow]
) -> None:
    env = ActivityEnvironment()
    session = f"grant-{uuid.uuid4()}"
    await db.execute("REVOKE SELECT ON sessions FROM longthread_app")
    try:
        with pytest.raises(ApplicationError) as info:
            await env.run(activities.store_messages, _input(session))
    finally:
        await db.execute("GRANT SELECT ON sessions TO longthread_app")
    assert info.value.type == "ArchiveMisconfigured" and info.value.non_retryable
    assert "permission denied for table sessions" in info.value.message
    assert "SQLSTATE 42501" in info.value.message and "Restoring grants" in info.value.message
    assert await store.all_messages("acme", session) == []
    out = await env.run(activities.store_messages, _input(session))  # mended: it stores
    assert out.appended == 1


def test_an_outage_is_still_waited_out() -> None:
    """Only errors no retry mends fail at once: a lost connection is raised as it is, for the
    activity's retry policy to wait out."""
    from activities.running import misconfigured

    assert misconfigured(psycopg.OperationalError("server closed the connection")) is None
    assert misconfigured(psycopg.errors.DeadlockDetected("deadlock")) is None


async def test_a_retry_after_a_crash_between_commit_and_event_records_the_completion(
    activities: ConversationActivities, store: Store, db: psycopg.AsyncConnection[DictRow]
) -> None:
    """An SRE's user test: a worker SIGKILLed after the compaction committed and before its
    "completed" event left `started` alone; the retry found the record committed and wrote
    nothing, so the audit trail showed a compaction that never finished."""
    from activities.types import CompactSessionInput
    from memory.policy import CompactionPolicy

    env = ActivityEnvironment()
    session = f"late-{uuid.uuid4()}"
    texts = [f"Fact {i}: the parcel {i} was rerouted to depot {i}." for i in range(12)]
    await env.run(activities.store_messages, StoreMessagesInput(
        tenant="acme", session=session,
        messages=tuple(Message(id=f"m{i}", role="user", content=t) for i, t in enumerate(texts))))
    compact = CompactSessionInput(tenant="acme", session=session, expected_head=0,
                                  policy=CompactionPolicy(context_window=256, preserve_recent=1),
                                  trigger="manual")
    await env.run(activities.compact_session, compact)
    await db.execute("DELETE FROM compaction_events WHERE tenant = 'acme' AND session = %s "
                     "AND event->>'kind' = 'completed'", (session,))  # the crash
    out = await env.run(activities.compact_session, compact)  # the retry
    assert out.record_ids == ("c1",)
    (record,) = await store.ledger("acme", session)
    events = await store.events("acme", session)
    assert [(e.kind, e.record_id) for e in events] == [("started", "c1"), ("completed", "c1")]
    assert events[1].tokens_after == record.tokens_after
    await env.run(activities.compact_session, compact)  # and once only
    assert len(await store.events("acme", session)) == 2
