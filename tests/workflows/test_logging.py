"""Log lines from the workflow and its activities come out whole for any session id.

Temporal's loggers append the workflow's details to the message before logging formats it
with its args; a workflow id holds '%' (`workflow_id` escapes '-' as %2D), so a message with
args failed to format, and the compaction's log line was lost (a '--- Logging error ---'
traceback instead, or a failed activity under pytest, whose handler raises)."""

from __future__ import annotations

import logging
import uuid

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import LtFactory
from tests.workflows.test_compaction import _turns


async def test_compaction_log_lines_are_whole_for_ids_with_dashes(
    client: Client, make_lt: LtFactory, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio")
    lt = make_lt(client)
    # A tenant of its own: the suite shares one Temporal server, and a session another test
    # left running (its worker gone) would take this update and never answer it.
    conv = await lt.conversation("ticket-4711", tenant=f"acme-{uuid.uuid4().hex[:8]}")
    await conv.append_many(_turns(60))
    await conv.settle(timeout=120)
    record = (await conv.ledger())[0]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("temporalio")]
    assert any(line.startswith(f"compaction completed: {record.id} level={record.level}")
               and "ticket%2D4711" in line for line in lines), lines[-5:]
