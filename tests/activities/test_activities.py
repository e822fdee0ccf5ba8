"""Activities through Temporal's ActivityEnvironment, with the real store and embedder."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.conversation import ConversationActivities
from activities.providers.embedders import LocalEmbedder
from activities.providers.llm import AnthropicSummarizer
from activities.types import (
    ArchiveInput,
    ChatInput,
    CheckpointInput,
    LoadCheckpointInput,
    RetrieveInput,
    SeqMessage,
    SummarizeInput,
)
from memory.models import ContextWindow, Message
from memory.store.store import Store
from tests.activities.loopback import anthropic_message, loopback

TEXTS = ["Order 4711 was shipped to 12 Baker Street, London, on May 3.",
         "The parcel is stuck in Leeds; we decided to resend it by express.",
         "The refund of 10 EUR was approved on Friday.",
         "Melanie likes painting sunrises."]


def _batch() -> tuple[str, ArchiveInput]:
    session = f"a-{uuid.uuid4().hex[:8]}"
    msgs = tuple(SeqMessage(seq=i, message=Message(id=f"m{i}", role="user", content=t))
                 for i, t in enumerate(TEXTS))
    return session, ArchiveInput(tenant="acme", session=session, messages=msgs)


async def test_archive_is_idempotent_and_heartbeats(store: Store, embedder: LocalEmbedder) -> None:
    acts = ConversationActivities(store, embedder)
    env = ActivityEnvironment()
    beats: list[object] = []
    env.on_heartbeat = lambda *args: beats.append(args)
    session, batch = _batch()
    first = await env.run(acts.archive_messages, batch)
    second = await env.run(acts.archive_messages, batch)
    assert (first.inserted, first.already_archived) == (4, 0)
    assert (second.inserted, second.already_archived) == (0, 4)
    assert beats == [(4,)]
    assert await store.count("acme", session) == 4


async def test_summarize_reads_originals_by_id_and_retrieve_finds_them(
    store: Store, embedder: LocalEmbedder
) -> None:
    acts = ConversationActivities(store, embedder)
    env = ActivityEnvironment()
    session, batch = _batch()
    await env.run(acts.archive_messages, batch)
    result = await env.run(acts.summarize_span, SummarizeInput(
        tenant="acme", session=session, ids=("m0", "m1", "m2"), max_tokens=40, focus="refund"))
    assert result.strategy == "extractive" and result.fallback is None
    assert "refund" in result.text and set(result.quoted_ids) <= {"m0", "m1", "m2"}
    found = await env.run(acts.retrieve_context, RetrieveInput(
        tenant="acme", session=session, query="where was the parcel delayed?", k=2))
    assert found.candidates[0].message.id == "m1"
    with pytest.raises(ApplicationError, match="not archived"):
        await env.run(acts.summarize_span, SummarizeInput(
            tenant="acme", session=session, ids=("m0", "ghost"), max_tokens=40))


async def test_summarizer_falls_back_to_extractive_and_says_why(
    store: Store, embedder: LocalEmbedder
) -> None:
    session, batch = _batch()
    with loopback() as server:
        acts = ConversationActivities(
            store, embedder, AnthropicSummarizer("k", "claude-test", base_url=server.url),
            max_summarizer_failures=2)
        env = ActivityEnvironment()
        await env.run(acts.archive_messages, batch)
        request = SummarizeInput(tenant="acme", session=session, ids=("m0", "m1"),
                                 max_tokens=40)
        server.fail(400)
        rejected = await env.run(acts.summarize_span, request)
        assert rejected.strategy == "extractive"
        assert rejected.fallback == "extractive: claude-test rejected (provider rejected the " \
                                    "request: HTTP 400)"
        server.fail(500)
        with pytest.raises(ApplicationError) as info:
            await env.run(acts.summarize_span, request)
        assert not info.value.non_retryable
        server.reply(anthropic_message("Decisions: resend [m1]."))
        ok = await env.run(acts.summarize_span, request)
        assert (ok.text, ok.fallback, ok.model) == ("Decisions: resend [m1].", None,
                                                    "claude-test")
        env.info = dataclasses.replace(env.info, attempt=3)
        exhausted = await env.run(acts.summarize_span, request)
        assert exhausted.fallback == "extractive: claude-test failed 2 times"
        assert len(server.requests) == 3  # the third-attempt fallback did not call the provider


async def test_checkpoints_round_trip_and_chat_needs_a_model(
    store: Store, embedder: LocalEmbedder
) -> None:
    acts = ConversationActivities(store, embedder)
    env = ActivityEnvironment()
    session = f"c-{uuid.uuid4().hex[:8]}"
    empty = await env.run(acts.load_checkpoint, LoadCheckpointInput(tenant="acme",
                                                                     session=session))
    assert empty.state_json is None
    await env.run(acts.save_checkpoint, CheckpointInput(
        tenant="acme", session=session, state_json='{"n": 3}', version=3))
    loaded = await env.run(acts.load_checkpoint, LoadCheckpointInput(tenant="acme",
                                                                      session=session))
    assert (json.loads(loaded.state_json or "null"), loaded.version) == ({"n": 3}, 3)
    with pytest.raises(ApplicationError, match="LONGTHREAD_CHAT_PROVIDER") as info:
        await env.run(acts.complete_chat, ChatInput(
            window=ContextWindow(messages=(), tokens=0, budget=10)))
    assert info.value.non_retryable
