from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from memory.models import Message
from tests.unit.determinism_worker import compute
from tests.unit.strategies import conversations

ROOT = Path(__file__).resolve().parents[2]


def test_same_input_gives_byte_identical_output_across_processes() -> None:
    cases: list[list[Message]] = []

    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(conversations(max_units=20, system=True))
    def collect(convo: list[Message]) -> None:
        cases.append(convo)

    collect()
    assert len(cases) >= 500
    local = [compute(case) for case in cases]
    payload = json.dumps([[m.model_dump(mode="json") for m in case] for case in cases])
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    remote = subprocess.run(
        [sys.executable, "-m", "tests.unit.determinism_worker"], input=payload, text=True,
        capture_output=True, check=True, cwd=ROOT, env=env, timeout=600,
    )
    assert json.loads(remote.stdout) == local
    assert any('"level": "medium"' in out or '"level": "light"' in out for out in local), \
        "the generated cases should exercise compaction"
