"""`conversation(..., create=False)` attaches only to a session that exists, so a mistyped
ticket id fails loudly instead of starting an empty session (user test, finding 10)."""

from __future__ import annotations

import uuid

import pytest
from temporalio.service import RPCError
from temporalio.worker import Worker

from longthread.client import Longthread
from memory.errors import NotFoundError
from memory.models import Message
from memory.store.store import Store
from workflows.updates import workflow_id


async def test_attach_only_finds_running_and_closed_sessions_and_refuses_others(
    lt: Longthread, worker: Worker, store: Store
) -> None:
    tenant = f"attach-{uuid.uuid4().hex[:6]}"
    with pytest.raises(NotFoundError, match="no session 'tikcet-4711' for tenant"):
        await lt.conversation("tikcet-4711", tenant=tenant, create=False)
    with pytest.raises(RPCError):  # and it started nothing
        await lt.client.get_workflow_handle(workflow_id(tenant, "tikcet-4711")).describe()
    conv = await lt.conversation("ticket-4711", tenant=tenant)
    await conv.append({"id": "m1", "role": "user", "content": "Where is order 4711?"})
    again = await lt.conversation("ticket-4711", tenant=tenant, create=False)  # running
    assert [m.id for m in await again.window()] == ["m1"]
    await conv.close()
    await conv.handle.result()
    closed = await lt.conversation("ticket-4711", tenant=tenant, create=False)  # run ended
    assert [m.id for m in await closed.window()] == ["m1"]
    # No run in Temporal at all (its history past retention, say): the archive's messages
    # are what says the session exists.
    await store.append_messages(tenant, "ticket-4712", [Message(
        id="m1", role="user", content="Stored before any workflow ran.")])
    stored = await lt.conversation("ticket-4712", tenant=tenant, create=False)
    assert [m.id for m in await stored.window()] == ["m1"]
