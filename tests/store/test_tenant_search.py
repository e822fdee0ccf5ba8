"""Search across a tenant's sessions (`Store.search_tenant`): finds a message in whichever
session holds it, ranks the rare match first, stays inside the tenant, and finds a message
once it is indexed."""

from __future__ import annotations

import uuid

from memory.models import Message
from memory.store.store import Store


def _tenant() -> str:
    return f"ts-{uuid.uuid4().hex[:8]}"


async def test_search_finds_across_sessions_of_one_tenant_only(store: Store) -> None:
    tenant, other = _tenant(), _tenant()
    for t in (tenant, other):
        for n in range(30):
            await store.append_messages(t, f"ticket-{n}", [
                Message(id=f"m{i}", role="user", content=f"My order {n}{i} is late again.")
                for i in range(5)])
    await store.append_messages(tenant, "ticket-17", [Message(
        id="refund", role="assistant", content="Refund reference RF-77310 approved today.")])
    await store.append_messages(other, "ticket-3", [Message(
        id="leak", role="assistant", content="Refund reference RF-77310 approved today.")])
    for t in (tenant, other):
        for n in range(30):
            await store.index_terms(t, f"ticket-{n}")

    hits = await store.search_tenant(tenant, "refund RF-77310", 5)
    assert [(h.session, h.message.id, h.seq) for h in hits[:1]] == [("ticket-17", "refund", 5)]
    assert all(h.message.id != "leak" for h in hits)  # the other tenant's copy
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # A word in every ticket matches many sessions; k bounds what comes back.
    late = await store.search_tenant(tenant, "late", 7)
    assert len(late) == 7 and len({h.session for h in late}) > 1
    # Not indexed yet: not found; once indexed, found.
    await store.append_messages(tenant, "ticket-99", [Message(
        id="fresh", role="user", content="New email is ana.k@example.net")])
    assert await store.search_tenant(tenant, "ana.k@example.net", 5) == []
    await store.index_terms(tenant, "ticket-99")
    assert [h.message.id for h in await store.search_tenant(
        tenant, "ana.k@example.net", 5)] == ["fresh"]
    assert await store.search_tenant(_tenant(), "refund", 5) == []


async def test_a_long_message_holding_the_rare_id_ranks_above_short_ones_sharing_a_word(
        store: Store) -> None:
    """User test, session 31: an 80 KB pasted log whose last line names ORD-77777-ZZ came
    42nd of 42, under short messages sharing only "ord": plain BM25's length normalisation
    buried its two rare terms. BM25+ gives each matched term a floor."""
    tenant = _tenant()
    for n in range(40):  # "ord" is in one message of each ticket's 21: a rare-ish word
        await store.append_messages(tenant, f"ticket-{n}", [Message(
            id="m0", role="user", content=f"hello, order ORD-{n} please")] + [Message(
                id=f"f{i}", role="assistant", content=f"Thanks, noted step {i} of {n}.")
                for i in range(20)])
    log = "\n".join(f"DEBUG render frame {i} took {i % 17} ms ok" for i in range(1500))
    await store.append_messages(tenant, "big", [Message(
        id="log", role="user",
        content=log + "\nERROR order ORD-77777-ZZ checksum mismatch")])
    for session in [f"ticket-{n}" for n in range(40)] + ["big"]:
        await store.index_terms(tenant, session)
    hits = await store.search_tenant(tenant, "ORD-77777-ZZ", 10)
    assert (hits[0].session, hits[0].message.id) == ("big", "log"), [
        (h.session, h.score) for h in hits]
