"""`Store.find_messages`: a long id may be given as the tail a window shows for it
(`memory.packing.shown_id`), scoped by tenant, with one extra query only for the ids that are
not stored as asked; a tail several ids end with is ambiguous, and names some of them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from memory.models import Message
from memory.packing import shown_id
from memory.store.lookups import tail_of
from memory.store.store import Store


def _long(tail: str) -> str:
    """A UUID that ends with `tail` (8 characters)."""
    return str(uuid.uuid4())[:-8] + tail


def _message(ident: str) -> Message:
    return Message(id=ident, role="user", content=f"body of {ident}")


def _session() -> str:
    return f"tails-{uuid.uuid4().hex[:8]}"


def test_the_accepted_form_is_the_shown_one() -> None:
    ident = _long("9f02873d")
    assert shown_id(ident) == "…9f02873d"  # what a window's line shows
    assert tail_of(shown_id(ident)) == tail_of("9f02873d") == "9f02873d"
    assert tail_of("…9f0287") is None and tail_of("9f02873d0") is None and tail_of("…") is None


async def test_a_shown_tail_names_its_message(store: Store) -> None:
    session = _session()
    unique, short = _long("9f02873d"), "x-ab12cd34"  # 10 characters: always shown whole
    await store.append_messages("acme", session, [_message(i) for i in
                                                  ("m0", unique, short, _long("00000000"))])
    found = await store.find_messages("acme", session, ["…9f02873d", "m0", "9f02873d"])
    assert [m.id for m in found.messages] == [unique, "m0", unique]
    assert found.found["…9f02873d"][0] == 1 and found.found["m0"][0] == 0  # seqs
    assert found.found["…9f02873d"][1].content == f"body of {unique}"
    assert found.missing == [] and found.ambiguous == {}
    # A short id is shown whole, never by a tail: its last 8 characters name nothing.
    assert (await store.find_messages("acme", session, ["ab12cd34"])).missing == ["ab12cd34"]
    # Neither does a tail of another length, nor one no id ends with.
    missed = await store.find_messages("acme", session, ["…9f0287", "…ffffffff", "m9"])
    assert missed.missing == ["…9f0287", "…ffffffff", "m9"] and missed.messages == []


async def test_an_id_stored_as_asked_wins_over_a_tail(store: Store) -> None:
    session = _session()
    await store.append_messages("acme", session, [_message(_long("deadbeef")),
                                                  _message("deadbeef")])
    found = await store.find_messages("acme", session, ["deadbeef"])
    assert [m.id for m in found.messages] == ["deadbeef"]


async def test_a_tail_several_ids_share_is_ambiguous(store: Store) -> None:
    session = _session()
    shared = [_long("cafe0001") for _ in range(5)]
    await store.append_messages("acme", session, [_message(i) for i in shared])
    found = await store.find_messages("acme", session, ["…cafe0001", shared[0]])
    assert [m.id for m in found.messages] == [shared[0]]
    assert found.ambiguous == {"…cafe0001": (tuple(shared[:3]), 5)}
    assert found.missing == []
    text = found.ambiguity("…cafe0001")
    assert text.startswith("'…cafe0001' is ambiguous: 5 message ids end with 'cafe0001' (")
    assert all(repr(i) in text for i in shared[:3]) and shared[3] not in text
    assert text.endswith(" and 2 more); give the whole id")


async def test_tails_are_scoped_by_tenant(store: Store) -> None:
    session = _session()
    mine, theirs = _long("0a0b0c0d"), _long("1a1b1c1d")
    await store.append_messages("acme", session, [_message(mine)])
    await store.append_messages("other", session, [_message(theirs), _message(_long("0a0b0c0d"))])
    found = await store.find_messages("acme", session, ["…0a0b0c0d", "…1a1b1c1d"])
    assert [m.id for m in found.messages] == [mine] and found.ambiguous == {}
    assert found.missing == ["…1a1b1c1d"]


async def test_one_query_for_the_ids_found_and_one_for_every_tail(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _session()
    ids = [_long(f"{n:08x}") for n in range(4)]
    await store.append_messages("acme", session, [_message(i) for i in ids])
    calls: list[Sequence[tuple[str, Any]]] = []
    batch = store._batch

    async def counted(tenant: str, queries: Sequence[tuple[str, Any]],
                      **kwargs: Any) -> list[list[dict[str, Any]]]:
        if kwargs.get("conn") is None:  # not `_batch` calling itself with its connection
            calls.append(queries)
        return await batch(tenant, queries, **kwargs)

    monkeypatch.setattr(store, "_batch", counted)
    found = await store.find_messages("acme", session, ids)
    assert len(found.messages) == 4 and len(calls) == 1  # all whole: no suffix search
    calls.clear()
    asked = [ids[0], *(shown_id(i) for i in ids[1:]), "m-missing"]
    found = await store.find_messages("acme", session, asked)
    assert [m.id for m in found.messages] == ids and found.missing == ["m-missing"]
    assert len(calls) == 2 and all(len(q) == 1 for q in calls)
