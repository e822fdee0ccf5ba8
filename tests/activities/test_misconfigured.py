"""A database error no retry mends fails the append at once, naming the cause (an SRE's user
test: with the application role's SELECT on `sessions` revoked, an append waited ten minutes
without a word while the worker logged a traceback for each attempt)."""

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
    assert "SQLSTATE 42501" in info.value.message and "longthread db setup" in info.value.message
    assert await store.all_messages("acme", session) == []
    out = await env.run(activities.store_messages, _input(session))  # mended: it stores
    assert out.appended == 1


def test_an_outage_is_still_waited_out() -> None:
    """Only errors no retry mends fail at once: a lost connection is raised as it is, for the
    activity's retry policy to wait out."""
    from activities.running import misconfigured

    assert misconfigured(psycopg.OperationalError("server closed the connection")) is None
    assert misconfigured(psycopg.errors.DeadlockDetected("deadlock")) is None
