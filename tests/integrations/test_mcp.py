"""`longthread mcp` as a real subprocess, driven by the mcp SDK's own client: over stdio and
over streamable HTTP, against the embedded stack (the worker runs in this process)."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, TextContent
from temporalio.client import Client as TemporalClient

from longthread import cli
from longthread.client import Longthread
from longthread.mcp import build_server
from worker.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"append", "context", "message", "compact", "uncompact", "ledger", "replay", "why",
         "search"}


@pytest.fixture
def env(client: TemporalClient, task_queue: str, app_url: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LONGTHREAD_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "LONGTHREAD_DATABASE_URL": app_url, "LONGTHREAD_TASK_QUEUE": task_queue,
            "LONGTHREAD_DATA_DIR": str(tmp_path / "nodata")}


def ticket(n: int) -> list[dict[str, Any]]:
    lines = ["My order 4711 arrived with a cracked screen.", "Sorry! Can you send a photo?",
             "Photo sent. I would like a refund of 249 EUR.", "Refund approved: 249 EUR.",
             "When will the money arrive?", "Within 5 working days."]
    return [{"id": f"m{i}", "role": ("user", "assistant")[i % 2],
             "content": f"{lines[i % len(lines)]} (message {i})"} for i in range(n)]


async def call(mcp: Client, tool: str, **arguments: Any) -> Any:
    """A successful call's structured result (a tool that returns a list or None has it
    wrapped as {"result": ...})."""
    result = await mcp.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    data = result.structured_content
    return data["result"] if isinstance(data, dict) and set(data) == {"result"} else data


def text_of(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def bad(tool: str, problems: str) -> str:
    """A refusal's whole text: the SDK's prefix, then one line per problem."""
    return f"Error executing tool {tool}: {problems}"


async def refused(mcp: Client, tool: str, **arguments: Any) -> str:
    result = await mcp.call_tool(tool, arguments)
    assert result.is_error, result
    return text_of(result)


async def test_stdio_every_tool_and_clear_errors(
    worker: object, env: dict[str, str], lt: Longthread,
) -> None:
    secret = await lt.conversation("secret", tenant="other-tenant")
    await secret.append({"id": "x1", "role": "user", "content": "other tenant's data"})
    params = StdioServerParameters(command=sys.executable, cwd=ROOT, env=env,
                                   args=["-m", "longthread", "mcp", "--tenant", "acme-corp"])
    async with Client(params, read_timeout_seconds=120) as mcp:
        listed = await mcp.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        # The README and `longthread mcp --help` name every tool the server lists.
        readme = (ROOT / "README.md").read_text().split("`longthread mcp` serves", 1)[1]
        assert all(f"`{name}`" in readme.split(" to MCP clients", 1)[0] for name in TOOLS)
        help_text = cli.mcp.__doc__ or ""
        assert all(name in help_text.split(") to MCP", 1)[0] for name in TOOLS), help_text
        schema = next(t for t in listed.tools if t.name == "append").input_schema
        assert set(schema["required"]) == {"session", "messages"}

        session = "ticket-4711"
        assert await call(mcp, "append", session=session, messages=ticket(30)) == {
            "appended": 30, "duplicates": 0, "total": 30}
        again = await call(mcp, "append", session=session, messages=ticket(30))
        assert (again["appended"], again["duplicates"]) == (0, 30)

        record = await call(mcp, "compact", session=session, preserve_recent=6, focus="refund")
        assert record["trigger"] == "manual" and len(record["covered_ids"]) == 24
        listed_records = (await call(mcp, "ledger", session=session))["records"]
        assert [r["id"] for r in listed_records] == [record["id"]]

        window = await call(mcp, "context", session=session, query="refund of 249 EUR",
                            max_tokens=500)
        assert window["tokens"] <= 500 and window["budget"] == 500
        # The refund request is in the window, verbatim: m2, m8, m14 and m20 all carry it
        # (the ticket repeats every 6 messages), and near-duplicates keep one of them; which
        # one turns on the last digits of their vectors.
        requests = {f"m{i}" for i in range(24) if i % 6 == 2}
        assert requests & {i for m in window["messages"] for i in m["source_ids"]}
        assert {m["section"] for m in window["messages"]} >= {"retrieved", "recent"}

        await (await lt.conversation(session, tenant="acme-corp")).settle()
        replayed = await call(mcp, "replay", session=session, turn=30)
        assert replayed["matches"] is True and replayed["served"]["turn"] == 30
        assert replayed["served"]["seq"] == replayed["served_at_turn"][-1]
        by_seq = await call(mcp, "replay", session=session, turn=0,
                            seq=replayed["served_at_turn"][0])
        assert by_seq["matches"] is True and by_seq["served"]["turn"] == 30
        found = await call(mcp, "search", session=session, query="cracked screen", k=3)
        assert found["query"] == "cracked screen" and found["count"] == 3
        assert found["results"][0]["message"]["content"].startswith("My order 4711 arrived")
        why = await call(mcp, "why", session=session, turn=3)
        assert why["message"]["id"] == "m2" and why["in_force"] == [record["id"]]
        assert [r["id"] for r in why["records"]] == [record["id"]]
        assert [s["record"] for s in why["steps"]] == [record["id"]]
        assert why["steps"][0]["why"] == record["reason"]
        assert why["now"].startswith(f"out of the window since {record['id']}")
        assert [s["id"] for s in why["carried_by"]] == [record["summary"]["id"]]
        kept = await call(mcp, "why", session=session, turn=30)
        assert kept["in_force"] == [] and kept["records"] == []
        assert "turns are 1 to 30" in await refused(mcp, "why", session=session, turn=31)

        # A body over 64 KB stands in the window as a preview naming its id; `message`
        # reads it whole, a page at a time.
        body = "".join(f"row {n}: status ok\n" for n in range(5000))
        await call(mcp, "append", session=session, messages=[
            {"id": "dump", "role": "user", "content": body}])
        shown = await call(mcp, "why", session=session, turn=31)
        assert shown["message"]["content"].endswith("characters in full: `message` with id "
                                                    "'dump']")
        assert len(shown["message"]["content"]) < 2_100
        window = await call(mcp, "context", session=session, max_tokens=30_000)
        assert any(m["content"].endswith("in full in the archive as dump]")
                   for m in window["messages"])
        pages: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = await call(mcp, "message", session=session, id="dump", offset=offset,
                              max_chars=40_000)
            assert page["total_chars"] == len(body) and page["offset"] == offset
            assert page["message"]["id"] == "dump" and page["message"]["role"] == "user"
            pages.append(page["message"]["content"])
            offset = page["next_offset"]
        assert "".join(pages) == body and len(pages) == 3
        assert "id: no message 'nope'" in await refused(mcp, "message", session=session,
                                                        id="nope")
        assert "id: must not be blank" in await refused(mcp, "message", session=session,
                                                        id="  ")
        for past in (len(body), len(body) + 1):  # next_offset is null after the last page
            assert f"offset: must be less than {len(body):,}" in await refused(
                mcp, "message", session=session, id="dump", offset=past)

        undo = await call(mcp, "uncompact", session=session, record_id=record["id"])
        assert undo["trigger"] == "undo" and undo["undoes"] == record["id"]
        assert undo["actor"] == record["actor"] == f"mcp:{getpass.getuser()}"  # who asked

        # Bad input comes back as a tool error that names the field.
        assert "role" in await refused(mcp, "append", session=session, messages=[
            {"id": "z", "role": "robot", "content": "beep"}])
        assert "tool_call_id" in await refused(mcp, "append", session=session, messages=[
            {"id": "z2", "role": "tool", "tool_call_id": "nope", "content": "orphan"}])
        assert "max_tokens" in await refused(mcp, "context", session=session, max_tokens=0)
        assert "messages" in await refused(mcp, "append", session=session, messages=[])
        assert "record_id" in await refused(mcp, "uncompact", session=session,
                                            record_id="c999")
        # Scoped to its tenant: another tenant's session does not exist here.
        assert "no session" in await refused(mcp, "context", session="secret")
        assert "no session" in await refused(mcp, "ledger", session="never-made")
        assert "no session" in await refused(mcp, "message", session="secret", id="x1")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@asynccontextmanager
async def http_server(env: dict[str, str], tenant: str) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longthread", "mcp", "--port", str(port), "--tenant", tenant,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(120):
            while not _listening(port):
                assert proc.returncode is None, await proc.stderr.read() if proc.stderr else b""
                await asyncio.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_streamable_http_on_loopback(worker: object, env: dict[str, str]) -> None:
    tenant = str(uuid.uuid4())  # a UUID is an ordinary tenant id
    async with http_server(env, tenant) as url, Client(url, read_timeout_seconds=120) as mcp:
        assert {t.name for t in (await mcp.list_tools()).tools} == TOOLS
        appended = await call(mcp, "append", session="chat-1", messages=[
            {"id": "q", "role": "user", "content": "Which gate for flight SK 4411?"},
            {"id": "c", "role": "assistant", "content": "",
             "tool_calls": [{"id": "t1", "name": "gate", "arguments": '{"flight": "SK4411"}'}]},
            {"id": "r", "role": "tool", "tool_call_id": "t1", "content": "Gate B12"}])
        assert appended["appended"] == 3
        window = await call(mcp, "context", session="chat-1", max_tokens=300)
        assert [m["source_ids"] for m in window["messages"]] == [["q"], ["c"], ["r"]]
        assert window["messages"][1]["tool_calls"][0]["name"] == "gate"
        assert await call(mcp, "ledger", session="chat-1") == {
            "records": [], "offset": 0, "total": 0, "next_offset": None}
        assert await call(mcp, "compact", session="chat-1", preserve_recent=100) == {
            "compacted": False, "reason": "nothing to compact: the window holds nothing older "
            "than its 100 most recent messages (preserve_recent) besides system and pinned ones"}
        text = await refused(mcp, "search", session="chat-1", query="")
        assert "query" in text
        raw = await mcp.call_tool("context", {"session": "chat-1", "max_tokens": 300})
        assert json.loads(text_of(raw))["tokens"] == window["tokens"]
        assert window["unanswered_calls"] == [] and window["request"] is None
        # An object in the text result too (a bare list came as {"result": [...]}, and as
        # blank text when empty).
        found = await mcp.call_tool("search", {"session": "chat-1", "query": "gate", "k": 2})
        assert json.loads(text_of(found)) == found.structured_content
        assert found.structured_content is not None
        assert found.structured_content["count"] == 2 == len(found.structured_content["results"])

        # The agent appends its next call and asks for the window before the tool answers:
        # the call is in the window and named as unanswered; each provider's request leaves
        # it out (both APIs refuse a call with no result) and keeps the answered pair.
        await call(mcp, "append", session="chat-1", messages=[
            {"id": "c2", "role": "assistant", "content": "",
             "tool_calls": [{"id": "t2", "name": "weather", "arguments": '{"at": "OSL"}'}]}])
        pending = await call(mcp, "context", session="chat-1", max_tokens=300)
        assert pending["unanswered_calls"] == ["t2"] and pending["request"] is None
        assert pending["messages"][-1]["tool_calls"][0]["id"] == "t2"
        openai = await call(mcp, "context", session="chat-1", max_tokens=300, format="openai")
        assert [m["role"] for m in openai["request"]["messages"]] == ["user", "assistant", "tool"]
        assert openai["request"]["messages"][1]["tool_calls"][0]["id"] == "t1"
        anthropic = await call(mcp, "context", session="chat-1", max_tokens=300,
                               format="anthropic")
        blocks = [b for m in anthropic["request"]["messages"] for b in m["content"]]
        assert [b["type"] for b in blocks] == ["text", "tool_use", "tool_result"]
        assert anthropic["request"]["system"] == []
        responses = await call(mcp, "context", session="chat-1", max_tokens=300,
                               format="responses")
        assert [i["type"] for i in responses["request"]["input"]] == [
            "message", "function_call", "function_call_output"]  # c's call only: c2 waits
        assert "format" in await refused(mcp, "context", session="chat-1", format="xml")


async def test_ledger_pages_bounds_and_argument_errors(worker: object, lt: Longthread) -> None:
    """In process (the server over the test's own client): the ledger comes a page at a
    time, an empty one still says so in text, and bad or unknown arguments come back one
    line per problem, naming the argument and its limit."""
    async with Client(build_server(lt, "acme-corp"), read_timeout_seconds=120) as mcp:
        session = "pages"
        await call(mcp, "append", session=session, messages=ticket(30))
        empty = await mcp.call_tool("ledger", {"session": session})
        assert not empty.is_error and json.loads(text_of(empty)) == {
            "records": [], "offset": 0, "total": 0, "next_offset": None}
        assert empty.structured_content == json.loads(text_of(empty))

        made: list[str] = []
        for n in range(5):  # compact, undo it, compact again...: five records
            if n % 2 == 0:
                record = await mcp.call_tool("compact", {"session": session,
                                                         "preserve_recent": 6})
                # An object, not {"result": ...}: the same shape as uncompact's and context's.
                assert record.structured_content is not None
                assert record.structured_content["trigger"] == "manual"
                made.append(record.structured_content["id"])
            else:
                made.append((await call(mcp, "uncompact", session=session,
                                        record_id=made[-1]))["id"])
        whole = await call(mcp, "ledger", session=session)
        assert [r["id"] for r in whole["records"]] == made
        assert (whole["total"], whole["next_offset"]) == (5, None)

        ids: list[str] = []
        offsets: list[int | None] = []
        offset: int | None = 0
        while offset is not None:
            page = await call(mcp, "ledger", session=session, offset=offset, limit=2)
            assert page["total"] == 5 and page["offset"] == offset
            assert [r["seq"] for r in page["records"]] == list(range(offset, offset + 2))[
                :len(page["records"])]
            ids += [r["id"] for r in page["records"]]
            offset = page["next_offset"]
            offsets.append(offset)
        assert ids == made and offsets == [2, 4, None]
        end = await call(mcp, "ledger", session=session, offset=5)  # where new records go
        assert (end["records"], end["next_offset"]) == ([], None)
        refusals: list[tuple[str, dict[str, Any], str]] = [
            ("ledger", {"offset": 6}, "offset: must be at most 5, the ledger's length"),
            ("ledger", {"limit": 0}, "limit: must be at least 1"),
            ("ledger", {"limit": 201, "offset": -1},
             "offset: must be at least 0\nlimit: must be at most 200"),
            # replay's turn has the bound why's and seq's have.
            ("replay", {"turn": 10**12}, f"turn: must be at most {2**31 - 1}"),
            # Pydantic's own text (its error count, its URL) does not reach the model.
            ("context", {"max_tokens": 0}, "max_tokens: must be at least 1"),
            ("append", {"messages": []}, "messages: must hold at least 1 item"),
            ("append", {"messages": [{"id": "z", "role": "robot", "content": "beep"}]},
             "messages[0].role: 'robot' is not one of system, user, assistant, tool"),
            ("append", {"messages": [{"id": " ", "role": "user", "content": "x"}]},
             "messages[0].id: must not be blank"),
            ("search", {"query": "x", "k": "many"},
             "k: must be a valid integer, unable to parse string as an integer"),
            ("why", {}, "turn: required"),
            # An unknown argument is refused by name, not silently dropped.
            ("ledger", {"bogus_arg": 1},
             "bogus_arg: unknown argument (ledger takes session, offset, limit)"),
        ]
        for tool, arguments, problems in refusals:
            assert await refused(mcp, tool, session=session, **arguments) == bad(
                tool, problems), (tool, arguments)
        schema = next(t for t in (await mcp.list_tools()).tools if t.name == "ledger")
        assert schema.input_schema["additionalProperties"] is False
