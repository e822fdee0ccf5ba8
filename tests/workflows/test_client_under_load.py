"""What a platform engineer's load test broke in the client: first calls fanned out at once
opened a pool each; an update whose answer the server's deadline cut off was raised (though
its batch was often stored) instead of sent again; each failed try left an unretrieved
future; and a full or misspelled database was reported as a bare pool timeout."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.providers.embedders import LocalEmbedder
from longthread.client import Longthread
from longthread.settings import Settings
from memory.errors import LongthreadError
from memory.store.db import open_archive
from memory.store.store import Store


def _deadline() -> WorkflowUpdateRPCTimeoutOrCancelledError:
    """What the SDK raises when the server's wait for an update runs out."""
    error = WorkflowUpdateRPCTimeoutOrCancelledError()
    error.__cause__ = RPCError("context deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED,
                               b"")
    return error


async def test_first_calls_at_once_open_one_pool(client: Client, task_queue: str,
                                                 app_url: str, embedder: LocalEmbedder,
                                                 tmp_path: Path) -> None:
    lt = Longthread(client, Settings(task_queue=task_queue, database_url=app_url,
                                     data_dir=tmp_path), embedder=embedder)
    try:
        stores = await asyncio.gather(*[lt.store() for _ in range(40)])
        assert len({id(store) for store in stores}) == 1
        assert len({id(store.pool) for store in stores}) == 1
    finally:
        await lt.close()


async def test_an_update_whose_answer_the_deadline_cut_off_is_sent_again(
    lt: Longthread, worker: Worker, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = await lt.conversation("deadline", tenant="load")
    real = lt.client.execute_update_with_start_workflow
    sent: list[str] = []

    async def answer_lost_once(*args: Any, **kwargs: Any) -> Any:
        sent.append(kwargs["id"])
        result = await real(*args, **kwargs)  # applied: the batch is stored
        if len(sent) == 1:
            raise _deadline()  # and the answer is lost on the way back
        return result

    monkeypatch.setattr(lt.client, "execute_update_with_start_workflow", answer_lost_once)
    result = await conv.append_many([{"id": f"m{n}", "role": "user", "content": f"note {n}"}
                                     for n in range(5)])
    assert len(sent) == 2 and sent[0] == sent[1]  # sent again under the same update id
    assert (result.appended, result.duplicates) == (5, 0)  # its first answer, not "duplicates"
    assert await store.count("load", "deadline") == 5


async def test_a_failed_try_leaves_no_unretrieved_future(
    lt: Longthread, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK puts a failed call's error on the start operation too; each retry printed
    "Future exception was never retrieved" when that future was collected."""
    conv = await lt.conversation("futures", tenant="load")
    real = lt.client.execute_update_with_start_workflow
    tries = 0

    async def fails_twice(*args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        if tries <= 2:  # as the SDK fails a call: the start's future gets the error too
            error = RPCError("context deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")
            kwargs["start_workflow_operation"]._workflow_handle.set_exception(error)
            raise _deadline()
        return await real(*args, **kwargs)

    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        monkeypatch.setattr(lt.client, "execute_update_with_start_workflow", fails_twice)
        await conv.append_many([{"id": "a", "role": "user", "content": "hello"}])
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert tries == 3
    assert [c["message"] for c in reported] == []


async def test_an_opening_that_fails_fails_its_waiters_together_and_is_tried_again(
    client: Client, task_queue: str, app_url: str, embedder: LocalEmbedder, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a lock, each waiter ran the whole failing open in turn: with Postgres down, the
    40th of 40 calls failed after 40 pool timeouts."""
    opened = 0

    async def down(url: str, **options: Any) -> Any:
        nonlocal opened
        opened += 1
        await asyncio.sleep(0.5)
        raise ConnectionError("archive database unreachable (test): down")

    monkeypatch.setattr("longthread.client.open_archive", down)
    lt = Longthread(client, Settings(task_queue=task_queue, database_url=app_url,
                                     data_dir=tmp_path), embedder=embedder)
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*[lt.store() for _ in range(20)], return_exceptions=True)
    assert asyncio.get_running_loop().time() - started < 5
    assert opened == 1 and all(isinstance(r, ConnectionError) for r in results)
    with pytest.raises(ConnectionError):
        await lt.store()  # a later call tries again
    assert opened == 2


async def _cancellable(*args: Any, **kwargs: Any) -> Any:
    """As the SDK answers a call whose task is cancelled while it waits."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError as err:
        raise WorkflowUpdateRPCTimeoutOrCancelledError() from err


async def test_the_callers_own_cancellation_propagates_as_cancellation(
    lt: Longthread, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = await lt.conversation("cancelled", tenant="load")
    monkeypatch.setattr(lt.client, "execute_update_with_start_workflow", _cancellable)
    batch = [{"id": "a", "role": "user", "content": "hello"}]
    task = asyncio.create_task(conv.append_many(batch))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(TimeoutError):  # what asyncio.timeout() makes of it
        async with asyncio.timeout(0.2):
            await conv.append_many(batch)


@pytest.mark.parametrize("error", [
    _deadline(), RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")])
async def test_an_update_that_is_not_idempotent_is_not_resent_once_it_may_have_run(
    lt: Longthread, worker: Worker, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """A compaction accepted before the deadline (or before the server went away while the
    SDK waited for its outcome), sent again after a continue-as-new, would run twice:
    Temporal knows an update's id only within its run."""
    # a session of its own per case: a session's workflow stays on its first task queue
    conv = await lt.conversation(f"manual-{type(error).__name__}", tenant="load")
    tries = 0

    async def fails(*args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        raise error

    monkeypatch.setattr(lt.client, "execute_update_with_start_workflow", fails)
    deadline = isinstance(error, WorkflowUpdateRPCTimeoutOrCancelledError)
    with pytest.raises(LongthreadError) as caught:  # both say it may have run (session 32)
        await conv.compact()
    assert tries == 1
    why = "the server's deadline ran out under load" if deadline else "unavailable"
    assert str(caught.value) == (
        f"compact: Temporal gave no answer in time ({why}); it may have been applied: check "
        "the ledger (`longthread ledger SESSION`) before sending it again")


async def test_a_database_the_pool_cannot_open_is_named_with_libpq_s_reason(
    app_url: str,
) -> None:
    url = make_conninfo(app_url, dbname="no_such_archive")
    with pytest.raises(ConnectionError) as caught:
        await open_archive(url, timeout=1)
    message = str(caught.value)
    assert message.startswith("archive database unreachable (longthread_tester@")
    assert 'database "no_such_archive" does not exist' in message
    assert "tester-password" not in message
