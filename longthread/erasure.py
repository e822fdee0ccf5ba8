"""Erase a session for good, on request: its rows in the archive, then its workflow's runs in
Temporal, whose histories hold the appended messages too (an update's arguments).

The archive goes first: once its transaction commits, every write for the session is refused
(`memory.store.erasure`), so a run still going cannot store anything again; then every run of
the session's workflow is deleted, the running one included (Temporal terminates it first).
Run again after a failure, it finds the archive already erased and deletes what is left.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from longthread.replies import described
from memory.store.erasure import ErasedRows, erase_session
from workflows.updates import workflow_id

__all__ = ["Erasure", "delete_runs", "erase"]


class Erasure(BaseModel):
    """One session's erasure: the archive's rows it removed, and the workflow runs deleted."""

    model_config = ConfigDict(frozen=True)

    archive: ErasedRows
    runs_deleted: int


async def delete_runs(client: Client, workflow: str, rounds: int = 3) -> int:
    """Delete every run of `workflow` (the latest by describing it, as visibility may not list
    it yet; earlier ones, continued-as-new, by listing); how many deletions were accepted.
    Looked at again after deleting, up to `rounds` times, in case the running one continued
    as new meanwhile."""
    deleted: set[str] = set()
    for _ in range(rounds):
        runs = await _runs(client, workflow) - deleted
        if not runs:
            break
        for run_id in sorted(runs):
            try:
                await client.workflow_service.delete_workflow_execution(
                    DeleteWorkflowExecutionRequest(
                        namespace=client.namespace,
                        workflow_execution=WorkflowExecution(workflow_id=workflow,
                                                             run_id=run_id)))
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:  # gone already: what was asked
                    raise
            deleted.add(run_id)
    return len(deleted)


async def _runs(client: Client, workflow: str) -> set[str]:
    latest = await described(client.get_workflow_handle(workflow))
    runs = {latest.run_id} if latest is not None else set()
    # Ids are percent-encoded (`workflow_id`), so they hold no quote to escape.
    async for execution in client.list_workflows(f"WorkflowId = '{workflow}'"):
        runs.add(execution.run_id)
    return runs


async def erase(client: Client, admin_url: str, tenant: str, session: str) -> Erasure:
    """Erase one session: the archive in one transaction, then its workflow's runs."""
    archive = await erase_session(admin_url, tenant, session)
    return Erasure(archive=archive,
                   runs_deleted=await delete_runs(client, workflow_id(tenant, session)))
