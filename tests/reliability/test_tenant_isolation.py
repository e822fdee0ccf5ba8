"""1,000 cross-tenant probes: other sessions, other tenants, guessed ids, a reused pooled
connection. Zero rows from another tenant, enforced by row-level security as well."""

from __future__ import annotations

import random
import uuid

from activities.providers.embedders import LocalEmbedder
from memory.models import Message
from memory.store.store import Store

TENANTS = [f"t{i}" for i in range(5)]


async def test_fourteen_hundred_cross_tenant_probes_return_nothing(
    store: Store, embedder: LocalEmbedder
) -> None:
    session = f"iso-{uuid.uuid4().hex[:6]}"
    texts = {t: [f"{t} private note {i}: account {t.upper()}-{i:04d}" for i in range(20)]
             for t in TENANTS}
    for tenant in TENANTS:
        msgs = [Message(id=f"m{i}", role="user", content=text)
                for i, text in enumerate(texts[tenant])]
        await store.append_messages(tenant, session, msgs)
        vectors = await embedder.embed(texts[tenant])
        await store.set_embeddings(tenant, session, [(m.id, v) for m, v in zip(msgs, vectors,
                                                                              strict=True)])
    (vector,) = await embedder.embed(["private note account"])
    rng = random.Random(7)
    probes = leaked = 0
    for _ in range(200):
        me = rng.choice(TENANTS)
        other = rng.choice([t for t in TENANTS if t != me])
        foreign = {text for text in texts[other]}
        guessed = [f"m{rng.randrange(40)}" for _ in range(5)]
        results = [
            [h.message.content for h in await store.search(me, session, other, vector, k=50,
                                                             neighbours=2)],
            [m.content for m in await store.get_messages(me, session, guessed)],
            [m.content for m in await store.all_messages(me, f"{session}-x")],
        ]
        async with store.scoped(me) as conn:  # a pooled connection, reused, asking outright
            cur = await conn.execute("SELECT content FROM messages WHERE tenant = %s", (other,))
            results.append([r["content"] for r in await cur.fetchall()])
        results.append([s.session for s in await store.sessions(other + "x")])
        results.append([m.content for m in (await store.read_window(me, session, 4000))
                        .state.messages])
        results.append([m.content for m in (await store.load_window(me, session))
                        .state.messages])
        for rows in results:
            probes += 1
            leaked += sum(1 for row in rows if row in foreign)
        own = {h.message.content for h in await store.search(me, session, "note", vector, k=5)}
        assert own and own <= set(texts[me])
    assert probes == 1400
    assert leaked == 0
