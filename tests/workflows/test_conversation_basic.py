from __future__ import annotations

import pytest
from temporalio.worker import Worker

from longthread.client import Longthread
from memory.errors import InvalidInputError
from memory.store.store import Store


async def test_append_then_read_back_and_archive(
    lt: Longthread, worker: Worker, store: Store
) -> None:
    conv = await lt.conversation("s1", tenant="acme")
    result = await conv.append_many([
        {"id": "m1", "role": "user", "content": "hello", "name": "Caroline"},
        {"id": "m2", "role": "assistant", "content": "hi Caroline"},
    ])
    assert (result.appended, result.duplicates, result.total) == (2, 0, 2)
    again = await conv.append_many([{"id": "m2", "role": "assistant", "content": "hi Caroline"}])
    assert (again.appended, again.duplicates, again.total) == (0, 1, 2)
    assert [m.id for m in await conv.window()] == ["m1", "m2"]
    await conv.context("hello", 100)  # waits on nothing, but lets the loop archive
    stats = await conv.stats()
    assert (stats.messages, stats.window_messages) == (2, 2)
    await conv.close()
    await conv.handle.result()
    assert [m.id for m in await store.all_messages("acme", "s1")] == ["m1", "m2"]


async def test_bad_input_is_refused_with_field(lt: Longthread, worker: Worker) -> None:
    conv = await lt.conversation("s2", tenant="acme")
    await conv.append({"id": "ok", "role": "user", "content": "first"})
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.role"):
        await conv.append({"id": "x", "role": "wizard", "content": "hi"})
    with pytest.raises(InvalidInputError, match="orphan tool result"):
        await conv.append({"id": "t", "role": "tool", "tool_call_id": "nope", "content": "42"})
    with pytest.raises(InvalidInputError, match="already appended with other content"):
        await conv.append({"id": "ok", "role": "user", "content": "changed"})
    with pytest.raises(InvalidInputError, match="tenant"):
        await lt.conversation("s2", tenant="a-b")
    with pytest.raises(InvalidInputError, match="limit per call is 1500000 bytes"):
        await conv.append_many([{"id": f"big{i}", "role": "user", "content": "x" * 400_000}
                                for i in range(4)])
    assert [m.id for m in await conv.window()] == ["ok"]
