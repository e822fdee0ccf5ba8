"""`conversation(..., create=False)` attaches only to a session that exists, so a mistyped
ticket id fails loudly instead of starting an empty session (user test, finding 10)."""

from __future__ import annotations

import unicodedata
import uuid

import pytest
from temporalio.service import RPCError
from temporalio.worker import Worker

from longthread.client import Longthread
from memory.errors import InvalidInputError, NotFoundError
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


async def test_a_session_started_before_the_id_rules_stays_reachable(
    lt: Longthread, worker: Worker, store: Store
) -> None:
    """A new session's id must be NFC and visible (session 29); one stored before under a
    decomposed "Zoë" is still attached to, read and appended to, and its look-alike NFC
    spelling is a session of its own, not a way in."""
    tenant = f"attach-{uuid.uuid4().hex[:6]}"
    decomposed = unicodedata.normalize("NFD", "Zoë")
    with pytest.raises(InvalidInputError, match=r"^session: must be in Unicode NFC form"):
        await lt.conversation(decomposed, tenant=tenant)
    await store.append_messages(tenant, decomposed, [Message(
        id="m1", role="user", content="Stored before the rule.")])
    for create in (False, True):
        old = await lt.conversation(decomposed, tenant=tenant, create=create)
        assert [m.id for m in await old.window()] == ["m1"]
    await old.append({"id": "m2", "role": "user", "content": "Still open."})
    assert [m.id for m in await old.window()] == ["m1", "m2"]
    with pytest.raises(NotFoundError):
        await lt.conversation("Zoë", tenant=tenant, create=False)
