"""`longthread db erase`: asks before it erases (refuses with no terminal and no --yes), needs
a login that may delete, names what it removed, and `--all` takes a tenant's every session."""

from __future__ import annotations

import json
import uuid

from temporalio.worker import Worker

from longthread.client import Longthread
from memory.store.store import Store
from tests.e2e.test_cli import cli, env

__all__ = ["env"]  # the fixture, shared with test_cli


async def test_db_erase_from_the_command_line(
    env: dict[str, str], lt: Longthread, worker: Worker, store: Store, migrated_url: str
) -> None:
    tenant = f"cli-erase-{uuid.uuid4().hex[:6]}"
    for session, n in (("ticket-1", 12), ("ticket-2", 3), ("ticket-3", 2)):
        conv = await lt.conversation(session, tenant=tenant)
        await conv.append_many([{"id": f"m{i}", "role": "user", "content": f"Note {i}."}
                                for i in range(n)])
    admin = {**env, "LONGTHREAD_ADMIN_DATABASE_URL": migrated_url}

    code, _, err = await cli(admin, "db", "erase", "ticket-1", "--tenant", tenant)
    assert code == 2 and "--yes: erasing cannot be undone" in err
    code, _, err = await cli(env, "db", "erase", "ticket-1", "--tenant", tenant, "--yes")
    assert code == 2 and "admin_url: this login may not delete" in err
    code, _, err = await cli(admin, "db", "erase", "--tenant", tenant, "--yes")
    assert code == 2 and "name the sessions to erase, or pass --all" in err
    # A mistyped name among others stops the command before anything is erased.
    code, _, err = await cli(admin, "db", "erase", "ticket-1", "nosuch", "--tenant", tenant,
                             "--yes", "--json")
    assert code == 2 and "no session 'nosuch'" in err and "nothing was erased" in err
    assert len(await store.all_messages(tenant, "ticket-1")) == 12  # nothing erased so far

    code, out, err = await cli(admin, "db", "erase", "ticket-1", "--tenant", tenant, "--yes")
    assert code == 0, err
    assert f"erased 'ticket-1' of tenant '{tenant}': 12 messages" in out
    assert "workflow run(s) deleted" in out
    assert await store.all_messages(tenant, "ticket-1") == []

    code, out, err = await cli(admin, "db", "erase", "--all", "--tenant", tenant, "--yes",
                               "--json")
    assert code == 0, err
    erased = json.loads(out)
    # --all lists ticket-1 too, already erased: erasing it again retries its Temporal step.
    assert [(e["archive"]["session"], e["archive"]["already"], e["archive"]["rows"]["messages"])
            for e in erased] == [("ticket-1", True, 0), ("ticket-2", False, 3),
                                 ("ticket-3", False, 2)]
    code, out, _ = await cli(env, "sessions", "--tenant", tenant)
    assert code == 0 and "ticket-" not in out

    # A tenant with no session is a mistyped request, not a finished erasure: exit 2, as a
    # missing named session is.
    code, out, err = await cli(admin, "db", "erase", "--all", "--tenant", f"{tenant}-typo",
                               "--yes")
    assert code == 2 and not out
    assert err.strip() == f"error: tenant '{tenant}-typo' holds no session to erase"
