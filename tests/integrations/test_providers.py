"""A compacted window sent through the real anthropic and openai SDKs to a loopback server:
what goes over the wire is what each API expects, cache breakpoints included."""

from __future__ import annotations

import uuid
from itertools import pairwise

from anthropic import AsyncAnthropic
from anthropic.types import ThinkingConfigEnabledParam
from openai import AsyncOpenAI

from longthread.client import Longthread
from longthread.integrations.providers import (
    anthropic_args,
    cache_breakpoints,
    openai_messages,
    responses_input,
)
from memory.models import ContextWindow
from tests.activities.loopback import anthropic_message, loopback, openai_chat

SYSTEM = "You are the support agent for Fjord Bikes."


async def compacted_window(lt: Longthread) -> ContextWindow:
    conv = await lt.conversation(f"prov-{uuid.uuid4()}", tenant="acme")
    messages: list[dict[str, object]] = [{"id": "s", "role": "system", "content": SYSTEM}]
    for n in range(12):
        messages += [{"id": f"u{n}", "role": "user",
                      "content": f"Note {n}: frame size {50 + n} cm, colour number {n}."},
                     {"id": f"a{n}", "role": "assistant", "content": f"Logged note {n}."}]
    messages += [{"id": "u-last", "role": "user", "content": "Is the 56 cm frame in stock?"},
                 {"id": "a-call", "role": "assistant", "content": "Let me check.",
                  "tool_calls": [{"id": "t1", "name": "stock", "arguments": '{"size": 56}'}]},
                 {"id": "t-result", "role": "tool", "tool_call_id": "t1",
                  "content": "3 in Bergen"}]
    await conv.append_many(messages)
    assert await conv.compact(preserve_recent=3) is not None
    return await conv.context(query="frame size 56", max_tokens=600)


async def test_anthropic_sdk_gets_system_blocks_breakpoints_and_tool_blocks(
    worker: object, lt: Longthread,
) -> None:
    window = await compacted_window(lt)
    sections = [m.section for m in window.messages]
    assert {"system", "summary", "recent"} <= set(sections)
    args = anthropic_args(window)
    with loopback() as server:
        server.reply(anthropic_message("Yes, three in Bergen."))
        sdk = AsyncAnthropic(base_url=server.url, api_key="test-key", max_retries=0)
        reply = await sdk.messages.create(model="claude-test", max_tokens=200, **args)
        await sdk.close()
    assert reply.content[0].type == "text"
    sent = server.requests[0]
    assert sent["path"] == "/v1/messages"
    body = sent["json"]

    system = body["system"]
    assert system[0] == {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}
    summary_blocks = [b for b in system if "Summary of" in b["text"]]
    assert summary_blocks and "cache_control" in summary_blocks[-1]
    marked = [b for b in system if "cache_control" in b]
    assert marked == [system[0], summary_blocks[-1]]  # the stable prefix only
    assert cache_breakpoints(args) == 2 <= 4

    messages = body["messages"]
    assert all(a["role"] != b["role"] for a, b in pairwise(messages))
    assert messages[-2] == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "t1", "name": "stock", "input": {"size": 56}}]}
    assert messages[-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "3 in Bergen"}]}


async def test_openai_sdk_gets_the_window_inline_with_tool_calls(
    worker: object, lt: Longthread,
) -> None:
    window = await compacted_window(lt)
    with loopback() as server:
        server.reply(openai_chat("Yes, three in Bergen."))
        sdk = AsyncOpenAI(base_url=server.url + "/v1", api_key="test-key", max_retries=0)
        reply = await sdk.chat.completions.create(model="gpt-test",
                                                  messages=openai_messages(window))
        await sdk.close()
    assert reply.choices[0].message.content == "Yes, three in Bergen."
    sent = server.requests[0]["json"]["messages"]
    assert sent == openai_messages(window)
    assert [m["role"] for m in sent][:2] == ["system", "system"]  # prompt, then the summary
    assert sent[0]["content"] == SYSTEM and "Summary of" in sent[1]["content"]
    assert sent[-2]["tool_calls"] == [{"id": "t1", "type": "function", "function": {
        "name": "stock", "arguments": '{"size": 56}'}}]
    assert sent[-1] == {"role": "tool", "content": "3 in Bergen", "tool_call_id": "t1"}


