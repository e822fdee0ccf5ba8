"""The embedding activity's throughput, this tree's against the serial loop it replaced.

`ConversationActivities.embed_messages` now stores a batch's vectors while it embeds the next
(Postgres spends ~1.8 ms a row on the HNSW insert, on a core the worker left idle while it
waited). The baseline is the loop as it was at dd9d14f, batch by batch: embed, then store.
Both run through Temporal's ActivityEnvironment on the same store and embedder (the product's
default), on fresh sessions of LoCoMo turns with UUID ids, passes repeated until the session
is embedded (each pass is time-bounded, as the workflow runs them), alternating which goes
first each round. Reported: messages per second, median over rounds, and the ratio.

Run: `.venv/bin/python -m bench.embed_pass` (ROUNDS and SESSION_SIZE below).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid

from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.conversation import EMBED_BATCH, EMBED_SECONDS, ConversationActivities
from activities.types import EmbedInput, EmbedResult
from bench.common import Section, bench_store
from bench.harness import default_embedder, embedder_name, load, log, warm
from longthread.locomo import load_samples
from memory.models import Message
from memory.text import indexed_text

__all__ = ["run"]

ROUNDS = int(os.environ.get("LT_EMBED_ROUNDS", "6"))
SESSION_SIZE = int(os.environ.get("LT_EMBED_SESSION", "2048"))
TENANT = "embed"


class SerialActivities(ConversationActivities):
    """dd9d14f's embed_messages, line for line: each batch stored before the next is embedded."""

    async def embed_messages(self, input: EmbedInput) -> EmbedResult:
        deadline = time.monotonic() + EMBED_SECONDS
        await self._index(input, deadline)
        todo = await self.store.unembedded(input.tenant, input.session, input.start, input.stop)
        for at in range(0, len(todo), EMBED_BATCH):
            if at:
                if time.monotonic() >= deadline:
                    return EmbedResult(embedded=at, reached=todo[at][3])
                await self._index(input, deadline)
            batch = todo[at : at + EMBED_BATCH]
            vectors = await self.embedder.embed(
                [indexed_text(text, sent) for _, text, sent, _ in batch])
            await self.store.set_embeddings(input.tenant, input.session, [
                (row[0], vector) for row, vector in zip(batch, vectors, strict=True)])
            activity.heartbeat(at + len(batch))
        return EmbedResult(embedded=len(todo), reached=input.stop)


async def _embed_all(acts: ConversationActivities, session: str) -> float:
    """Seconds for passes from 0 until the session is embedded, as the workflow runs them."""
    env = ActivityEnvironment()
    start, passes, began = 0, 0, time.perf_counter()
    while start < SESSION_SIZE:
        done = await env.run(acts.embed_messages, EmbedInput(
            tenant=TENANT, session=session, start=start, stop=SESSION_SIZE))
        start = SESSION_SIZE if done.reached is None else done.reached
        passes += 1
    return time.perf_counter() - began


async def run() -> Section:
    turns = [m for s in load_samples() for m in s.messages]
    embedder = default_embedder()
    await warm(embedder)
    rates: dict[str, list[float]] = {"this tree (store beside the next batch)": [],
                                     "dd9d14f (serial)": []}
    async with bench_store() as store:
        variants = {name: cls(store, embedder) for name, cls in zip(
            rates, (ConversationActivities, SerialActivities), strict=True)}
        for round_ in range(ROUNDS):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                session = f"s-{uuid.uuid4()}"
                offset = (round_ * 2 + order.index(name)) * SESSION_SIZE
                messages = tuple(Message.model_validate(
                    {**turns[(offset + i) % len(turns)], "id": str(uuid.uuid4())})
                    for i in range(SESSION_SIZE))
                for at in range(0, SESSION_SIZE, 500):
                    await store.append_messages(TENANT, session, messages[at : at + 500])
                seconds = await _embed_all(variants[name], session)
                assert not await store.unembedded(TENANT, session, 0, SESSION_SIZE)
                rates[name].append(SESSION_SIZE / seconds)
                log("embed_pass", f"round {round_}: {name} {SESSION_SIZE / seconds:.0f} msgs/s")
    new, old = (statistics.median(v) for v in rates.values())
    rows = "\n".join(f"| {name} | {statistics.median(v):.0f} | {min(v):.0f}–{max(v):.0f} |"
                     for name, v in rates.items())
    return Section("The embedding activity: vectors stored while the next batch is embedded",
                   f"{ROUNDS} rounds, each a fresh session of {SESSION_SIZE:,} LoCoMo turns per "
                   f"variant (UUID ids, stored first; indexing and embedding timed), embedded by "
                   f"time-bounded passes through ActivityEnvironment; embedder "
                   f"{embedder_name(embedder)}; load {load()} at the end.\n\n"
                   "| embed_messages | msgs/s (median) | range |\n|---|---|---|\n" + rows
                   + f"\n\nNew / serial: **{new / old:.2f}×** the throughput.\n")


if __name__ == "__main__":
    print(asyncio.run(run()).markdown)
