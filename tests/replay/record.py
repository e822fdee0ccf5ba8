"""Record real workflow histories for the replay tests: `python -m tests.replay.record`.

Runs representative sessions on a fresh embedded stack (appends, auto and manual compaction,
undo, context, idle close and resume, continue-as-new, generate() against a loopback model)
and writes every run's history as JSON under tests/replay/histories/. Re-record after an
intentional, patched workflow change (`... record idle` or `... record import`: that
scenario alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.conversation import ConversationActivities
from activities.providers.embedders import LocalEmbedder
from activities.providers.llm import OpenAIChat
from longthread.client import Longthread
from memory.errors import LongthreadError
from memory.policy import CompactionPolicy
from memory.store.db import open_pool
from memory.store.migrations import migrate
from memory.store.store import Store
from tests.activities.loopback import loopback, openai_chat
from worker.main import build_worker
from worker.settings import Settings
from worker.stack import EmbeddedPostgres, TemporalDevServer, free_port

OUT = Path(__file__).parent / "histories"
LINES = ["My order 4711 has not arrived since May 3.", "Which address did you use?",
         "12 Baker Street, London.", "It is stuck in Leeds; we decided to resend by express.",
         "Please refund the 10 EUR fee.", "Refund approved today."]


def _turns(start: int, n: int) -> list[dict[str, object]]:
    return [{"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant",
             "content": f"{LINES[i % len(LINES)]} (turn {i})"} for i in range(start, start + n)]


async def _idle(short: Longthread) -> str:
    """Closed when idle, resumed, closed on request; an append 1.2 s into the 2 s wait makes
    the timer find time left since it ("idle-from-last-append")."""
    idle = await short.conversation("replay-idle", tenant="rec")
    await idle.append_many(_turns(0, 4))
    await asyncio.sleep(1.2)
    await idle.append_many(_turns(4, 1))
    await idle.handle.result()
    idle = await short.conversation("replay-idle", tenant="rec")
    await idle.append_many(_turns(5, 2))
    await idle.close()
    await idle.handle.result()
    return idle.id


async def _scenarios(lt: Longthread, short: Longthread, only: str | None) -> list[str]:
    if only == "idle":
        return [await _idle(short)]
    if only == "import":
        return list(await _imported(lt))
    main, copy = await _imported(lt)
    idle = await _idle(short)

    long = await lt.conversation("replay-can", tenant="rec")
    for start in range(0, 1500, 25):
        await long.append_many(_turns(start, 25))
    async with asyncio.timeout(120):
        while (await long.stats()).runs < 2:
            await asyncio.sleep(0.5)
    await long.close()
    stats = await long.handle.result()
    assert stats.runs >= 2, "the scenario should continue-as-new"
    return [main, copy, idle, long.id, await _generating(lt)]


async def _imported(lt: Longthread) -> tuple[str, str]:
    """A session compacted, undone and closed, and a copy of it restored with its ledger: the
    undo leaves the window over the copy's policy, so the copy's restore is followed by no
    compaction ("restore-waits-for-append") and its next append compacts."""
    conv = await lt.conversation("replay-main", tenant="rec")
    await conv.append({"id": "sys", "role": "system", "content": "You are Acme support."})
    for start in range(0, 40, 8):
        await conv.append_many(_turns(start, 8))
    await conv.context("where is the parcel?", 300)
    record = await conv.compact(preserve_recent=2, focus="refund")
    if record is not None:
        await conv.uncompact(record.id)
    await conv.settle(timeout=120)
    ledger = await conv.ledger()
    await conv.close()
    await conv.handle.result()

    copy = await lt.conversation("replay-import", tenant="rec")  # an import with its ledger
    await copy.append({"id": "sys", "role": "system", "content": "You are Acme support."},
                      hold_compaction=True)
    await copy.append_many(_turns(0, 40), hold_compaction=True)
    await copy.restore_ledger(ledger)
    await copy.settle(timeout=120)
    await copy.append_many(_turns(40, 2))
    await copy.settle(timeout=120)
    await copy.close()
    await copy.handle.result()
    return conv.id, copy.id


async def _generating(lt: Longthread) -> str:
    """generate() against the loopback chat model: two answered turns and one the provider
    refuses (the user's turn kept, no reply)."""
    conv = await lt.conversation("replay-generate", tenant="rec")
    await conv.append({"id": "sys", "role": "system", "content": "You are Acme support."})
    await conv.generate("Where is my order 4711?", id="q1")
    await conv.generate("Can the 10 EUR fee be refunded?")
    try:
        await conv.generate("And the courier?", id="q3")
    except LongthreadError:
        pass  # the provider refused it (HTTP 400): that path is recorded too
    await conv.close()
    await conv.handle.result()
    return conv.id


async def main(only: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        postgres = EmbeddedPostgres(Path(tmp) / "pg")
        url = postgres.start()
        temporal = TemporalDevServer(
            Path(tmp) / "t", port=free_port(), ui_port=None,
            dynamic_config={"limit.historyCount.suggestContinueAsNew": "300"})
        temporal.start()
        try:
            await migrate(url)
            await temporal.wait_ready()
            pool = await open_pool(url)
            client = await Client.connect(temporal.address,
                                          data_converter=pydantic_data_converter)
            chat_server = stack.enter_context(loopback())
            chat_server.reply(openai_chat("It left Leeds today.", model="rec-llm"))
            chat_server.reply(openai_chat("Yes, the fee is refunded.", model="rec-llm"))
            chat_server.fail(400)
            acts = ConversationActivities(Store(pool), LocalEmbedder(), chat=OpenAIChat(
                "k", "rec-llm", base_url=chat_server.url + "/v1"))
            store = Store(pool)
            lt = Longthread(client, Settings(task_queue="rec"),
                            CompactionPolicy(context_window=400, preserve_recent=4),
                            store=store, embedder=acts.embedder)
            short = Longthread(client, Settings(task_queue="rec", idle_timeout_seconds=2),
                               CompactionPolicy(context_window=100_000), store=store,
                               embedder=acts.embedder)
            async with build_worker(client, "rec", acts.all()):
                ids = await _scenarios(lt, short, only)
            OUT.mkdir(parents=True, exist_ok=True)
            for workflow_id in ids:
                async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
                    handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
                    history = await handle.fetch_history()
                    path = OUT / f"{workflow_id}-{execution.run_id}.json"
                    path.write_text(history.to_json())
                    print(f"wrote {path} ({len(history.events)} events)")
            await pool.close()
            await acts.aclose()
        finally:
            temporal.stop()
            postgres.stop()


if __name__ == "__main__":
    import sys

    # `python -m tests.replay.record idle` records only the idle scenario (a new patch of it).
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
