"""generate(): context, a chat call through a loopback OpenAI-compatible server, both turns
appended; a failed call keeps the user's message, and with no chat model nothing is stored."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.client import Client

from activities.conversation import ConversationActivities
from activities.providers.embedders import LocalEmbedder
from activities.providers.llm import OpenAIChat
from activities.types import MAX_CHAT_WINDOW_BYTES
from longthread.audit import replay_at
from longthread.client import Conversation, Longthread
from memory.errors import InvalidInputError, LongthreadError
from memory.store.store import Store
from tests.activities.loopback import Loopback, loopback, openai_chat
from worker.main import build_worker
from worker.settings import Settings


@asynccontextmanager
async def _chatting(client: Client, store: Store, embedder: LocalEmbedder, session: str,
                    **settings: Any) -> AsyncIterator[tuple[Conversation, Loopback]]:
    """A session on its own worker whose chat model is the real OpenAI SDK pointed at a
    loopback server (the provider, to script replies and read requests)."""
    queue = f"gen-{uuid.uuid4()}"
    with loopback() as provider:
        chat = OpenAIChat("k", "local-llm", base_url=provider.url + "/v1")
        acts = ConversationActivities(store, embedder, chat=chat)
        try:
            async with build_worker(client, queue, acts.all(), max_cached_workflows=0):
                lt = Longthread(client, Settings(task_queue=queue, **settings), store=store,
                                embedder=embedder)
                yield await lt.conversation(session, tenant="acme"), provider
        finally:
            await acts.aclose()


async def test_generate_appends_both_turns_and_sends_the_window(
    client: Client, store: Store, embedder: LocalEmbedder
) -> None:
    async with _chatting(client, store, embedder, "gen") as (conv, provider):
        await conv.append_many([
            {"id": "s", "role": "system", "content": "You are Acme support."},
            {"id": "m1", "role": "user", "content": "My order 4711 is late."}])
        provider.reply(openai_chat("It ships tomorrow by express.", model="local-llm"))
        result = await conv.generate("When will order 4711 arrive?", max_tokens=500)
        window = await conv.window()
    assert result.reply.content == "It ships tomorrow by express."
    assert result.model == "local-llm" and result.context_tokens <= 500
    sent = provider.requests[0]["json"]["messages"]
    assert sent[0] == {"role": "system", "content": "You are Acme support."}
    assert sent[-1] == {"role": "user", "content": "When will order 4711 arrive?"}
    assert [m.role for m in window] == ["system", "user", "user", "assistant"]
    assert window[-1].content == "It ships tomorrow by express."


async def test_an_empty_reply_fails_the_call_and_stores_no_made_up_turn(
    client: Client, store: Store, embedder: LocalEmbedder
) -> None:
    """A model that spent its tokens before writing (finish_reason "length") answered
    nothing: generate() says so, the user's turn is kept, and no assistant turn is stored."""
    async with _chatting(client, store, embedder, "gen-empty") as (conv, provider):
        empty = openai_chat("", model="local-llm")
        empty["choices"][0].update(finish_reason="length")
        provider.reply(empty)
        with pytest.raises(LongthreadError, match=r"empty reply \(stop reason 'length'\)"):
            await conv.generate("When will order 4711 arrive?", id="q-1", reply_tokens=5)
        provider.reply(openai_chat("Tomorrow.", model="local-llm"))
        result = await conv.generate("When will order 4711 arrive?", id="q-1")
        window = await conv.window()
    assert len(provider.requests) == 2  # not retried: the same request gets the same answer
    assert [(m.id, m.content) for m in window] == [
        ("q-1", "When will order 4711 arrive?"), (result.reply.id, "Tomorrow.")]


async def test_a_provider_that_stays_down_fails_generate_saying_it_was_retried(
    client: Client, store: Store, embedder: LocalEmbedder
) -> None:
    """Four attempts (COMPLETE_CHAT's policy, about 7 s here), then a failure that says the
    retries ran out; the user's turn is kept for a retry with its id."""
    async with _chatting(client, store, embedder, "gen-down") as (conv, provider):
        with pytest.raises(LongthreadError, match=r"HTTP 500 \(retried until the retry "
                                                  r"policy's attempts ran out\)"):
            await conv.generate("Is order 4711 on its way?", id="q-down")
        window = await conv.window()
    assert len(provider.requests) == 4
    assert [m.id for m in window] == ["q-down"]


async def test_generate_without_a_chat_model_fails_clearly_and_stores_nothing(
    lt: Longthread, worker: object
) -> None:
    conv = await lt.conversation("gen-none", tenant="acme")
    await conv.append_many([{"id": "m1", "role": "user", "content": "Order 4711 is late."}])
    with pytest.raises(LongthreadError, match="no chat model configured") as info:
        await conv.generate("hello?")
    assert "retried" not in str(info.value)  # one attempt: nothing was retried
    assert [m.content for m in await conv.window()] == ["Order 4711 is late."]