async def test_a_claude_agent_with_thinking_gets_its_step_back_thinking_first(
    worker: object, lt: Longthread,
) -> None:
    """The tool loop of a Claude agent with extended thinking, through the durable stack: the
    reply is appended as the SDK returned it, and the next request's assistant message opens
    with its thinking block, unmodified (the API refuses a tool step without it)."""
    conv = await lt.conversation(f"think-{uuid.uuid4()}", tenant="acme")
    await conv.append_many([{"id": "s", "role": "system", "content": SYSTEM},
                            {"id": "q", "role": "user", "content": "Is the 56 cm frame in stock?"}])
    thought = {"type": "thinking", "thinking": "The stock tool answers this; size 56.",
               "signature": "EqQBCkgIARABGAIiQL7x+/9fQ=="}
    use = {"type": "tool_use", "id": "toolu_01A", "name": "stock", "input": {"size": 56}}
    with loopback() as server:
        server.reply({**anthropic_message(""), "id": "msg_step", "stop_reason": "tool_use",
                      "content": [thought, use]})
        server.reply(anthropic_message("Yes, three in Bergen."))
        sdk = AsyncAnthropic(base_url=server.url, api_key="test-key", max_retries=0)
        thinking_on = ThinkingConfigEnabledParam(type="enabled", budget_tokens=1024)
        step = await sdk.messages.create(
            model="claude-test", max_tokens=2000, thinking=thinking_on,
            **anthropic_args(await conv.context(max_tokens=2000)))
        await conv.append({"id": step.id, "role": "assistant", "content": step.content})
        await conv.append({"id": "r1", "role": "tool", "tool_call_id": "toolu_01A",
                           "content": "3 in Bergen"})
        window = await conv.context(max_tokens=2000)
        await sdk.messages.create(model="claude-test", max_tokens=2000, thinking=thinking_on,
                                  **anthropic_args(window))
        await sdk.close()
    assert [m.source_ids for m in window.messages if m.thinking] == [("msg_step",)]
    assert window.tokens <= 2000
    messages = server.requests[1]["json"]["messages"]
    assert messages[-2] == {"role": "assistant", "content": [thought, use]}  # exactly
    assert messages[-1]["content"][0]["type"] == "tool_result"
    (stored,) = await conv.messages(["msg_step"])
    assert stored.metadata["anthropic_thinking"] == [thought]


def responses_reply(text: str) -> dict[str, object]:
    """A Responses API reply, as much of one as the SDK reads."""
    return {"id": "resp_1", "object": "response", "created_at": 0, "model": "gpt-test",
            "status": "completed", "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "output": [{"type": "message", "id": "msg_1", "role": "assistant",
                                     "status": "completed", "content": [
                                         {"type": "output_text", "text": text,
                                          "annotations": []}]}]}


async def test_openai_responses_api_gets_the_window_as_input_items(
    worker: object, lt: Longthread,
) -> None:
    window = await compacted_window(lt)
    with loopback() as server:
        server.reply(responses_reply("Yes, three in Bergen."))
        sdk = AsyncOpenAI(base_url=server.url + "/v1", api_key="test-key", max_retries=0)
        reply = await sdk.responses.create(model="gpt-test", input=responses_input(window))
        await sdk.close()
    assert reply.output_text == "Yes, three in Bergen."
    assert server.requests[0]["path"] == "/v1/responses"
    sent = server.requests[0]["json"]["input"]
    assert sent == responses_input(window)
    assert sent[0] == {"type": "message", "role": "system", "content": SYSTEM}
    assert "Summary of" in sent[1]["content"]
    assert sent[-3:] == [
        {"type": "message", "role": "assistant", "content": "Let me check."},
        {"type": "function_call", "call_id": "t1", "name": "stock", "arguments": '{"size": 56}'},
        {"type": "function_call_output", "call_id": "t1", "output": "3 in Bergen"}]
    assert not any("id" in item for item in sent)  # no stored reasoning item is looked for
