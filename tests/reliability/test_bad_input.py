"""Hypothesis-generated bad input through the client and the CLI: every case is stored
verbatim or refused with a clear error; the workflow never fails or gets stuck."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import Client, WorkflowExecutionStatus

from activities.conversation import ConversationActivities
from longthread.client import Longthread
from memory.errors import InvalidInputError
from memory.policy import CompactionPolicy
from memory.store.store import Store
from tests.e2e.test_cli import cli
from worker.main import build_worker
from worker.settings import Settings

NASTY = ["'; DROP TABLE messages; --", "\\x00", "%s %(x)s {0}", "\u202e\u200b", "\x07\x1b[31m",
         "</archived_messages>", "🎉" * 50, "\r\n\t", "\ud800", "\x00"]

content = st.one_of(st.text(max_size=200), st.sampled_from(NASTY),
                    st.builds(lambda a, b: a + b, st.sampled_from(NASTY), st.text(max_size=50)))
role = st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]),
                 st.sampled_from(["", "admin", "USER", "bot", "function"]))


@st.composite
def raw_message(draw: st.DrawFn, ident: str) -> dict[str, Any]:
    message: dict[str, Any] = {"id": ident, "role": draw(role), "content": draw(content)}
    if draw(st.integers(0, 5)) == 0:
        message["tool_call_id"] = draw(st.sampled_from(["call-1", "nope", ""]))
    if draw(st.integers(0, 5)) == 0:
        message["tool_calls"] = [{"id": "call-1", "name": "lookup"}]
    if draw(st.integers(0, 8)) == 0:
        message["id"] = draw(st.sampled_from(["", "dup", "x" * 300, "new\nline"]))
    return message


async def test_a_thousand_bad_inputs_through_the_client(
    client: Client, activities: ConversationActivities, store: Store
) -> None:
    queue = f"bad-{uuid.uuid4()}"
    lt = Longthread(client, Settings(task_queue=queue), CompactionPolicy(context_window=50_000),
                    store=store)
    outcomes = {"stored": 0, "refused": 0}
    stored: dict[str, str] = {}
    async with build_worker(client, queue, activities.all()):
        conv = await lt.conversation("bad-input", tenant="acme")
        for body in ("é" * 950_000, "x" * 3_000_000):  # 1.9 MB and 3 MB
            try:
                await conv.append({"id": f"huge{len(body)}", "role": "user", "content": body})
                outcomes["stored"] += 1
            except InvalidInputError as exc:
                assert "bytes" in str(exc)
                outcomes["refused"] += 1
        counter = iter(range(10**6))

        @settings(max_examples=1000, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def case(data: st.DataObject) -> None:
            n = next(counter)
            batch = [data.draw(raw_message(f"c{n}-{k}")) for k in range(data.draw(
                st.integers(1, 3)))]
            pending.append(batch)

        pending: list[list[dict[str, Any]]] = []
        case()
        for batch in pending:
            try:
                await conv.append_many(batch)
            except InvalidInputError as exc:
                assert exc.field and exc.problem
                outcomes["refused"] += 1
            else:
                outcomes["stored"] += 1
                stored.update({m["id"]: m["content"] for m in batch})
        assert len(pending) >= 1000
        await conv.append({"id": "still-alive", "role": "user", "content": "ok"})
        await conv.close()
        stats = await conv.handle.result()
        assert (await conv.handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    archived = {m.id: m.content for m in await store.all_messages("acme", "bad-input")}
    assert stats.messages == len(archived)
    missing = [ident for ident in stored if ident not in archived]
    assert not missing, f"{len(missing)} accepted messages were not stored: {missing[:5]}"
    for ident, text in stored.items():  # every accepted message is stored verbatim
        assert archived[ident] == text
    assert outcomes["stored"] > 50 and outcomes["refused"] > 50, outcomes


async def test_bad_input_files_through_the_cli(
    client: Client, task_queue: str, app_url: str, worker: object, tmp_path: Path
) -> None:
    env = {"LONGTHREAD_TEMPORAL_ADDRESS": client.service_client.config.target_host,
           "LONGTHREAD_DATABASE_URL": app_url, "LONGTHREAD_TASK_QUEUE": task_queue,
           "LONGTHREAD_DATA_DIR": str(tmp_path / "none")}
    lines = [json.dumps({"id": "ok", "role": "user", "content": "fine"}),
             '{"id": "x", "role": ', json.dumps({"id": "r", "role": "wizard", "content": "x"}),
             json.dumps({"id": "t", "role": "tool", "content": "x"}), json.dumps([1, 2]),
             json.dumps({"id": "n", "role": "user", "content": "a\u0000b"}),
             json.dumps({"id": "e", "role": "user", "content": ""})]
    refused = 0
    for k, bad in enumerate(lines[1:], start=1):
        path = tmp_path / f"case{k}.jsonl"
        path.write_text(lines[0] + "\n" + bad + "\n")
        code, _, err = await cli(env, "import", f"cli-bad-{k}", str(path))
        assert code == 2 and "line 2" in err, (bad, err)
        refused += 1
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "l", "role": "user", "content": "caf\xe9"}\n')
    code, _, err = await cli(env, "import", "cli-bad-latin", str(path))
    assert code == 2 and "UTF-8" in err
    assert refused == len(lines) - 1
