"""The Agents SDK's own Runner over a LongthreadSession, against a loopback Chat Completions
server, on the real embedded Temporal and Postgres."""

from __future__ import annotations

import copy
import uuid
from typing import Any, cast

import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    TResponseInputItem,
    function_tool,
)
from agents.memory import Session
from openai import AsyncOpenAI
from pydantic_core import to_jsonable_python
from temporalio.client import Client

from activities.conversation import ConversationActivities
from longthread.client import Longthread
from longthread.integrations.openai_agents import LongthreadSession
from memory.errors import InvalidInputError
from memory.store.store import Store
from tests.activities.loopback import loopback
from tests.integrations.llm import openai_chat, openai_tool_call, sent_messages
from worker.main import build_worker

ORDERS = {"A1": "shipped Monday from Leeds", "B2": "delayed: carrier strike until Friday"}
NO_TRACING = RunConfig(tracing_disabled=True)


class RecordingSession(LongthreadSession):
    """Keeps a copy of every item the SDK hands over, to compare with what comes back."""

    added: list[Any]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        self.added = [*getattr(self, "added", []), *to_jsonable_python(copy.deepcopy(items))]
        await super().add_items(items)


def make_agent(openai: AsyncOpenAI, looked_up: list[str]) -> Agent[None]:
    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look up the shipping status of an order."""
        looked_up.append(order_id)
        return f"order {order_id}: {ORDERS.get(order_id, 'unknown')}"

    model = OpenAIChatCompletionsModel(model="gpt-test", openai_client=openai)
    return Agent(name="support", instructions="You answer order questions.",
                 tools=[lookup_order], model=model)


async def test_agent_turns_with_a_tool_survive_a_worker_restart(
    client: Client, task_queue: str, activities: ConversationActivities, lt: Longthread,
    store: Store,
) -> None:
    looked_up: list[str] = []
    session_id = f"agent-{uuid.uuid4()}"
    with loopback() as provider:
        async with AsyncOpenAI(base_url=provider.url + "/v1", api_key="test-key",
                               max_retries=0) as openai:  # closed: no unawaited aclose
            agent = make_agent(openai, looked_up)
            async with build_worker(client, task_queue, activities.all(), max_cached_workflows=0):
                session = RecordingSession(await lt.conversation(session_id, tenant="acme-corp"))
                assert isinstance(session, Session)  # the SDK's runtime-checkable protocol
                for call_id, order, answer in (("call_a", "A1", "A1 shipped on Monday."),
                                               ("call_b", "B2", "B2 is delayed until Friday.")):
                    provider.reply(openai_tool_call(call_id, "lookup_order", {"order_id": order}))
                    provider.reply(openai_chat(answer))
                    result = await Runner.run(agent, f"Where is order {order}?", session=session,
                                              run_config=NO_TRACING)
                    assert result.final_output == answer
                before_restart = await session.get_items()

            # No worker at all: the history is read from the store, whole and exact.
            assert await session.get_items() == before_restart == session.added
            kinds = [i.get("type", "message") for i in before_restart]
            assert kinds == ["message", "function_call", "function_call_output", "message"] * 2

            async with build_worker(client, task_queue, activities.all(), max_cached_workflows=0):
                provider.reply(openai_chat("A1 has shipped; B2 waits for the strike to end."))
                result = await Runner.run(agent, "Summarize both orders.", session=session,
                                          run_config=NO_TRACING)
                after = await session.get_items()

    assert looked_up == ["A1", "B2"]  # the SDK really ran the tool, once per call
    assert result.final_output.startswith("A1 has shipped")
    # The turn after the restart was sent the whole history, tool calls and results included.
    sent = sent_messages(provider.requests[-1])
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant",
                                         "user", "assistant", "tool", "assistant", "user"]
    assert sent[2]["tool_calls"][0]["id"] == "call_a" and sent[3]["tool_call_id"] == "call_a"
    assert "delayed: carrier strike" in sent[7]["content"]
    assert after[:8] == before_restart and len(after) == 10
    assert after == session.added
    # Every item is archived under a stable id, in order, in the tenant given.
    stored = await store.all_messages("acme-corp", session_id)
    assert [m.id.split("-")[1] for m in stored] == [str(n) for n in range(10)]
    assert stored[1].tool_calls[0].id == "call_a" and stored[2].tool_call_id == "call_a"


async def test_compaction_pop_and_clear_through_the_session(
    worker: object, lt: Longthread, store: Store,
) -> None:
    session_id = f"agent-{uuid.uuid4()}"
    conv = await lt.conversation(session_id, tenant="acme")
    session = LongthreadSession(conv)
    items: list[Any] = []
    for n in range(6):
        items += [{"role": "user", "content": f"Question {n}: what about parcel P{n}?"},
                  {"type": "function_call", "call_id": f"c{n}", "name": "track",
                   "arguments": f'{{"parcel": "P{n}"}}', "id": "__fake_id__"},
                  {"type": "function_call_output", "call_id": f"c{n}",
                   "output": f"P{n} is in depot {n}"},
                  {"id": "__fake_id__", "type": "message", "role": "assistant",
                   "status": "completed", "content": [{"type": "output_text", "annotations": [],
                                                       "text": f"P{n} waits in depot {n}."}]}]
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.get_items(limit=3) == items[-3:]

    record = await conv.compact(preserve_recent=4)
    assert record is not None
    compacted = await session.get_items()
    assert compacted[0]["role"] == "system"  # type: ignore[typeddict-item]
    assert "Summary of" in str(compacted[0]["content"])  # type: ignore[typeddict-item]
    assert compacted[1:] == items[-4:]  # the kept turn, verbatim, its tool unit whole

    # pop: the newest item leaves the window (undoably); the archive keeps it.
    popped = await session.pop_item()
    assert popped == items[-1]
    assert await session.get_items() == compacted[:-1]
    # Popping a tool result takes its call with it: never a result without its call.
    assert await session.pop_item() == items[-2]
    assert await session.get_items() == compacted[:-3]
    ledger = await conv.ledger()
    assert [r.trigger for r in ledger][-2:] == ["pop", "pop"]
    await conv.uncompact(ledger[-1].id)
    assert await session.get_items() == compacted[:-1]

    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    assert len(await store.all_messages("acme", session_id)) == len(items)
    await session.add_items([{"role": "user", "content": "A fresh start."}])
    assert await session.get_items() == [{"role": "user", "content": "A fresh start."}]
    assert (await conv.ledger())[-1].trigger == "clear"


async def test_messages_from_other_clients_come_back_as_responses_items(
    worker: object, lt: Longthread,
) -> None:
    conv = await lt.conversation(f"agent-{uuid.uuid4()}", tenant="acme")
    await conv.append_many([
        {"id": "m1", "role": "system", "content": "Be brief."},
        {"id": "m2", "role": "user", "content": "Weather in Oslo?"},
        {"id": "m3", "role": "assistant", "content": "Checking.",
         "tool_calls": [{"id": "t1", "name": "weather", "arguments": '{"city": "Oslo"}'}]},
        {"id": "m4", "role": "tool", "tool_call_id": "t1", "content": "-3 C, snow"}])
    assert await LongthreadSession(conv).get_items() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "t1", "name": "weather",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "t1", "output": "-3 C, snow"}]
    session = LongthreadSession(conv)
    with pytest.raises(InvalidInputError, match=r"^items\[1\]\.role: 'robot' is not one of"):
        bad: Any = [{"role": "user", "content": "fine"}, {"role": "robot", "content": "beep"}]
        await session.add_items(bad)
    with pytest.raises(InvalidInputError, match=r"^items\[0\]\.content: contains a NUL"):
        nul: Any = [{"role": "user", "content": "a\x00b"}]
        await session.add_items(nul)
    assert len(await session.get_items()) == 5  # the refused turns stored nothing


async def test_large_tool_outputs_are_previews_in_the_window_and_whole_in_the_archive(
    worker: object, lt: Longthread, store: Store,
) -> None:
    """A turn bigger than one Temporal payload is appended in several batches. The items come
    back as the window counts them: an output over 64 KB as its preview (ut27: returned whole,
    six 400 KB outputs made a 3,300-token window 680,000 tokens), whole from the archive."""
    session_id = f"agent-{uuid.uuid4()}"
    conv = await lt.conversation(session_id, tenant="acme")
    session = LongthreadSession(conv)
    items: list[Any] = [{"role": "user", "content": "Dump the logs."}]
    for n in range(4):
        items += [{"type": "function_call", "call_id": f"log{n}", "name": "read_log",
                   "arguments": f'{{"part": {n}}}'},
                  {"type": "function_call_output", "call_id": f"log{n}",
                   "output": f"part {n}: " + "line of log output\n" * 30_000}]  # ~570 KB each
    await session.add_items(items)
    got = cast(list[dict[str, Any]], await session.get_items())
    assert len(got) == len(items)
    by_call = {m.tool_call_id: m.id for m in await store.all_messages("acme", session_id)
               if m.role == "tool"}
    for sent, back in zip(items, got, strict=True):
        if sent.get("type") != "function_call_output":
            assert back == sent
            continue
        assert {k: v for k, v in back.items() if k != "output"} == {
            k: v for k, v in sent.items() if k != "output"}
        assert back["output"].startswith(sent["output"][:2000])
        stored_id = by_call[sent["call_id"]]
        assert back["output"].endswith(f"[… {len(sent['output'].encode())} bytes in full in "
                                       f"the archive as {stored_id}]")
        assert len(back["output"]) < 2200
    stats = await conv.stats()
    assert sum(len(str(i)) for i in got) < 8 * stats.window_tokens  # what the window counts
    stored = await store.all_messages("acme", session_id)
    assert len(stored) == 9 and all(len(m.content) < 600_000 for m in stored)
    whole = await conv.messages([m.id for m in stored if m.role == "tool"])
    assert sorted(m.content for m in whole) == sorted(
        i["output"] for i in items if i.get("type") == "function_call_output")


async def test_a_turn_with_one_message_too_large_is_refused_before_any_is_sent(
    worker: object, lt: Longthread, store: Store,
) -> None:
    """ut27: the call went in, its 1.7 MB result was refused, and the error named index 0."""
    session_id = f"agent-{uuid.uuid4()}"
    session = LongthreadSession(await lt.conversation(session_id, tenant="acme"))
    items: list[Any] = [{"type": "function_call", "call_id": "big", "name": "dump",
                         "arguments": "{}"},
                        {"type": "function_call_output", "call_id": "big",
                         "output": "x" * 1_700_000}]
    with pytest.raises(InvalidInputError, match=r"^items\[1\]\.output: the message is"):
        await session.add_items(items)
    assert await store.count("acme", session_id) == 0
    arguments: list[Any] = [{"type": "function_call", "call_id": "w", "name": "write_file",
                              "arguments": '{"text": "' + "y" * 1_700_000 + '"}'}]
    with pytest.raises(InvalidInputError, match=r"^items\[0\]: the message is"):  # kept whole
        await session.add_items(arguments)


async def test_items_added_twice_are_a_repeat_stored_twice_under_their_own_ids(
    worker: object, lt: Longthread, store: Store,
) -> None:
    """What `add_items` promises: equal items are kept apart, in one call or two (items carry
    no ids, so a repeat is taken as said again, never silently dropped)."""
    session_id = f"agent-{uuid.uuid4()}"
    session = LongthreadSession(await lt.conversation(session_id, tenant="acme"))
    turn: list[Any] = [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok"},
                       {"role": "user", "content": "ok"}]
    await session.add_items(turn)
    await session.add_items(turn)
    assert await session.get_items() == turn + turn
    stored = await store.all_messages("acme", session_id)
    assert len({m.id for m in stored}) == 6


async def test_reasoning_stays_with_its_calls_and_a_late_result_finds_its_call(
    worker: object, lt: Longthread,
) -> None:
    """ut27: a compaction archived a reasoning item and kept the function_call it led to
    (the Responses API refuses that), and archived a call whose result came later, which then
    stood alone in the window."""
    conv = await lt.conversation(f"agent-{uuid.uuid4()}", tenant="acme")
    session = LongthreadSession(conv)
    first: list[Any] = [
        {"role": "user", "content": "Check the build and the deploy."},
        {"type": "reasoning", "id": "rs_1", "summary": [
            {"type": "summary_text", "text": "Both are needed."}]},
        {"type": "function_call", "call_id": "b", "name": "build", "arguments": "{}",
         "id": "fc_b"},
        {"type": "function_call", "call_id": "d", "name": "deploy", "arguments": "{}",
         "id": "fc_d"},
        {"type": "function_call_output", "call_id": "b", "output": "build green"}]
    await session.add_items(first)  # the deploy is still running
    await session.add_items([{"role": "user", "content": f"Still waiting ({n})."}
                             for n in range(6)])
    assert await conv.compact(preserve_recent=1) is not None
    window = cast(list[dict[str, Any]], await session.get_items())
    kinds = [i.get("type") for i in window]
    assert first[0] not in window and len(window) == 6  # summary, the unit, the newest
    assert kinds.count("reasoning") == 1 and kinds.count("function_call") == 2  # together
    await session.add_items([{"type": "function_call_output", "call_id": "d",
                              "output": "deployed"}])
    after = cast(list[dict[str, Any]], await session.get_items())
    calls = {i["call_id"] for i in after if i.get("type") == "function_call"}
    assert all(i["call_id"] in calls for i in after if i.get("type") == "function_call_output")
    assert {"type": "function_call_output", "call_id": "d", "output": "deployed"} in after

    # A preamble: the model's text between its reasoning and its call (the second review).
    preamble: list[Any] = [
        {"role": "user", "content": "Now roll it back."},
        {"type": "reasoning", "id": "rs_2", "summary": []},
        {"id": "msg_2", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "annotations": [], "text": "Rolling back."}]},
        {"type": "function_call", "call_id": "r", "name": "rollback", "arguments": "{}",
         "id": "fc_r"},
        {"type": "function_call_output", "call_id": "r", "output": "rolled back"}]
    await session.add_items(preamble)
    await session.add_items([{"role": "user", "content": "Thanks."}])
    assert await conv.compact(preserve_recent=2) is not None
    window = cast(list[dict[str, Any]], await session.get_items())
    assert (preamble[1] in window) == (preamble[3] in window)  # together, or not at all


async def test_a_nul_in_an_output_is_refused_naming_the_item_and_its_field(
    worker: object, lt: Longthread,
) -> None:
    session = LongthreadSession(await lt.conversation(f"agent-{uuid.uuid4()}", tenant="acme"))
    with pytest.raises(InvalidInputError, match=r"^items\[1\]\.output: contains a NUL"):
        await session.add_items([
            {"type": "function_call", "call_id": "x", "name": "cat", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "x", "output": "ELF\x00\x01"}])
    with pytest.raises(InvalidInputError, match=r"^items\[0\]\.content: is not valid UTF-8"):
        await session.add_items([{"role": "user", "content": "half \ud800 a pair"}])
    with pytest.raises(InvalidInputError, match=r"^items\[0\]: contains a NUL"):  # no one field
        await session.add_items([{"type": "reasoning", "id": "rs_1", "summary": [
            {"type": "summary_text", "text": "a\x00b"}]}])
