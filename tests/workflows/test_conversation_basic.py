from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from longthread.client import Longthread
from memory.errors import InvalidInputError
from worker.settings import Settings


async def _lt(client: Client, task_queue: str) -> Longthread:
    return Longthread(client, Settings(task_queue=task_queue))


async def test_append_then_read_back(client: Client, worker: Worker, task_queue: str) -> None:
    lt = await _lt(client, task_queue)
    conv = await lt.conversation("s1", tenant="acme")
    result = await conv.append_many([
        {"id": "m1", "role": "user", "content": "hello", "name": "Caroline"},
        {"id": "m2", "role": "assistant", "content": "hi Caroline"},
    ])
    assert (result.appended, result.duplicates, result.total) == (2, 0, 2)
    again = await conv.append_many([{"id": "m2", "role": "assistant", "content": "hi Caroline"}])
    assert (again.appended, again.duplicates, again.total) == (0, 1, 2)
    assert [m.id for m in await conv.messages()] == ["m1", "m2"]
    assert (await conv.stats()).messages == 2


async def test_bad_input_is_refused_with_field(
    client: Client, worker: Worker, task_queue: str
) -> None:
    lt = await _lt(client, task_queue)
    conv = await lt.conversation("s2", tenant="acme")
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.role"):
        await conv.append({"id": "x", "role": "wizard", "content": "hi"})
    with pytest.raises(InvalidInputError, match="orphan tool result"):
        await conv.append({"id": "t", "role": "tool", "tool_call_id": "nope", "content": "42"})
    with pytest.raises(InvalidInputError, match="tenant"):
        await lt.conversation("s2", tenant="a-b")
    assert await conv.messages() == []
