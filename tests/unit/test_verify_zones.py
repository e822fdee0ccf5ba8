"""`verify` and `import` read a record's covered hash in the time zone it was taken in.

A covered hash is over the messages as the worker's database session read them, times in that
session's zone; a reader in another zone (PGTZ, a login's setting, an export read elsewhere)
saw every record as edited (a review's finding). A zone only renders the same instants, so
an edited message is still found.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from longthread.verify import ledger_findings
from memory.messages import content_hash
from memory.models import CompactionRecord, Message

BERLIN = ZoneInfo("Europe/Berlin")


def _messages(zone: tzinfo = UTC) -> list[Message]:
    stamps = [datetime(2024, 1, 15, 9, 0, tzinfo=UTC), datetime(2024, 7, 15, 9, 0, tzinfo=UTC)]
    return [Message(id=f"m{i}", role="user", content=f"Parcel {i} left Leeds.",
                    created_at=at.astimezone(zone)) for i, at in enumerate(stamps)]


def _record(covered: list[Message]) -> CompactionRecord:
    return CompactionRecord(id="c1", seq=0, level="light", action="archive",
                            reason="over 70%", covered_ids=tuple(m.id for m in covered),
                            covered_hash=content_hash(covered), strategy="archive-only",
                            tokens_before=20, tokens_after=0)


def test_a_record_taken_in_another_zone_checks_out_and_an_edit_does_not() -> None:
    record = _record(_messages(BERLIN))  # winter +01:00 and summer +02:00: a zone, not an offset
    assert ledger_findings(_messages(UTC), [record]) == []
    assert ledger_findings(_messages(ZoneInfo("Asia/Tokyo")), [record]) == []
    edited = _messages(UTC)
    edited[1] = edited[1].model_copy(update={"content": "Parcel 1 left York."})
    (finding,) = ledger_findings(edited, [record], changed={"m1"})
    assert finding.ident == "c1" and "(changed: m1)" in finding.problem
