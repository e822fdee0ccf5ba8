"""Recorded histories replay against today's workflow code with no nondeterminism."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.conversation import ConversationWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
WORKFLOWS = Path(__file__).parents[2] / "workflows"


def _recorded_patches(path: Path) -> set[str]:
    found = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes") or {}
        if marker.get("markerName") != "core_patch":  # local activities record markers too
            continue
        for payloads in marker.get("details", {}).values():
            for payload in payloads["payloads"]:
                found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def test_histories_are_committed() -> None:
    assert len(HISTORIES) >= 3, "record them with `python -m tests.replay.record`"


def test_every_patch_in_the_workflow_code_has_a_recorded_history() -> None:
    """A behaviour change behind a new patch must come with histories that exercise it."""
    code = "".join(p.read_text() for p in WORKFLOWS.glob("*.py"))
    patches = set(re.findall(r'workflow\.patched\("([^"]+)"\)', code))
    recorded = set().union(*(_recorded_patches(p) for p in HISTORIES))
    assert patches <= recorded, f"re-record: {sorted(patches - recorded)} never replayed"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[ConversationWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None