async def test_a_retried_generate_with_its_id_stores_the_turn_once(
    client: Client, store: Store, embedder: LocalEmbedder
) -> None:
    """The user's turn is stored before the model is called (kept when the call fails); a
    retry that passes the same id is the same turn, although the workflow stamps it again.
    Bad arguments are refused on the client, naming the field."""
    async with _chatting(client, store, embedder, f"gen-retry-{uuid.uuid4()}") as (
            conv, provider):
        for _ in range(3):
            provider.fail(400)  # refused by the provider: not retried, the call fails at once
            with pytest.raises(LongthreadError, match="HTTP 400"):
                await conv.generate("Where is my order 4711?", id="q-1", name="Ana")
        (stored,) = await conv.window()
        assert (stored.id, stored.content, stored.name) == ("q-1", "Where is my order 4711?", "Ana")
        with pytest.raises(InvalidInputError, match=r"^id: "):  # the same id, another question
            await conv.generate("Another question", id="q-1")
        with pytest.raises(InvalidInputError, match=r"^max_tokens: "):
            await conv.generate("hi", max_tokens=0)
        with pytest.raises(InvalidInputError, match=r"^content: "):
            await conv.generate("")
        with pytest.raises(InvalidInputError, match=r"^reply_tokens: "):
            await conv.generate("hi", reply_tokens=-1)
        assert [m.id for m in await conv.window()] == ["q-1"]


async def test_a_window_over_a_payload_is_served_smaller_and_replays(
    client: Client, store: Store, embedder: LocalEmbedder
) -> None:
    """generate() hands its window through Temporal, which refuses a payload over 2 MB (and an
    activity whose result it refuses is retried for ever: the update hung). Asked for 2M
    tokens over 3.6 MB of archive, it serves what fits, records that budget, and replays."""
    async with _chatting(client, store, embedder, "gen-big",
                         context_window=250_000) as (conv, provider):
        for batch in range(3):
            await conv.append_many([
                {"id": f"m{batch}-{i}", "role": "user",
                 "content": f"Export {batch}-{i}: " + "shipment row ok " * 3700}
                for i in range(20)])
        provider.reply(openai_chat("Done.", model="local-llm"))
        result = await asyncio.wait_for(
            conv.generate("Which shipment rows are ok?", max_tokens=2_000_000), 120)
        await conv.settle()
        served = await store.served("acme", "gen-big")
    assert result.reply.content == "Done."
    sent = json.dumps(provider.requests[0]["json"]["messages"]).encode()
    assert 1_000_000 < len(sent) <= MAX_CHAT_WINDOW_BYTES  # as much as fits, and no more
    assert served[-1]["max_tokens"] < 2_000_000
    assert served[-1]["tokens"] == result.context_tokens
    replayed = await replay_at(store, "acme", "gen-big", served[-1]["turn"])
    assert replayed.matches


async def test_system_messages_over_a_payload_are_named_not_a_budget_never_asked(
    client: Client, store: Store, embedder: LocalEmbedder
) -> None:
    """The smaller budget generate() tries is not the caller's: when even the system messages
    are over what a payload carries, the refusal says so (it used to blame `max_tokens`)."""
    async with _chatting(client, store, embedder, "gen-sys",
                         context_window=250_000) as (conv, provider):
        for batch in range(2):
            await conv.append_many([
                {"id": f"s{batch}-{i}", "role": "system",
                 "content": f"Policy {batch}-{i}: " + "always be accurate " * 3000}
                for i in range(14)])
        with pytest.raises(InvalidInputError, match="system messages alone are over "
                           "1,500,000 bytes"):
            await asyncio.wait_for(conv.generate("go", max_tokens=2_000_000), 120)
    assert not provider.requests



async def test_appends_beside_generate_report_what_they_stored(
    client: Client, store: Store, embedder: LocalEmbedder
) -> None:
    """Concurrent updates make the server drop a workflow task now and then ("workflow task
    not found"); its updates run again, and so do their local store activities. Before the
    appends were named by their update, 4 runs in 6 told some call "0 appended, 20
    duplicates" for 20 new messages. The counts are the first run's; all is stored once."""
    session = f"conc-{uuid.uuid4()}"
    async with _chatting(client, store, embedder, session) as (conv, provider):
        for _ in range(6):
            provider.reply(openai_chat("Sure.", model="local-llm"))

        async def ask(i: int) -> None:  # with and without ids: both turns are stamped anew
            await conv.generate(f"concurrent question {i}", id=f"cq{i}" if i % 2 else None)

        async def append(i: int) -> tuple[int, int]:
            result = await conv.append_many([{"id": f"ca{i}-{j}", "role": "user",
                                              "content": f"bulk {i}-{j}"} for j in range(20)])
            return result.appended, result.duplicates

        counts = await asyncio.gather(*[ask(i) for i in range(6)],
                                      *[append(i) for i in range(6)])
    assert counts[6:] == [(20, 0)] * 6
    assert await store.count("acme", session) == 6 * 2 + 6 * 20
