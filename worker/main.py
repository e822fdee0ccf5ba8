"""Process wiring: connect to Temporal and run the worker with its activities, and stop it
gracefully on SIGTERM or SIGINT (`serve_worker`, what `longthread worker` runs)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.providers.embedders import LocalEmbedder, OnnxEmbedder
from longthread.codec import data_converter
from longthread.settings import Settings, data_dir_problem
from memory.build import build_label
from memory.errors import InvalidInputError
from memory.store.db import open_archive, unreachable
from memory.store.roles import ensure_schema
from worker.wiring import build_activities
from workflows.conversation import ConversationWorkflow

__all__ = ["build_worker", "connect_client", "metrics_runtime", "run_worker", "serve_worker"]

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_metrics_runtimes: dict[str, Runtime] = {}


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime serving Prometheus metrics at `address`, one per address and process
    (a second would find the port taken): `longthread dev` runs a worker and a client in one."""
    if address not in _metrics_runtimes:
        try:
            _metrics_runtimes[address] = Runtime(telemetry=TelemetryConfig(
                metrics=PrometheusConfig(bind_address=address)))
        except ValueError as exc:  # "Address already in use", "invalid socket address syntax"
            raise InvalidInputError("LONGTHREAD_METRICS_ADDRESS",
                                    f"cannot serve metrics at {address!r}: {exc}") from None
    return _metrics_runtimes[address]


async def connect_client(settings: Settings, *, metrics: bool = False) -> Client:
    """The Temporal client. The SDK reports a server it cannot reach as a bare RuntimeError
    ("Failed client connect"); it becomes a ConnectionError naming the address, which the CLI
    prints as one line (exit 3). With `metrics` (a worker's client) and a metrics address set,
    the client's runtime serves the worker's metrics there."""
    key = settings.payload_key.get_secret_value() if settings.payload_key else None
    runtime = metrics_runtime(settings.metrics_address) \
        if metrics and settings.metrics_address else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter(key),
            runtime=runtime,
        )
    except RuntimeError as exc:
        raise ConnectionError(
            f"Temporal unreachable at {settings.temporal_address} (LONGTHREAD_TEMPORAL_ADDRESS"
            f"): {' '.join(str(exc).split())}") from None


def build_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]] = (),
    **options: Any,
) -> Worker:
    """A worker for every workflow longthread defines; CPU-bound activities get threads. Its
    identity names its build (SDK default, then the build), for `longthread health`."""
    options.setdefault("identity", f"{os.getpid()}@{socket.gethostname()} ({build_label()})")
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ConversationWorkflow],
        activities=list(activities),
        activity_executor=ThreadPoolExecutor(max_workers=8) if activities else None,
        **options,
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or forever): the production entry point's body. Once `stop`
    is set the worker polls no more, and the activities it runs get up to
    `shutdown_grace_seconds` to finish (the SDK's graceful shutdown) before they are
    cancelled; only then is the pool closed, so a finishing activity still has its database."""
    if not settings.database_url:
        raise InvalidInputError("LONGTHREAD_DATABASE_URL", "is required to run a worker (or "
                                "run it where `longthread dev` runs, on the same "
                                "LONGTHREAD_DATA_DIR, to join that stack)")
    try:
        await ensure_schema(settings.database_url, settings.dimensions,
                            settings.embedding_model)
    except (OSError, psycopg.OperationalError) as exc:
        raise unreachable("archive database", settings.database_url, exc) from None
    pool = await open_archive(settings.database_url, max_size=settings.database_pool_size)
    acts = None
    try:
        client = await connect_client(settings, metrics=True)  # before the model loads
        acts = build_activities(settings, pool)
        if isinstance(acts.embedder, LocalEmbedder | OnnxEmbedder):
            await asyncio.to_thread(acts.embedder.model)  # load once, before polling
        if stop is not None and stop.is_set():
            return  # stopped while starting: nothing is in flight yet
        grace = timedelta(seconds=settings.shutdown_grace_seconds)
        async with build_worker(client, settings.task_queue, acts.all(),
                                graceful_shutdown_timeout=grace):
            log.info("worker polling task queue %s on %s", settings.task_queue,
                     settings.temporal_address)
            await (stop.wait() if stop else asyncio.Event().wait())
    finally:
        if acts is not None:
            await acts.aclose()
        await pool.close()


# Past the grace period, how long a stop may still take before it is forced: a workflow task
# whose local activity retries an outage (the archive down) held a stopping worker, and `dev`,
# for minutes after the grace period (an SRE's user test, session 32).
STOP_MARGIN_SECONDS = 15.0


@contextmanager
def stopping_on_signals(stop: asyncio.Event, settings: Settings, who: str) -> Iterator[None]:
    """SIGTERM or SIGINT sets `stop`; a second signal, or the grace period and
    STOP_MARGIN_SECONDS passing without the process leaving, exits at once. Nothing is lost
    then: Temporal hands an abandoned task on, and `dev`'s watchdog stops its stack."""
    loop = asyncio.get_running_loop()
    deadline: list[asyncio.TimerHandle] = []

    def leave(why: str, code: int) -> None:
        sys.stderr.write(f"{who}: {why}, leaving without waiting for activities\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            leave("second signal", 128 + signum)
        limit = settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS
        sys.stderr.write(
            f"{who}: {signal.Signals(signum).name}, stopping: activities in flight get up to "
            f"{settings.shutdown_grace_seconds:g} s to finish (signal again to stop now; "
            f"stopped at {limit:g} s in any case)\n")
        sys.stderr.flush()
        stop.set()
        deadline.append(loop.call_later(limit, leave, f"still stopping after {limit:g} s",
                                        128 + signum))

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        for handle in deadline:
            handle.cancel()


async def serve_worker(settings: Settings, announce: Callable[[str], None] = print) -> None:
    """`longthread worker`: run until SIGTERM or SIGINT, then stop gracefully and announce it.

    `docker stop`, Kubernetes and systemd all stop a process with SIGTERM; dying on it
    abandoned every activity in flight, and Temporal retried an abandoned compaction only
    after its activity timeout. A second signal during the grace period leaves at once, for
    an operator who will not wait."""
    if (problem := data_dir_problem(settings)) is not None:
        raise ConnectionError(problem)
    stop = asyncio.Event()
    with stopping_on_signals(stop, settings, "worker"):
        await run_worker(settings, stop)
    announce("worker stopped")
