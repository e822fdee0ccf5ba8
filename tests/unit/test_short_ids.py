"""Assembly version 5: a long id (a UUID, as clients send) is shown on its retrieved line by
its tail, so the budget goes to evidence; the full ids stay in `source_ids`, a shown id names
one message, and version 4 still renders the windows it served byte for byte."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from memory.assembly import assemble_context
from memory.models import Message, ScoredMessage
from memory.packing import ID_SHOWN_WHOLE, ID_TAIL, shown_ids
from memory.tokens import HeuristicCounter

COUNTER = HeuristicCounter()
START = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


def _scored(ids: list[str]) -> list[ScoredMessage]:
    return [ScoredMessage(
        message=Message(id=ident, role="user", name="Caroline", created_at=START + timedelta(i),
                        content="I went to the group " + " ".join(
                            f"w{(i * 31 + j * 17) % 997}" for j in range(12))),
        score=1.0 / (60 + i), session="s", seq=i) for i, ident in enumerate(ids)]


def _uuids(n: int) -> list[str]:
    return [str(uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC835 % 2**128))
            for i in range(n)]


def test_long_ids_are_shown_by_a_tail_that_names_one_message() -> None:
    ids = [*_uuids(5), "D3:7", "x" * ID_SHOWN_WHOLE,
           "ticket-4711-msg-00042", "ticket-4712-msg-00042"]  # these two share their tail
    shown = shown_ids(_scored(ids))
    assert {i: shown[i] for i in ids[:5]} == {i: "…" + i[-ID_TAIL:] for i in ids[:5]}
    assert set(shown) == set(ids[:5])  # short ids and ids whose tail repeats: shown whole


def test_version_5_fits_more_uuid_lines_and_keeps_their_ids_in_source_ids() -> None:
    ids = _uuids(120)
    retrieved = _scored(ids)
    kw = {"max_tokens": 2000, "recent": [], "retrieved": retrieved, "query": "group",
          "counter": COUNTER}
    new, old = assemble_context(**kw), assemble_context(**kw, version=4)  # type: ignore[arg-type]
    block = next(m for m in new.messages if m.section == "retrieved")
    old_block = next(m for m in old.messages if m.section == "retrieved")
    assert new.tokens <= 2000 and old.tokens <= 2000
    assert len(block.source_ids) > len(old_block.source_ids)
    assert set(block.source_ids) <= set(ids)
    for ident in block.source_ids:
        assert f"[…{ident[-ID_TAIL:]} " in block.content and ident not in block.content
    for ident in old_block.source_ids:  # version 4 is unchanged: every id whole
        assert f"[{ident} " in old_block.content


def test_short_ids_render_as_before() -> None:
    retrieved = _scored([f"D{i}:{i}" for i in range(80)])
    kw = {"max_tokens": 1000, "recent": [], "retrieved": retrieved, "query": "group",
          "counter": COUNTER}
    new, old = assemble_context(**kw), assemble_context(**kw, version=4)  # type: ignore[arg-type]
    assert new == old


def test_a_shortened_id_never_reads_like_another_candidates_whole_id() -> None:
    # An id that starts with "…" is refused since assembly version 14's change (a tail
    # lookup took it), but one stored before may still be among the candidates.
    ids = ["x-abcdefgh", "0000-abcdefgh", *_uuids(3)]
    scored = _scored(ids)
    ids[0] = "…abcdefgh"
    scored[0] = scored[0].model_copy(
        update={"message": scored[0].message.model_copy(update={"id": ids[0]})})
    shown = shown_ids(scored)
    assert "0000-abcdefgh" not in shown and "…abcdefgh" not in shown
    assert set(shown) == set(ids[2:])


def test_version_5_escapes_an_id_that_holds_the_fence() -> None:
    ids = ["a</archived_messages>", "b</archived_messages>", "c<archived_messages"]
    window = assemble_context(max_tokens=2000, recent=[], retrieved=_scored(ids),
                              query="group", counter=COUNTER)
    block = next(m for m in window.messages if m.section == "retrieved")
    assert set(block.source_ids) == set(ids)  # the contents are verbatim; the ids escaped
    assert block.content.count("</archived_messages>") == 1
    assert block.content.count("<archived_messages>") == 1
