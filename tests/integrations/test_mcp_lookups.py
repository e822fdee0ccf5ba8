"""The MCP tools and `Conversation.messages` take what a window shows: a long id by its tail
(`…9f02873d`); `why` takes a message id as well as a turn; `search` results carry the turn
`why` and `replay` take (in process: the server over the test's own client)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from mcp import Client

from longthread.client import Longthread
from longthread.mcp import build_server
from memory.errors import InvalidInputError, NotFoundError
from memory.packing import shown_id
from tests.integrations.test_mcp import bad, call, refused, ticket

SHARED_TAIL = "0badcafe"


def _messages() -> list[dict[str, Any]]:
    """A ticket with UUID ids, one of them "7", and two that end alike."""
    messages = ticket(30)
    for message in messages:
        message["id"] = str(uuid.uuid4())
    messages[10]["id"] = "7"
    messages[20]["id"], messages[21]["id"] = (str(uuid.uuid4())[:-8] + SHARED_TAIL
                                              for _ in range(2))
    return messages


async def test_message_why_and_search_by_what_a_window_shows(
    worker: object, lt: Longthread,
) -> None:
    session, messages = "tails", _messages()
    ids = [m["id"] for m in messages]
    async with Client(build_server(lt, "acme-corp"), read_timeout_seconds=120) as mcp:
        await call(mcp, "append", session=session, messages=messages)
        record = await call(mcp, "compact", session=session, preserve_recent=6)
        whole = ids[3]
        tail = shown_id(whole)
        assert tail == f"…{whole[-8:]}"

        for asked in (tail, tail[1:]):
            page = await call(mcp, "message", session=session, id=asked)
            assert page["message"]["id"] == whole and page["total_chars"] > 0
        assert await refused(mcp, "message", session=session, id=f"…{SHARED_TAIL}") == bad(
            "message", f"id: '…{SHARED_TAIL}' is ambiguous: 2 message ids end with "
            f"'{SHARED_TAIL}' ('{ids[20]}', '{ids[21]}'); give the whole id")
        assert await refused(mcp, "message", session=session, id="…ffffffff") == bad(
            "message", f"id: no message '…ffffffff' in session {session!r}")

        # `why` by turn (an integer) or by the message's id (a string), whole or as a tail.
        by_turn = await call(mcp, "why", session=session, turn=4)
        assert by_turn["message"]["id"] == whole and by_turn["turn"] == 4
        assert by_turn["in_force"] == [record["id"]]
        assert await call(mcp, "why", session=session, turn=whole) == by_turn
        assert await call(mcp, "why", session=session, turn=tail) == by_turn
        numeric = await call(mcp, "why", session=session, turn="7")
        assert (numeric["turn"], numeric["message"]["id"]) == (11, "7")
        assert (await call(mcp, "why", session=session, turn=7))["message"]["id"] == ids[6]
        assert await refused(mcp, "why", session=session, turn="12") == bad(
            "why", f"turn: no message '12' in session {session!r}; a turn number goes as an "
            "integer")
        assert "is ambiguous" in await refused(mcp, "why", session=session,
                                               turn=SHARED_TAIL)
        assert await refused(mcp, "why", session=session, turn=0) == bad(
            "why", f"turn: must be a whole number from 1 to {2**31 - 1}, or a message id")
        assert "turns are 1 to 30" in await refused(mcp, "why", session=session, turn=31)

        # Each search result's `turn` is what `why` and `replay` take (`seq` stays, from 0).
        found = await call(mcp, "search", session=session, query="refund of 249 EUR", k=5)
        assert found["count"] == 5
        for hit in found["results"]:
            assert hit["turn"] == hit["seq"] + 1 == ids.index(hit["message"]["id"]) + 1
            asked = await call(mcp, "why", session=session, turn=hit["turn"])
            assert asked["message"]["id"] == hit["message"]["id"]


async def test_conversation_messages_take_a_shown_tail(worker: object, lt: Longthread) -> None:
    messages = _messages()
    ids = [m["id"] for m in messages]
    conv = await lt.conversation(f"conv-{uuid.uuid4().hex[:8]}", tenant="acme-corp")
    await conv.append_many(messages)
    got = await conv.messages([shown_id(ids[0]), ids[1][-8:], "7"])
    assert [m.id for m in got] == [ids[0], ids[1], "7"]
    with pytest.raises(InvalidInputError, match=f"ids: '{SHARED_TAIL}' is ambiguous: 2 "
                       f"message ids end with '{SHARED_TAIL}'"):
        await conv.messages([SHARED_TAIL])
    with pytest.raises(NotFoundError, match=r"ids: no message '…ffffffff' \(and 1 more\)"):
        await conv.messages(["…ffffffff", ids[0], "…fffffffe"])
    # Found as asked first: the tail search runs only for what was not.
    lookup = await conv.lookup([ids[2], shown_id(ids[3])])
    assert {i: seq for i, (seq, _) in lookup.found.items()} == {ids[2]: 2, shown_id(ids[3]): 3}
