"""The client refuses bad arguments itself, naming the field and the limit, before it sends
anything (so no stack is needed: the conversation's client is never reached)."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from longthread.client import Conversation, Longthread, check_ids
from longthread.replies import CompactAttempt
from longthread.settings import Settings
from memory.errors import InvalidInputError
from memory.messages import parse_messages
from memory.models import CompactionRecord


class _Unreachable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the client touched {name} before refusing the input")


def _conversation() -> Conversation:
    lt = Longthread(_Unreachable(), Settings(_env_file=None))  # type: ignore[arg-type]
    return Conversation(lt, "s", "t")


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"max_tokens": 3_000_000}, "max_tokens", "less than or equal to 2000000"),
        ({"max_tokens": "lots"}, "max_tokens", "valid integer"),
        ({"query": "x" * 100_001}, "query", "at most 100000 characters"),
        ({"k": 501}, "k", "less than or equal to 500"),
        ({"neighbours": -1}, "neighbours", "greater than or equal to 0"),
    ],
)
async def test_context_refuses_out_of_range_arguments(kwargs: dict[str, Any], field: str,
                                                      text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        await _conversation().context(**kwargs)
    assert info.value.field == field
    assert text in info.value.problem


@pytest.mark.parametrize("messages", [{"id": "a", "role": "user", "content": "x"}, "hello"])
async def test_append_many_of_one_message_says_a_list_is_expected(messages: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        await _conversation().append_many(messages)
    assert info.value.field == "messages"
    assert "expected a list of messages" in info.value.problem


@pytest.mark.parametrize("size", [1_600_000, 3_000_000])
async def test_one_message_over_the_call_limit_is_named_as_the_message(size: int) -> None:
    """A 1.6 MB message is under the 2,000,000-byte content limit but no call can carry it;
    a 3 MB one is refused at the same limit, not library mode's (user test, session 31)."""
    with pytest.raises(InvalidInputError) as info:
        await _conversation().append({"id": "big", "role": "user", "content": "é" * (size // 2)})
    assert info.value.field == "messages[0].content"
    assert f"its content alone is {size} bytes" in str(info.value)
    assert "at most 1500000 bytes in one call" in str(info.value)
    body = "x" * 1_600_000
    with pytest.raises(InvalidInputError) as info:
        half = body[:800_000]
        await _conversation().append_many([{"id": f"b{i}", "role": "user", "content": half}
                                           for i in range(2)])
    assert info.value.field == "messages" and "send fewer" in str(info.value)
    with pytest.raises(InvalidInputError) as info:  # in a batch, the message is named too
        await _conversation().append_many([{"id": "small", "role": "user", "content": "hi"},
                                           {"id": "big", "role": "user", "content": body}])
    assert info.value.field == "messages[1].content"


async def test_an_oversized_message_is_blamed_on_the_field_that_makes_it_so() -> None:
    with pytest.raises(InvalidInputError) as info:
        await _conversation().append({"id": "m", "role": "user", "content": "short",
                                      "metadata": {"log": "x" * 1_600_000}})
    assert info.value.field == "messages[0].metadata"


@pytest.mark.parametrize(("kwargs", "field"), [({"preserve_recent": -1}, "preserve_recent"),
                                               ({"focus": "x" * 5000}, "focus")])
async def test_compact_refuses_bad_arguments_by_name(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        await _conversation().try_compact(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("ids", "field", "text"),
    [
        ("m1", "ids", "expected a list of message ids"),
        ([], "ids", "must hold 1 to 200 ids; got 0"),
        ([f"m{i}" for i in range(201)], "ids", "must hold 1 to 200 ids; got 201"),
        (["m1", 7], "ids[1]", "must be a string, not int"),
        (["m1", ""], "ids[1]", "must be 1 to 200 characters"),
        (["   "], "ids[0]", "must not be blank"),
    ],
)
async def test_messages_refuses_bad_ids_before_reading(ids: Any, field: str, text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        await _conversation().messages(ids)
    assert info.value.field == field
    assert text in info.value.problem


def test_a_compact_attempt_that_made_a_record_does_not_say_nothing() -> None:
    record = CompactionRecord(id="c4", seq=3, level="medium", action="summarize", reason="r",
                              covered_ids=("m1", "m2"), covered_hash="-", strategy="extractive",
                              tokens_before=90, tokens_after=40)
    assert CompactAttempt(record).nothing_because(None) == "compacted: c4 (2 messages)"
    assert CompactAttempt(None, skipped="too small").nothing_because(2) == (
        "nothing compacted: too small")
    assert CompactAttempt(None).nothing_because(2).startswith("nothing to compact: ")


@pytest.mark.parametrize("tenant", ["tenant\u200bA", "tenant\u202eAtnanet", "tenant\x9bW",
                                    "\ufefftenantA", "tenant\u2066A"])
async def test_an_id_with_invisible_characters_is_refused(tenant: str) -> None:
    """'tenant\\u200bA' was accepted and listed exactly like 'tenantA' (session 25's security
    review); ordinary ids, any script, stay accepted."""
    lt = Longthread(_Unreachable(), Settings(_env_file=None))  # type: ignore[arg-type]

    async def no_such_session(conv: Conversation) -> bool:
        return False  # one that exists is attached to: tests/workflows/test_session_ids.py

    lt._exists = no_such_session  # type: ignore[method-assign]
    for session, owner, field in (("s", tenant, "tenant"), (tenant, "t", "session")):
        with pytest.raises(InvalidInputError, match=f"^{field}: must not contain invisible"):
            await lt.conversation(session, tenant=owner)
    ordinary = ("日本-acme", "#4711/café\U0001f469\u200d\U0001f4bb")  # a joiner in an emoji
    assert check_ids(*ordinary, opening=True) == ordinary
    # A session started before the rule stays reachable for reading and erasing.
    assert check_ids(tenant, "s") == (tenant, "s")


def test_ids_a_store_could_not_hold_or_a_reader_could_confuse_are_refused() -> None:
    """Session 29's user test: a lone surrogate raised a raw UnicodeEncodeError; "Zoë" typed
    on a Mac (NFD) opened a second session listed as "Zoë"; a right-to-left override in a
    message id reached summaries, the ledger and the audit page reversed."""
    with pytest.raises(InvalidInputError, match=r"^session: is not valid UTF-8"):
        check_ids("acme", "x\ud800")
    with pytest.raises(InvalidInputError, match=r"^tenant: is not valid UTF-8"):
        check_ids("t\udc00", "s")
    decomposed = unicodedata.normalize("NFD", "Zoë")
    with pytest.raises(InvalidInputError, match=r"^session: must be in Unicode NFC form"):
        check_ids("acme", decomposed, opening=True)
    assert check_ids("acme", decomposed) == ("acme", decomposed)  # one opened before: readable
    for ident, problem in (("refund-\u202eFED-ton\u202c-ok", "U\\+202E at offset 7"),
                           ("x\x85y", "U\\+0085 at offset 1"),
                           (unicodedata.normalize("NFD", "Zoë-1"), "Unicode NFC form")):
        with pytest.raises(InvalidInputError, match=rf"^messages\[0\]\.id: must .*{problem}"):
            parse_messages([{"id": ident, "role": "user", "content": "hi"}])
    assert parse_messages([{"id": "Zoë-1\u200d👩", "role": "user", "content": "hi"}])


@pytest.mark.parametrize("query", ["", "   ", "\u200b", "\u200e\u2060 "])
async def test_a_search_for_nothing_visible_is_refused(query: str) -> None:
    with pytest.raises(InvalidInputError, match=r"^query: must not be empty"):
        await _conversation().search(query)
