"""Import and export files: every refusal names the file or the line, and nothing half-written
is left behind."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from longthread.transfer import (
    at_line,
    check_writable,
    ledger_left,
    message_parts,
    read_session_file,
    write_export,
)
from memory.errors import InvalidInputError
from memory.models import CompactionRecord, Message


def _message(n: int) -> Message:
    return Message(id=f"m{n}", role="user", content=f"line {n}")


def test_a_directory_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is a directory; name a JSONL file"):
        read_session_file(tmp_path)
    with pytest.raises(InvalidInputError, match="is a directory; name the file to write"):
        check_writable(tmp_path, force=True)


def test_a_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    rows = [{"id": "a", "role": "user", "content": "x"}, {"id": "b", "role": "user",
            "content": "y"}, {"id": "a", "role": "user", "content": "z"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InvalidInputError) as info:
        read_session_file(path)
    assert str(info.value) == "line 3: message id 'a' is already on line 1"


def test_export_refuses_a_missing_folder_and_an_existing_file_unless_forced(
        tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        check_writable(tmp_path / "nope" / "out.jsonl", force=False)
    existing = tmp_path / "out.jsonl"
    existing.write_text("keep me\n")
    with pytest.raises(InvalidInputError, match="exists; pass --force"):
        check_writable(existing, force=False)
    check_writable(existing, force=True)
    check_writable(tmp_path / "new.jsonl", force=False)


def test_an_export_that_fails_halfway_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("the previous export\n")

    def failing() -> Iterator[Message]:
        yield _message(1)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_export(path, "t", "s", failing(), [])
    assert path.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]

    assert write_export(path, "t", "s", [_message(1), _message(2)], []) == 2
    assert [m.id for m in read_session_file(path).messages] == ["m1", "m2"]


def test_served_contexts_round_trip_and_a_bad_one_names_its_line(tmp_path: Path) -> None:
    served = {"seq": 7, "turn": 2, "query": "where?", "max_tokens": 500, "tokens": 40,
              "source_ids": ["m1"], "digest": "d" * 64, "ledger_seq": 0,
              "retrieved": [["m1", 0.5]], "shares": None, "assembly_version": 10}
    path = tmp_path / "out.jsonl"
    assert write_export(path, "t", "s", [_message(1), _message(2)], [], [served]) == 2
    data = read_session_file(path)
    assert [m.id for m in data.messages] == ["m1", "m2"] and data.ledger == ()
    assert [s.model_dump(mode="json") for s in data.served] == [served]
    lines = path.read_text().splitlines()
    lines[-1] = json.dumps({"served_context": {**served, "turn": "after lunch"}})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError, match=r"^line 4: bad served context: turn: "):
        read_session_file(path)
    # Bounded as the store's columns are, so a file cannot fail halfway through an import.
    for bad, field in (({"turn": 2**31}, "turn"), ({"query": "a\x00b"}, "query"),
                       ({"retrieved": [["m\x00", 0.5]]}, "retrieved[0]")):
        lines[-1] = json.dumps({"served_context": {**served, **bad}})
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(InvalidInputError, match=rf"^line 4: bad served context: "
                           rf"{re.escape(field)}: "):
            read_session_file(path)


@pytest.mark.parametrize("older", ["longthread-export/1", "longthread-export/2"])
def test_an_export_of_an_earlier_format_still_imports(tmp_path: Path, older: str) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"format": older, "tenant": "t",
                                "session": "s"}) + "\n" + _message(1).model_dump_json() + "\n")
    assert [m.id for m in read_session_file(path).messages] == ["m1"]
    path.write_text(json.dumps({"format": "longthread-export/9"}) + "\n")
    with pytest.raises(InvalidInputError, match="unknown export format"):
        read_session_file(path)


def _sized(n: int, size: int) -> Message:
    return Message(id=f"m{n}", role="user", content="x" * size)


def test_batches_split_by_size_as_well_as_count() -> None:
    """Two 1 MB messages, each accepted alone, never share a call; small ones still go by
    count; and the bytes are measured as `append_many` measures them."""
    messages = [_sized(1, 10), _sized(2, 1_000_000), _sized(3, 1_000_000), *(
        _sized(n, 10) for n in range(4, 9))]
    parts = message_parts(messages, list(range(2, 10)), count=3, limit=1_500_000)
    assert [(start, [m.id for m in chunk]) for start, chunk in parts] == [
        (0, ["m1", "m2"]), (2, ["m3", "m4", "m5"]), (5, ["m6", "m7", "m8"])]
    for _, chunk in parts:
        assert sum(len(m.model_dump_json().encode()) for m in chunk) <= 1_500_000
    assert message_parts([], [], count=100, limit=1_500_000) == []


def test_a_message_too_large_for_any_call_is_refused_by_its_line_and_field() -> None:
    messages = [_sized(1, 10), _sized(2, 1_600_000)]
    with pytest.raises(InvalidInputError) as info:
        message_parts(messages, [4, 11], count=100, limit=1_500_000)
    assert info.value.field == "line 11"
    size = len(messages[1].model_dump_json().encode())  # what `append_many` would send
    assert info.value.problem.startswith(f"content: the message is {size} bytes as sent; the "
                                         "limit for one message is 1500000 bytes")


def test_a_file_line_over_any_limit_names_the_durable_stacks(tmp_path: Path) -> None:
    """A 3 MB line was refused at library mode's 2,000,000 bytes, a 1.6 MB one at 1,500,000
    (user test, session 31): both at the limit that applies, before anything is stored."""
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"id": "big", "role": "user", "content": "x" * 3_000_000})
                    + "\n")
    with pytest.raises(InvalidInputError, match=r"^line 1: content: its content alone is "
                       r"3000000 bytes; the limit for one message is 1500000 bytes"):
        read_session_file(path)


def test_messages_keep_their_file_lines_and_storing_errors_name_them(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_export(path, "t", "s", [_message(n) for n in range(1, 5)], [])
    text = path.read_text().splitlines()
    path.write_text("\n".join([*text[:3], "", *text[3:]]) + "\n")  # a blank line 4
    data = read_session_file(path)
    assert data.lines == (2, 3, 5, 6)  # line 1 is the export's header
    refused = InvalidInputError("messages[1].id", "'m4' was already appended with other content")
    assert str(at_line(refused, data.lines, start=2)) == \
        "line 6: id: 'm4' was already appended with other content"
    whole = InvalidInputError("messages[0]", "a tool result with no open call")
    assert str(at_line(whole, data.lines, start=2)) == "line 5: a tool result with no open call"
    other = InvalidInputError("messages", "must hold at least one message")
    assert at_line(other, data.lines, start=0) is other


def test_every_bad_line_is_reported_in_one_run_up_to_a_bound(tmp_path: Path) -> None:
    """ut27: only the first bad line was named, so a file with 200 took 200 runs to mend."""
    from longthread.transfer import MAX_REPORTED_LINES

    path = tmp_path / "bad.jsonl"
    rows = ['{"id": "a", "role": "user", "content": "fine"}', "not json", "null",
            '{"id": "b", "role": "assistant", "content": ""}',
            '{"type": "human", "data": {"content": "hi", "type": "human"}}']
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidInputError) as info:
        read_session_file(path)
    found = str(info.value).splitlines()
    assert [line.split(":")[0] for line in found] == ["line 2", "line 3", "line 4", "line 5"]
    assert "must be a JSON object" in found[1] and "content: must not be empty" in found[2]
    assert "LangChain's messages_to_dict form" in found[3]
    path.write_text("not json\n" * (MAX_REPORTED_LINES + 5))
    with pytest.raises(InvalidInputError) as info:
        read_session_file(path)
    found = str(info.value).splitlines()
    assert len(found) == MAX_REPORTED_LINES + 1 and "reading stopped there" in found[-1]


def test_a_byte_order_mark_is_read_past_and_bad_bytes_name_where(tmp_path: Path) -> None:
    """PowerShell 5 and Notepad's "UTF-8 with BOM" start a file with U+FEFF: refused as bad
    JSON on line 1 before, which a CLI user cannot decode otherwise."""
    path = tmp_path / "bom.jsonl"
    rows = [{"id": "a", "role": "user", "content": "Grüße"}, {"id": "b", "role": "user",
                                                            "content": "y"}]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert [m.id for m in read_session_file(path).messages] == ["a", "b"]
    path.write_bytes(b'{"id": "a", "role": "user", "content": "x"}\n\xff\xfe\n')
    with pytest.raises(InvalidInputError, match=r"is not valid UTF-8 \(.*\) on line 2, byte 1$"):
        read_session_file(path)


def test_a_ledger_is_restored_onto_its_own_prefix_and_refused_onto_another() -> None:
    """Ids are positions (c1, c2 …): a copy that compacted on its own before the file's
    ledger came passed as "the same import" and failed on a record naming messages its
    window no longer held (user test, session 31). Records match by what they did."""
    def ledger(spans: list[tuple[int, int]]) -> list[CompactionRecord]:
        return [CompactionRecord(id=f"c{n + 1}", seq=n, level="light", action="archive",
                                 reason="r", covered_ids=tuple(f"m{i}" for i in range(a, b)),
                                 covered_hash="h", strategy="archive-only", tokens_before=9,
                                 tokens_after=1) for n, (a, b) in enumerate(spans)]

    filed = ledger([(0, 10), (10, 20), (20, 30)])
    assert ledger_left([], filed) == filed
    assert ledger_left(filed[:1], filed) == filed[1:]  # an import stopped between parts
    assert ledger_left(filed, filed) == []  # all there already
    own = ledger([(0, 10), (10, 20), (20, 30), (30, 40)])  # compacted on after the import
    assert ledger_left(own, filed) == []
    with pytest.raises(InvalidInputError, match=r"^FILE: the session already has a ledger of "
                       r"its own: its record 1 \(c1, auto, 14 messages\) is not the file's "
                       r"\(c1, auto, 10 messages\)"):
        ledger_left(ledger([(0, 14)]), filed)
