"""A known id re-sent with another digest is refused naming what differs (created_at, name,
metadata, ...), not always "other content"; a copy that differs only in how its instant is
written is still a duplicate. Both append paths say the same, and store nothing."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from memory.errors import InvalidInputError
from memory.models import Message, ToolCall
from memory.store.appends import AppendOutcome
from memory.store.store import Store

Append = Callable[[str, str, Sequence[Message]], Awaitable[AppendOutcome]]

STAMP = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def _session() -> str:
    return f"s-{uuid.uuid4()}"


def _paths(store: Store) -> list[Append]:
    return [store.append_messages, store._append_checked]


def _original(**changes: object) -> Message:
    fields: dict[str, object] = {"id": "m00016", "role": "user",
                                 "content": "Where is the parcel for order 16?",
                                 "created_at": STAMP}
    fields.update(changes)
    return Message.model_validate(fields)


async def _refusal(store: Store, stored: Message, sent: Message) -> list[InvalidInputError]:
    """The refusal of [a new message, `sent`] after `stored`, through each append path; checks
    that nothing of the refused batch was stored."""
    refusals = []
    for append in _paths(store):
        session = _session()
        await append("acme", session, [stored])
        fresh = Message(id="new", role="user", content="a new message")
        with pytest.raises(InvalidInputError) as caught:
            await append("acme", session, [fresh, sent])
        assert [m.id for m in await store.all_messages("acme", session)] == [stored.id]
        assert (await store.cursors("acme", session)).next_seq == 1
        refusals.append(caught.value)
    assert [(e.field, e.problem) for e in refusals] == [(refusals[0].field,
                                                          refusals[0].problem)] * 2
    assert refusals[0].field == "messages[1].id"
    return refusals


async def test_another_created_at_is_named_with_both_instants(store: Store) -> None:
    (error, _) = await _refusal(store, _original(), _original(created_at=None))
    assert error.problem == ("'m00016' was already appended with another created_at "
                             "(stored 2024-03-01T10:00:00+00:00, sent none)")
    (error, _) = await _refusal(store, _original(),
                                _original(created_at=STAMP + timedelta(seconds=1)))
    assert error.problem == ("'m00016' was already appended with another created_at "
                             "(stored 2024-03-01T10:00:00+00:00, sent 2024-03-01T10:00:01+00:00)")
    (error, _) = await _refusal(store, _original(created_at=None), _original())
    assert error.problem == ("'m00016' was already appended with another created_at "
                             "(stored none, sent 2024-03-01T10:00:00+00:00)")
    assert "content" not in error.problem


async def test_another_name_is_named_with_both_values(store: Store) -> None:
    (error, _) = await _refusal(store, _original(), _original(name="alice"))
    assert error.problem == ("'m00016' was already appended with another name "
                             "(stored none, sent 'alice')")
    (error, _) = await _refusal(store, _original(name="bob"), _original(name="x" * 200))
    assert error.problem.startswith("'m00016' was already appended with another name "
                                    "(stored 'bob', sent 'xxx")
    assert len(error.problem) < 160


async def test_other_metadata_names_the_keys_that_differ(store: Store) -> None:
    (error, _) = await _refusal(store, _original(), _original(metadata={"pinned": True}))
    assert error.problem == ("'m00016' was already appended with other metadata "
                             "(sent adds 'pinned')")
    (error, _) = await _refusal(store, _original(metadata={"a": 1, "b": [1, 2], "c": "x"}),
                                _original(metadata={"a": 1, "b": [1, 3], "d": None}))
    assert error.problem == ("'m00016' was already appended with other metadata "
                             "(sent adds 'd', drops 'c', changes 'b')")


async def test_other_content_gives_lengths_and_where_it_differs(store: Store) -> None:
    body = "The parcel left depot 4 on Tuesday. " * 50_000  # ~1.8 MB
    (error, _) = await _refusal(store, _original(content=body),
                                _original(content=body[:1000] + "X" + body[1001:]))
    assert error.problem == ("'m00016' was already appended with other content "
                             f"(stored {len(body)} characters, sent {len(body)}; "
                             "first difference at offset 1000)")
    (error, _) = await _refusal(store, _original(), _original(content="Where is it?"))
    assert re.fullmatch(r"'m00016' was already appended with other content \(stored 33 "
                        r"characters, sent 12; first difference at offset 9\)", error.problem)


async def test_several_differences_are_all_named_content_first(store: Store) -> None:
    (error, _) = await _refusal(store, _original(),
                                _original(content="Where?", name="alice", created_at=None,
                                          metadata={"k": 1}))
    assert error.problem.startswith("'m00016' was already appended with other content (")
    for part in (" and another name (stored none, sent 'alice')",
                 " and another created_at (stored 2024-03-01T10:00:00+00:00, sent none)",
                 " and other metadata (sent adds 'k')"):
        assert part in error.problem


async def test_other_role_and_tool_calls_are_named(store: Store) -> None:
    stored = Message(id="a1", role="assistant", content="",
                     tool_calls=(ToolCall(id="k1", name="look", arguments='{"q":1}'),))
    (error, _) = await _refusal(store, stored, stored.model_copy(update={"tool_calls": (
        ToolCall(id="k1", name="look", arguments='{"q":2}'),)}))
    assert error.problem == ("'a1' was already appended with other tool_calls "
                             "(call 0 has other arguments)")
    (error, _) = await _refusal(store, _original(), _original(role="system"))
    assert error.problem == ("'m00016' was already appended with another role "
                             "(stored 'user', sent 'system')")


async def test_the_same_instant_in_another_timezone_is_a_duplicate(store: Store) -> None:
    paris = timezone(timedelta(hours=1))
    for append in _paths(store):
        session = _session()
        await append("acme", session, [_original()])
        again = await append("acme", session, [
            _original(created_at=datetime(2024, 3, 1, 11, 0, tzinfo=paris)),
            _original(id="m00017", created_at=datetime(2024, 3, 1, 10, 0))])  # naive: UTC
        assert (again.appended, again.duplicates) == (1, 1)
        # metadata keys in another order are the same message too
        await append("acme", session, [_original(id="m00018", metadata={"a": 1, "b": 2})])
        same = await append("acme", session, [_original(id="m00018",
                                                        metadata={"b": 2, "a": 1})])
        assert (same.appended, same.duplicates) == (0, 1)


async def test_metadata_as_postgres_gives_it_back_is_not_other_metadata(store: Store) -> None:
    """jsonb reorders nested keys and writes 1e20 as an integer: neither is a difference to
    name (a review found both named as "changes")."""
    nested = {"ctx": {"zeta": 1, "a": 2}, "pinned": False, "v": 1e20}
    for error in await _refusal(store, _original(metadata=nested),
                                _original(metadata={**nested, "pinned": True})):
        assert error.problem.endswith("with other metadata (sent changes 'pinned')"), error
    for error in await _refusal(store, _original(metadata=nested),
                                _original(metadata=nested, content="Another question.")):
        assert "metadata" not in error.problem, error
    for error in await _refusal(store, _original(metadata={"flag": True}),
                                _original(metadata={"flag": 1})):
        assert "changes 'flag'" in error.problem, error  # true is not 1


async def test_a_naive_time_is_stored_as_utc_whatever_the_connection_zone(
    app_url: str,
) -> None:
    """A time without a zone is UTC (as the digest takes it); it was written without an
    offset, so Postgres read it in the connection's zone: 9 hours off in Tokyo."""
    from psycopg.conninfo import make_conninfo

    from memory.store.db import open_pool

    pool = await open_pool(make_conninfo(app_url, options="-c TimeZone=Asia/Tokyo"))
    try:
        tokyo = Store(pool)
        for append in _paths(tokyo):
            session = _session()
            naive = datetime(2024, 3, 1, 10, 0)
            await append("acme", session, [_original(created_at=naive)])
            (stored,) = await tokyo.all_messages("acme", session)
            assert stored.created_at == STAMP
            again = await append("acme", session, [_original(created_at=naive)])
            assert again.duplicates == 1  # the same message, not "another created_at"
    finally:
        await pool.close()


async def test_the_same_text_in_another_normalization_is_named_so(store: Store) -> None:
    """A Mac keyboard's "Zoë" (e + U+0308) re-sent under the id of the composed one: the
    refusal says what differs, not an offset in text that looks the same."""
    name = "Zoë Müller asked about the refund."
    (error, _) = await _refusal(store, _original(content=name),
                                _original(content=unicodedata.normalize("NFD", name)))
    assert error.problem == ("'m00016' was already appended with other content (the same "
                             "text in another Unicode normalization (stored NFC, sent NFD): "
                             "send it as it was first sent)")
