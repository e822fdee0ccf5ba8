"""Run the engine over conversations read from stdin and print what it produced.

The determinism test runs this in a fresh interpreter (with another hash seed) and compares
its bytes with the same computation done in the test process.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from memory.extractive import extractive_summary
from memory.models import Message
from memory.policy import CompactionPolicy
from memory.session import Session

NOON = datetime(2026, 12, 7, 12, tzinfo=UTC)  # the same clocks, so the same bytes


def compute(messages: list[Message]) -> str:
    session = Session("det", policy=CompactionPolicy(context_window=300, preserve_recent=3),
                      clock=lambda: 0.0, wall_clock=lambda: NOON)
    session.add_messages(messages)
    window = session.get_context(query="refund order Caroline", max_tokens=250)
    summary = extractive_summary(messages, 120, focus="order")
    return json.dumps([session.to_data().model_dump(mode="json"),
                       window.model_dump(mode="json"), summary.model_dump(mode="json")],
                      sort_keys=True)


def main() -> None:
    cases = json.load(sys.stdin)
    out = [compute([Message.model_validate(m) for m in case]) for case in cases]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
