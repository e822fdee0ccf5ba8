"""`longthread search`: across a tenant's sessions, or in one; each hit names its session and
turn, and the turn is what `why` takes."""

from __future__ import annotations

import json
import uuid

from temporalio.worker import Worker

from longthread.client import Longthread
from tests.e2e.test_cli import cli, env

__all__ = ["env"]  # the fixture, shared with test_cli


async def test_search_across_tickets_and_in_one(
    env: dict[str, str], lt: Longthread, worker: Worker
) -> None:
    tenant = f"cli-search-{uuid.uuid4().hex[:6]}"
    for n in range(4):
        conv = await lt.conversation(f"ticket-{n}", tenant=tenant)
        await conv.append_many([{"id": f"m{i}", "role": "user",
                                 "content": f"Order {n}{i} is late."} for i in range(3)])
        if n == 2:
            await conv.append({"id": "r", "role": "assistant",
                               "content": "Refund RF-77310 is approved."})
        await conv.settle(timeout=60)  # indexed

    code, out, err = await cli(env, "search", "RF-77310", "--tenant", tenant, "--json")
    assert code == 0, err
    hits = json.loads(out)
    assert [(h["session"], h["turn"], h["message"]["id"]) for h in hits] == [
        ("ticket-2", 4, "r")]
    code, out, err = await cli(env, "why", "ticket-2", "4", "--tenant", tenant, "--json")
    assert code == 0 and "RF-77310" in out, err
    code, out, _ = await cli(env, "search", "RF-77310", "--tenant", tenant)
    assert code == 0 and "ticket-2" in out and "Refund RF-77310" in out
    code, out, err = await cli(env, "search", "late", "-s", "ticket-1", "--tenant", tenant,
                               "--json")
    assert code == 0, err
    assert {h["session"] for h in json.loads(out)} == {"ticket-1"}
    code, _, err = await cli(env, "search", "late", "-s", "nosuch", "--tenant", tenant)
    assert code == 2 and "no session 'nosuch'" in err
    code, out, _ = await cli(env, "search", "nothing-like-this", "--tenant", tenant)
    assert code == 0 and " ".join(out.split()).startswith(
        f"no message of tenant {tenant!r} matches 'nothing-like-this' (a word in 20,000 or "
        "more of its messages is left out"), out
    code, _, err = await cli(env, "search", " ", "--tenant", tenant)
    assert code == 2 and "query: must not be empty" in err
