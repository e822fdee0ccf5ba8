"""A support team's operations on many tickets: search across a tenant, and erasure.

Synthetic and seeded: one tenant of SESSIONS tickets of MESSAGES turns each (a customer and
an agent about an order, with order numbers, emails and refund references drawn at random, so
an identifier is in one ticket and common words are in all), stored straight into an embedded
Postgres (no workflow: these are store operations) and indexed.

- **Search across the tenant** (`Store.search_tenant`, BM25 by skip scan of the inverted
  index's key), next to what a caller without it does: one session's BM25 leg
  (`Store.lexical_ranks`) for every ticket in turn. Queries: an order number (one ticket), an
  email, two words, and a word in every ticket. Medians of TIMED runs (the loop: of 3).
- **Erasure** (`memory.store.erasure.erase_session`, the archive's transaction; Temporal's
  step is a few RPCs): a ticket of MESSAGES turns (median of 10), and one of BIG turns.

`python -m bench.support_ops` prints the section.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from bench.common import Section, code_state
from memory.models import Message
from memory.store.db import open_pool
from memory.store.erasure import erase_session
from memory.store.migrations import migrate
from memory.store.store import Store
from worker.stack import EmbeddedPostgres

__all__ = ["run"]

SESSIONS = 2_000
MESSAGES = 50
BIG = 20_000
TIMED = 15
TENANT = "acme"

_SAID = ("My order {order} has not arrived yet.", "Could you check the tracking for {order}?",
         "I have approved a refund, reference {ref}.", "Please write to me at {email}.",
         "The replacement is on its way, order {order}.", "Thanks, that solves it for now.",
         "The courier says the parcel was left at the depot.", "Any news on my order?")


def _ticket(rng: random.Random, n: int, count: int) -> list[Message]:
    order, ref = f"A-{rng.randint(10_000, 99_999)}{n}", f"RF-{rng.randint(10_000, 99_999)}{n}"
    email = f"customer{n}@example.net"
    return [Message(id=f"t{n}-m{i}", role=("user", "assistant")[i % 2],
                    content=rng.choice(_SAID).format(order=order, ref=ref, email=email))
            for i in range(count)]


async def _median_ms(make: Callable[[], Awaitable[object]], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await make()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _measure(url: str) -> list[str]:
    pool = await open_pool(url, max_size=4)
    store = Store(pool)
    rng = random.Random(7)
    tickets = [_ticket(rng, n, MESSAGES) for n in range(SESSIONS)]
    started = time.perf_counter()
    for n, messages in enumerate(tickets):
        await store.append_messages(TENANT, f"ticket-{n}", messages)
        await store.index_terms(TENANT, f"ticket-{n}")
    built = time.perf_counter() - started
    # An identifier of ticket 1234 (its order number or refund reference), in no other ticket.
    order = next(w.rstrip(".?") for m in tickets[1234] for w in m.content.split()
                 if w.startswith(("A-", "RF-")))
    queries = [("an order number (1 ticket)", order),
               ("an email (1 ticket)", "customer777@example.net"),
               ("two words", "refund approved"), ("a word in every ticket", "order")]
    rows = []
    for label, text in queries:
        hits = await store.search_tenant(TENANT, text, 10)
        async def across_all(t: str = text) -> None:
            await store.search_tenant(TENANT, t, 10)

        async def each(t: str = text) -> None:
            for n in range(SESSIONS):
                await store.lexical_ranks(TENANT, f"ticket-{n}", t, 10)
        across = await _median_ms(across_all, TIMED)
        loop = await _median_ms(each, 3)
        rows.append(f"| {label} | `{text}` | {len(hits)} (top: {hits[0].session if hits else '-'})"
                    f" | {across:.1f} | {loop:.0f} | {loop / across:.0f}× |")
    erase_small = await _median_ms(_eraser(url, iter(range(10))), 10)
    await store.append_messages(TENANT, "big", [m.model_copy(update={"id": f"big-{i}"})
                                                for i, m in enumerate(
                                                    _ticket(rng, 99_999, BIG))])
    await store.index_terms(TENANT, "big")
    started = time.perf_counter()
    erased = await erase_session(url, TENANT, "big")
    erase_big = (time.perf_counter() - started) * 1000
    await pool.close()
    return [
        f"One tenant of {SESSIONS:,} tickets × {MESSAGES} turns ({SESSIONS * MESSAGES:,} "
        f"messages), stored and indexed in {built:.0f} s; embedded Postgres 18, no workflow.",
        "",
        "| query | text | hits | across the tenant, ms (p50) | one session at a time over "
        "all, ms (p50 of 3) | ratio |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "A word in 20,000 or more of the tenant's messages is left out as too common to rank by "
        "(`TENANT_POSTINGS_CAP`): across the tenant it finds nothing, where one session's BM25 "
        "(its cap is 2,000) still ranks it in every ticket, so that row is not like for like.",
        "",
        f"Erasure, the archive's transaction: a ticket of {MESSAGES} turns {erase_small:.0f} ms "
        f"(median of 10); one of {BIG:,} turns {erase_big:.0f} ms "
        f"({erased.rows['message_terms']:,} postings, {erased.messages:,} messages).",
    ]


def _eraser(url: str, numbers: Iterator[int]) -> Callable[[], Awaitable[object]]:
    async def erase() -> None:
        await erase_session(url, TENANT, f"ticket-{next(numbers)}")
    return erase


async def _run() -> Section:
    with tempfile.TemporaryDirectory() as folder:
        postgres = EmbeddedPostgres(Path(folder))
        url = postgres.start()
        try:
            await migrate(url)
            lines = await _measure(url)
        finally:
            postgres.stop()
    return Section(title="Support operations: search across a tenant, erasure",
                   markdown=f"Code: {code_state()}.\n\n" + "\n".join(lines) + "\n")


def run() -> Section:
    return asyncio.run(_run())


if __name__ == "__main__":
    print(run().markdown)
