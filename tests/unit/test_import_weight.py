"""`import longthread` stays light: the client must not load the worker, the provider SDKs or
torch (issue 11: it once took 2.2 s and loaded both SDKs). Run in a fresh interpreter, since
this one has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("worker", "anthropic", "openai", "torch", "sentence_transformers",
         "activities.providers.llm", "temporalio.worker")


def test_the_client_and_cli_load_no_worker_sdk_or_torch() -> None:
    probe = ("import json, sys, longthread, longthread.client, longthread.cli; "
             f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=120)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
