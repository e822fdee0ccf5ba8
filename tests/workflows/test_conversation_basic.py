from __future__ import annotations

import logging

import pytest
from temporalio.worker import Worker

from longthread.client import Longthread
from memory.errors import InvalidInputError
from memory.store.store import Store


async def test_append_then_read_back_from_the_store(
    lt: Longthread, worker: Worker, store: Store
) -> None:
    conv = await lt.conversation("s1", tenant="acme")
    result = await conv.append_many([
        {"id": "m1", "role": "user", "content": "hello", "name": "Caroline"},
        {"id": "m2", "role": "assistant", "content": "hi Caroline"},
    ])
    assert (result.appended, result.duplicates, result.total) == (2, 0, 2)
    # Stored before the update returned: the store already has both, in order.
    assert [m.id for m in await store.all_messages("acme", "s1")] == ["m1", "m2"]
    again = await conv.append_many([{"id": "m2", "role": "assistant", "content": "hi Caroline"}])
    assert (again.appended, again.duplicates, again.total) == (0, 1, 2)
    assert [m.id for m in await conv.window()] == ["m1", "m2"]
    window = await conv.context("hello", 100)
    assert window.tokens <= 100 and "m1" in window.source_ids
    stats = await conv.settle(timeout=60)
    assert (stats.messages, stats.embedded, stats.pending_embedding) == (2, 2, 0)
    await conv.close()
    await conv.handle.result()
    assert [m.id for m in await store.all_messages("acme", "s1")] == ["m1", "m2"]


async def test_bad_input_is_refused_with_field(lt: Longthread, worker: Worker,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="temporalio")
    conv = await lt.conversation("s2", tenant="acme")
    await conv.append({"id": "ok", "role": "user", "content": "first"})
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.role"):
        await conv.append({"id": "x", "role": "wizard", "content": "hi"})
    with pytest.raises(InvalidInputError, match="orphan tool result"):
        await conv.append({"id": "t", "role": "tool", "tool_call_id": "nope", "content": "42"})
    with pytest.raises(InvalidInputError, match=r"messages\[1\]\.id.*'ok' was already appended"):
        await conv.append_many([{"id": "new", "role": "user", "content": "fine"},
                                {"id": "ok", "role": "user", "content": "changed"}])
    with pytest.raises(InvalidInputError, match="tenant"):
        await lt.conversation("s2", tenant="a b")
    with pytest.raises(InvalidInputError, match="limit per call is 1500000 bytes"):
        await conv.append_many([{"id": f"big{i}", "role": "user", "content": "é" * 200_000}
                                for i in range(4)])
    for bad_id in ("", "r" * 201, 5):
        with pytest.raises(InvalidInputError, match=r"^record_id: "):
            await conv.uncompact(bad_id)  # type: ignore[arg-type]
    for k in (-1, 0, 501, 10**9):
        with pytest.raises(InvalidInputError, match=r"^k: must be from 1 to 500"):
            await conv.search("first", k=k)
    # The refused batch stored nothing (not even its valid first message).
    assert [m.id for m in await conv.window()] == ["ok"]
    # The caller's mistake is answered to the caller: the worker logs no warning (with a
    # traceback) for it, as it would for its own faults.
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("temporalio")]


async def test_metadata_key_order_is_not_a_different_message(
    lt: Longthread, worker: Worker
) -> None:
    conv = await lt.conversation("s3", tenant="acme")
    first = {"id": "m", "role": "user", "content": "hi", "metadata": {"a": 1, "b": 2}}
    again = {"id": "m", "role": "user", "content": "hi", "metadata": {"b": 2, "a": 1}}
    await conv.append(first)
    result = await conv.append(again)
    assert (result.appended, result.duplicates) == (0, 1)


@pytest.mark.parametrize("tenant,session", [
    ("acme-corp", "JIRA-4711"), ("3f2b8a9e-1c4d-4e5f-9a7b-2c3d4e5f6a7b", "#4711/a b"[:5]),
    ("a-b", "c"), ("a", "b-c"),
])
async def test_ids_as_people_write_them(lt: Longthread, worker: Worker, tenant: str,
                                        session: str) -> None:
    conv = await lt.conversation(session, tenant=tenant)
    await conv.append({"id": f"{tenant}/{session}", "role": "user", "content": "hello there"})
    assert [m.id for m in await conv.window()] == [f"{tenant}/{session}"]
