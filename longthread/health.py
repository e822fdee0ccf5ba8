"""Is this deployment able to serve? Temporal answers, workers poll the task queue, and the
archive is reachable, at this code's schema, holding this configuration's vectors.

For a readiness probe (`longthread health`, exit 0 or 1) and for an application's own health
endpoint (`await check_health(settings)`). Every check runs whatever the others found and is
bounded by `timeout`, so a probe answers even when Temporal or Postgres hangs; the other
commands stop at the first component they cannot reach.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client

from longthread.settings import Settings, data_dir_problem, resolve_settings
from memory.build import build_of_identity

__all__ = ["POLLER_FRESH_SECONDS", "Check", "Unhealthy", "check_health"]

# A worker with nothing to do re-polls each queue at least once a minute (the server holds a
# long poll open for about 60 s), while the server lists a gone worker's pollers for minutes
# more: a poller last seen longer ago than this is taken for gone.
POLLER_FRESH_SECONDS = 90.0


class Unhealthy(Exception):
    """What a check found wrong, as its line says it."""


@dataclass(frozen=True)
class Check:
    name: str  # temporal, workers or archive
    ok: bool
    detail: str
    ms: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def check_health(settings: Settings | None = None, timeout: float = 5.0,
                       client: Client | None = None) -> list[Check]:
    """One `Check` per component, in the order they depend on one another. `settings` None
    reads them as the client does (the environment, else a running `longthread dev`). Pass
    the application's `client` (`Longthread.client`) when polling often: else each call
    connects anew."""
    settings = resolve_settings(settings)
    found: list[Client] = []  # set by the first check, used by the second
    checks = [await _timed("temporal", timeout, lambda: _temporal(settings, found, client))]
    if found:
        checks.append(await _timed("workers", timeout, lambda: _workers(settings, found[0])))
    else:
        checks.append(Check("workers", False, "not checked: Temporal did not answer", 0.0))
    checks.append(await _timed("archive", timeout, lambda: _archive(settings)))
    return checks


async def _timed(name: str, timeout: float, check: Callable[[], Awaitable[str]]) -> Check:
    """The check's detail if it returns, its failure if it raises or outlasts `timeout`."""
    started = time.perf_counter()
    try:
        detail, ok = await asyncio.wait_for(check(), timeout), True
    except TimeoutError:
        detail, ok = f"no answer within {timeout:g} s", False
    except Exception as exc:  # a probe reports every failure as its line, never a traceback
        detail, ok = " ".join(str(exc).split()) or type(exc).__name__, False
    return Check(name, ok, detail, round((time.perf_counter() - started) * 1000, 1))


async def _temporal(settings: Settings, found: list[Client], client: Client | None) -> str:
    if client is None and (problem := data_dir_problem(settings)) is not None:
        raise ConnectionError(problem)
    # No payload codec: this client reads no payloads, so a probe needs no key.
    client = client or await Client.connect(settings.temporal_address,
                                            namespace=settings.temporal_namespace)
    if not await client.service_client.check_health():
        raise Unhealthy(f"{settings.temporal_address} reports itself not serving")
    await client.workflow_service.describe_namespace(  # a missing namespace fails here
        DescribeNamespaceRequest(namespace=client.namespace))
    found.append(client)
    return f"{client.service_client.config.target_host}, namespace {client.namespace}"


async def _workers(settings: Settings, client: Client) -> str:
    """Workers run both workflows and activities, so a healthy queue has fresh pollers of
    both kinds; the backlog says whether they keep up."""
    now = datetime.now(UTC)
    counts, backlog, builds = {}, 0, set[str]()
    for kind, queue_type in (("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
                             ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)):
        reply = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=settings.task_queue),
            task_queue_type=queue_type, include_task_queue_status=True))
        fresh = {p.identity for p in reply.pollers
                 if (now - p.last_access_time.ToDatetime(UTC)).total_seconds()
                 <= POLLER_FRESH_SECONDS}
        counts[kind] = len(fresh)
        builds.update(build_of_identity(i) or "a build before identities named one"
                      for i in fresh)
        backlog += reply.task_queue_status.backlog_count_hint
    seen = (f"{counts['workflow']} workflow and {counts['activity']} activity pollers on task "
            f"queue {settings.task_queue!r}, backlog {backlog}")
    if len(builds) > 1:  # a rolling upgrade under way, or a stale worker left behind
        seen += f"; workers of {len(builds)} builds: {'; '.join(sorted(builds))}"
    elif builds:
        seen += f"; build {builds.pop()}"
    if not counts["workflow"] or not counts["activity"]:
        raise Unhealthy(f"{seen}: no worker has polled it in the last "
                        f"{POLLER_FRESH_SECONDS:g} s (start `longthread worker` with this "
                        "LONGTHREAD_TASK_QUEUE and LONGTHREAD_TEMPORAL_NAMESPACE)")
    return seen


async def _archive(settings: Settings) -> str:
    """Reachable as these settings connect, migrated to this code's schema, holding vectors
    this configuration makes (else every query fails, or ranks by noise)."""
    import psycopg

    from memory.errors import InvalidInputError
    from memory.store.db import describe_url, unreachable
    from memory.store.migrations import (
        MIGRATIONS,
        check_embedder,
        check_embedding_dim,
        stored_embedder,
        stored_embedding_dim,
        stored_schema_version,
    )
    from memory.store.roles import missing_grants

    if not settings.database_url:
        raise Unhealthy("no archive configured (set LONGTHREAD_DATABASE_URL)")
    where = describe_url(settings.database_url)
    try:
        conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise unreachable("archive", settings.database_url, exc) from None
    async with conn:
        version = await stored_schema_version(conn)
        known = len(MIGRATIONS)
        if version != known:  # before any other read: version 0 has no longthread_meta
            fix = ("upgrade this longthread" if version > known
                   else "start a worker (it migrates) or run `longthread db setup`")
            raise Unhealthy(f"{where}: schema at version {version}, this code's is {known}: "
                            f"{fix}")
        dim, model = await stored_embedding_dim(conn), await stored_embedder(conn)
        missing = await missing_grants(conn)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise Unhealthy(f"{where}: the application role longthread_app lacks {missing[0]}"
                        f"{more}, so appends and contexts fail: grant it again as the admin "
                        "(docs/operations.md, \"Restoring grants\")")
    try:  # the rules a worker starts by: the size on its own (`db setup` records no model)
        check_embedding_dim(dim, settings.dimensions)
        check_embedder(model, settings.embedding_model)
    except InvalidInputError as exc:
        raise Unhealthy(f"{where}: {exc.problem}") from None
    return f"{where}, schema {version}, vectors of {model or 'no model yet'}"
