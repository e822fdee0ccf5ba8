"""Running the audit page: the exposure check, the socket, and uvicorn inside our event loop.

Starlette and uvicorn were picked because they are small, well kept (Encode) and already in
the dependency tree through the `mcp` package, so the page costs no new runtime library.
uvicorn runs *inside* the caller's event loop (`start()` returns a handle), so `longthread
dev` can host the page beside its worker; for that it must not take over the process's
signal handlers, which the supervisor owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from types import TracebackType

import uvicorn

from longthread.client import Longthread, check_ids
from longthread.settings import Settings, resolve_settings
from longthread.ui._app import build_app
from memory.errors import InvalidInputError, LongthreadError

__all__ = ["DEFAULT_PORT", "RunningUi", "check_exposure", "is_loopback", "serve", "start"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8321
STARTUP_SECONDS = 10.0


def is_loopback(host: str) -> bool:
    """True only for names that cannot be reached from another machine. Anything we cannot
    prove is loopback (a hostname, a wildcard) counts as exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, tenant: str | None) -> None:
    """Refuse to listen beyond loopback unless the page is both locked and scoped: anyone who
    can reach the port would otherwise read every tenant's conversations and undo compactions."""
    if tenant is not None:
        check_ids(tenant, "x")
    if token is not None and len(token) < 8:
        raise InvalidInputError("--token", "must be at least 8 characters")
    if is_loopback(host):
        return
    missing = [flag for flag, value in (("--token", token), ("--tenant", tenant)) if not value]
    if missing:
        raise InvalidInputError(
            "--host", f"{host} listens beyond loopback, so the page needs --token (or "
            f"LONGTHREAD_UI_TOKEN) and --tenant; missing: {', '.join(missing)}")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process that hosts us decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is one clear error instead of uvicorn's exit()."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # create_server sets SO_REUSEADDR, so a crash's TIME_WAIT sockets don't block a restart.
        return socket.create_server((host.strip("[]"), port), family=family)
    except OSError as exc:
        raise LongthreadError(f"--port: cannot listen on {host}:{port} ({exc.strerror}); "
                              "pick a free port") from None


class RunningUi:
    """A started audit page. `stop()` (or leaving `async with`) shuts it down and closes what
    `start()` opened; a Longthread passed in by the caller stays open."""

    def __init__(self, server: _EmbeddedServer, task: asyncio.Task[None], url: str,
                 own: Longthread | None) -> None:
        self.server = server
        self.task = task
        self.url = url
        self._own = own

    async def wait(self) -> None:
        """Until the server stops (it only does when asked, or on a crash, which re-raises)."""
        await asyncio.shield(self.task)

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
        finally:
            if self._own is not None:
                await self._own.close()
                self._own = None

    async def __aenter__(self) -> RunningUi:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


async def start(settings: Settings | None = None, *, port: int = DEFAULT_PORT,
                host: str = "127.0.0.1", token: str | None = None, tenant: str | None = None,
                lt: Longthread | None = None) -> RunningUi:
    """Serve the page in the running event loop and return once it accepts connections.

    With `lt`, reads use its store and undo goes through its Temporal client (tests, `dev`);
    otherwise it connects from `settings` (env, or a running `longthread dev`'s stack.json).
    """
    check_exposure(host, token, tenant)
    own = None
    if lt is None:
        own = lt = await Longthread.connect(resolve_settings(settings))
    try:
        store = await lt.store()
        sock = _bind(host, port)
    except BaseException:
        if own is not None:
            await own.close()
        raise
    bound_port = int(sock.getsockname()[1])
    app = build_app(store, lt, tenant=tenant, token=token, port=bound_port,
                    check_host=token is None)
    # log_config=None: uvicorn's records go to whatever logging the host process set up.
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, ws="none",
                            server_header=False, proxy_headers=False)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="longthread-ui")
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    running = RunningUi(server, task, f"http://{shown}:{bound_port}/", own)
    deadline = asyncio.get_running_loop().time() + STARTUP_SECONDS
    while not server.started:
        if task.done() or asyncio.get_running_loop().time() > deadline:
            await running.stop()
            sock.close()
            task.result()  # re-raise a startup failure
            raise LongthreadError(f"the audit page did not start on {host}:{bound_port}")
        await asyncio.sleep(0.02)
    log.info("audit page on %s", running.url)
    return running


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def serve(port: int = DEFAULT_PORT, host: str = "127.0.0.1", token: str | None = None,
                tenant: str | None = None, settings: Settings | None = None,
                announce: Callable[[str], None] = _say) -> None:
    """`longthread ui`: serve until Ctrl-C (which cancels us), then shut down cleanly."""
    running = await start(settings, port=port, host=host, token=token, tenant=tenant)
    try:
        hint = "  (open it once with ?token=<your token>)" if token else ""
        announce(f"audit page on {running.url}{hint}; Ctrl-C to stop")
        await running.wait()
    finally:
        await running.stop()
