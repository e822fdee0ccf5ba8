"""Continue-as-new under lowered history limits, and 5,000 messages through the client."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from activities.conversation import ConversationActivities
from longthread.client import Longthread
from memory.policy import CompactionPolicy
from memory.store.store import Store
from worker.main import build_worker
from worker.settings import Settings

TOPICS = ["order 4711", "the refund", "the parcel in Leeds", "express shipping",
          "the invoice of 49.99 EUR", "Caroline's adoption plans", "Melanie's painting"]


async def test_five_thousand_messages_survive_continue_as_new(
    short_history_client: Client, activities: ConversationActivities, store: Store
) -> None:
    queue = f"can-{uuid.uuid4()}"
    lt = Longthread(short_history_client, Settings(task_queue=queue),
                    CompactionPolicy(context_window=2000, preserve_recent=6), store=store,
                    embedder=activities.embedder)
    async with build_worker(short_history_client, queue, activities.all(),
                            max_cached_workflows=0):
        conv = await lt.conversation("five-k", tenant="acme")
        total = 5000
        batch = 50
        budgets = []
        for start in range(0, total, batch):
            msgs = [{"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant",
                     "content": f"Turn {i} is about {TOPICS[i % len(TOPICS)]}."}
                    for i in range(start, start + batch)]
            result = await conv.append_many(msgs)
            assert result.appended == batch
            if start % 500 == 0:  # a retried batch is appended exactly once
                again = await conv.append_many(msgs)
                assert (again.appended, again.duplicates) == (0, batch)
            if start % 1000 == 0:
                for budget in (200, 1000):
                    ctx = await conv.context(f"what about {TOPICS[start % 7]}?", budget)
                    budgets.append((ctx.tokens, budget))
        settled = await conv.settle(timeout=300)
        # Compaction keeps up with a burst: the window is back within the policy.
        assert settled.window_tokens <= lt.policy.context_window, settled
        await conv.close()
        stats = await conv.handle.result()

    assert stats.messages == total and stats.pending_embedding == 0
    assert stats.runs >= 3, "continue-as-new should have happened at least twice"
    archived = await store.all_messages("acme", "five-k")
    ids = [m.id for m in archived]
    assert len(ids) == total and len(set(ids)) == total
    assert set(ids) == {f"m{i}" for i in range(total)}
    ledger = await store.ledger("acme", "five-k")
    assert ledger, "the window outgrew the policy, so compactions must be recorded"
    covered = [i for r in ledger for i in r.covered_ids]
    assert len(covered) == len(set(covered))
    assert all(tokens <= budget for tokens, budget in budgets)


async def continue_as_new_inputs(client: Client, workflow_id: str) -> list[int]:
    """Bytes of every input handed to continue-as-new, over all runs of a workflow."""
    sizes = []
    async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attrs = event.workflow_execution_continued_as_new_event_attributes
                sizes.append(sum(p.ByteSize() for p in attrs.input.payloads))
    return sizes


# Embedding 60,000 messages dominates; settle() below allows 1,500 s, so the test may too.
@pytest.mark.timeout(1800)
async def test_sixty_thousand_uuid_messages_stay_small_and_answer(
    short_history_client: Client, activities: ConversationActivities, store: Store
) -> None:
    """The ceiling: nothing that grows with the session lives in the workflow, so 60,000
    messages with 36-character ids settle, keep answering, and every continue-as-new input
    stays within 64 KB."""
    queue = f"ceiling-{uuid.uuid4()}"
    lt = Longthread(short_history_client, Settings(task_queue=queue),
                    CompactionPolicy(context_window=8000), store=store,
                    embedder=activities.embedder)
    total, batch = 60_000, 500
    ids = [str(uuid.UUID(int=i + 1)) for i in range(total)]
    async with build_worker(short_history_client, queue, activities.all(),
                            max_cached_workflows=0):
        conv = await lt.conversation("sixty-k", tenant="ceiling")
        for start in range(0, total, batch):
            result = await conv.append_many([
                {"id": ids[i], "role": "user" if i % 2 == 0 else "assistant",
                 "content": f"Turn {i} is about {TOPICS[i % len(TOPICS)]}."}
                for i in range(start, start + batch)])
            assert result.appended == batch
        settled = await conv.settle(timeout=1500)
        assert settled.messages == total and settled.pending_embedding == 0
        assert settled.window_tokens <= lt.policy.context_window, settled
        ctx = await conv.context("what about the invoice of 49.99 EUR?", 1000)
        assert ctx.tokens <= 1000 and ctx.source_ids
        sizes = await continue_as_new_inputs(short_history_client, conv.id)
    assert sizes, "continue-as-new must have happened"
    assert max(sizes) <= 64 * 1024, max(sizes)
    assert await store.count("ceiling", "sixty-k") == total
