"""`longthread resume`: after Temporal's state is lost, a session with work waiting gets a run
again (an SRE's user test: 936 messages stayed unembedded until someone wrote to the session).
Losing Temporal's state is played by storing a session's messages in the archive with no run."""

from __future__ import annotations

import asyncio
import json
import uuid

from temporalio.worker import Worker

from memory.models import Message
from memory.store.store import Store
from tests.e2e.test_cli import cli, env

__all__ = ["env"]  # the fixture, imported for its use here


async def test_resume_starts_the_runs_of_sessions_with_work_waiting(
    env: dict[str, str], worker: Worker, store: Store
) -> None:
    tenant = f"resume-{uuid.uuid4().hex[:8]}"
    messages = [Message(id=f"m{i}", role=("user", "assistant")[i % 2],
                        content=f"Turn {i}: the parcel {4700 + i} is at depot {i % 7}.")
                for i in range(40)]
    await store.append_messages(tenant, "stranded", messages)  # no run embeds them
    code, listed, err = await cli(env, "resume", "-t", tenant, "--json")
    assert code == 0, err
    assert json.loads(listed)["resumed"][0]["session"] == "stranded"
    assert json.loads(listed)["resumed"][0]["unembedded"] == 40
    for _ in range(600):  # the run the CLI started embeds them; nothing else touches it
        if not await store.waiting(tenant, 1_000_000):
            break
        await asyncio.sleep(0.2)
    assert await store.waiting(tenant, 1_000_000) == []
    code, again, err = await cli(env, "resume", "-t", tenant)
    assert code == 0, err
    assert f"nothing waiting in tenant '{tenant}'" in again
    code, _, err = await cli(env, "resume", "ghost", "-t", tenant)
    assert code == 2 and "no session 'ghost'" in err
