"""Erasing a session through the client (`Longthread.erase`): the archive's rows and every run
of the session's workflow go, a client that kept the id is refused at once with the reason,
and the tenant's other sessions carry on."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from longthread.audit import why_at
from longthread.client import Longthread
from longthread.verify import verify_session
from memory.errors import InvalidInputError, NotFoundError, SessionErasedError
from memory.store.erasure import erase_session
from memory.store.store import Store


async def _gone(client: Client, workflow: str, timeout: float = 30.0) -> bool:
    """Temporal deletes a run's history asynchronously: wait until describing it fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await client.get_workflow_handle(workflow).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return True
            raise
        await asyncio.sleep(0.3)
    return False


async def test_erase_removes_the_session_everywhere_and_its_id_is_refused(
    lt: Longthread, worker: Worker, store: Store, client: Client, migrated_url: str
) -> None:
    tenant = f"erase-{uuid.uuid4().hex[:8]}"
    conv = await lt.conversation("ticket-4711", tenant=tenant)
    other = await lt.conversation("ticket-4712", tenant=tenant)
    await conv.append_many([{"id": f"m{i}", "role": "user",
                             "content": f"My new address is {i} Elm Street."} for i in range(30)])
    await other.append({"id": "o1", "role": "user", "content": "Order 9 is late."})
    await conv.settle(timeout=60)
    assert (await conv.context("address", 200)).tokens > 0  # a served context is recorded

    erased = await lt.erase("ticket-4711", tenant, admin_url=migrated_url)

    assert not erased.archive.already and erased.archive.messages == 30
    assert erased.archive.rows["served_contexts"] >= 1 and erased.runs_deleted >= 1
    assert await _gone(client, conv.id)
    assert await store.all_messages(tenant, "ticket-4711") == []
    assert await store.served(tenant, "ticket-4711") == []
    # A read says it was erased, and when, not "no session" (an auditor knew it existed).
    for read in (lt.conversation("ticket-4711", tenant=tenant, create=False),
                 why_at(store, tenant, "ticket-4711", 3),
                 verify_session(store, tenant, "ticket-4711")):
        with pytest.raises(NotFoundError, match=r"^session: 'ticket-4711' of tenant .* was "
                                                r"erased on \d{4}-\d\d-\d\d \d\d:\d\d UTC"):
            await read
    # The id is refused, at once and saying why, not left waiting on a run that cannot open.
    for attempt in (lt.conversation("ticket-4711", tenant=tenant),
                    conv.append({"id": "m99", "role": "user", "content": "hello again"})):
        with pytest.raises(SessionErasedError, match=r"^session: 'ticket-4711' of tenant .* "
                                                     "was erased"):  # caught by its type
            await asyncio.wait_for(attempt, 30)
    assert await store.all_messages(tenant, "ticket-4711") == []
    # The other ticket is whole and still served.
    await other.append({"id": "o2", "role": "user", "content": "Any news?"})
    assert [m.id for m in await store.all_messages(tenant, "ticket-4712")] == ["o1", "o2"]
    # Erasing again finds nothing more to remove in the archive.
    again = await lt.erase("ticket-4711", tenant, admin_url=migrated_url)
    assert again.archive.already and not any(again.archive.rows.values())


async def test_a_run_still_going_when_the_archive_is_erased_refuses_at_once(
    lt: Longthread, worker: Worker, migrated_url: str
) -> None:
    """The archive goes first; until the Temporal step deletes the run (or if it failed), the
    run's writes are refused, not retried: a compaction fails the update saying why."""
    tenant = f"erase-{uuid.uuid4().hex[:8]}"
    conv = await lt.conversation("t-1", tenant=tenant)
    await conv.append_many([{"id": f"m{i}", "role": "user", "content": f"Line {i}."}
                            for i in range(20)])
    await erase_session(migrated_url, tenant, "t-1")  # the archive only
    for attempt in (conv.compact(preserve_recent=2),
                    conv.append({"id": "m99", "role": "user", "content": "more"})):
        with pytest.raises(InvalidInputError, match=r"^session: 't-1' of tenant .* was erased"):
            await asyncio.wait_for(attempt, 30)
    assert (await lt.erase("t-1", tenant, admin_url=migrated_url)).runs_deleted >= 1
