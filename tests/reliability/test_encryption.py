"""Encryption at rest in Temporal: with a payload key, no message text is in the history."""

from __future__ import annotations

import base64
import uuid

import pytest
from temporalio.client import Client

from activities.conversation import ConversationActivities
from longthread.client import Longthread
from longthread.codec import PayloadKeyError
from memory.errors import InvalidInputError
from memory.store.store import Store
from worker.codec import ENCODING, data_converter
from worker.main import build_worker, connect_client
from worker.settings import Settings

SECRET = "the vault code is 7-7-3-1 and Caroline's passport is X1234567"


async def test_no_message_text_in_fetched_history(
    client: Client, activities: ConversationActivities, store: Store
) -> None:
    key = base64.b64encode(b"k" * 32).decode()
    queue = f"enc-{uuid.uuid4()}"
    settings = Settings(temporal_address=client.service_client.config.target_host,
                        task_queue=queue, payload_key=key)
    encrypted = await connect_client(settings)
    async with build_worker(encrypted, queue, activities.all(), max_cached_workflows=0):
        lt = Longthread(encrypted, settings, store=store, embedder=activities.embedder)
        conv = await lt.conversation("secret", tenant="acme")
        await conv.append_many([{"id": "s1", "role": "user", "content": SECRET}])
        window = await conv.context("vault code", max_tokens=500)
        assert SECRET in "\n".join(m.content for m in window.messages)
        await conv.close()
        await conv.handle.result()
    # Read the history with a client that has no key: it sees only ciphertext.
    raw = await client.get_workflow_handle(conv.id).fetch_history()
    dumped = raw.to_json()
    assert "vault code" not in dumped and "X1234567" not in dumped
    assert base64.b64encode(b"vault").decode()[:6] not in dumped
    started = raw.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == ENCODING


def test_bad_keys_are_refused_with_the_setting_name() -> None:
    with pytest.raises(InvalidInputError, match="LONGTHREAD_PAYLOAD_KEY: must be 32 bytes"):
        data_converter(base64.b64encode(b"short").decode())
    with pytest.raises(InvalidInputError, match="not valid base64"):
        data_converter("%%%")


async def test_a_client_without_the_workers_key_is_told_which_setting(
    client: Client, activities: ConversationActivities, store: Store
) -> None:
    """Every worker and client must share the key. A client with none, or with another, gets
    an error naming LONGTHREAD_PAYLOAD_KEY (it crashed with a bare KeyError), and what the
    workers stored stays readable to a client with the right key."""
    queue = f"enc-keys-{uuid.uuid4()}"
    address = client.service_client.config.target_host
    keyed = Settings(temporal_address=address, task_queue=queue,
                     payload_key=base64.b64encode(b"k" * 32).decode())
    keyless = Settings(temporal_address=address, task_queue=queue)
    other = Settings(temporal_address=address, task_queue=queue,
                     payload_key=base64.b64encode(b"o" * 32).decode())
    session = f"keys-{uuid.uuid4().hex[:8]}"
    worker_client = await connect_client(keyed)
    async with build_worker(worker_client, queue, activities.all(), max_cached_workflows=0):
        right = Longthread(worker_client, keyed, store=store, embedder=activities.embedder)
        conv = await right.conversation(session, tenant="acme")
        await conv.append_many([{"id": "s1", "role": "user", "content": SECRET}])
        for settings, problem in ((keyless, "not set here, but this payload is encrypted"),
                                  (other, "this payload was encrypted with another key")):
            lt = Longthread(await connect_client(settings), settings, store=store,
                            embedder=activities.embedder)
            with pytest.raises(PayloadKeyError, match=f"LONGTHREAD_PAYLOAD_KEY: {problem}"):
                # Opening the session reads the workers' answer: it fails there, first.
                wrong = await lt.conversation(session, tenant="acme")
                await wrong.append_many([{"id": "w1", "role": "user", "content": "hello"}])
        window = await conv.context("vault code", max_tokens=500)
        assert SECRET in "\n".join(m.content for m in window.messages)
        await conv.close()
        await conv.handle.result()

