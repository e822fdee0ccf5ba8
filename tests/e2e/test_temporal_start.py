"""The dev server survives a port taken while it starts (`worker.stack.TemporalDevServer`).

The Temporal CLI picks its HTTP API and metrics ports by probing, then binds them later, so
another process can take one in between; one test run failed so. The CLI checks a named UI
port the same way and exits at once, which lets these tests make the clash happen on purpose.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from worker.stack import BIND_CLASH, TemporalDevServer, free_port


@contextmanager
def held_port() -> Iterator[socket.socket]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held


async def _release_after_clash(server: TemporalDevServer, held: socket.socket) -> int:
    """Free the port once the server has failed on it; how many starts had failed by then."""
    while BIND_CLASH not in server.log_path.read_text(errors="replace"):
        await asyncio.sleep(0.01)
    held.close()
    return server.log_path.read_text(errors="replace").count(BIND_CLASH)


async def test_a_start_that_loses_a_port_is_retried(tmp_path: Path) -> None:
    with held_port() as held:
        server = TemporalDevServer(tmp_path, port=free_port(), ui_port=held.getsockname()[1])
        server.start()
        try:
            release = asyncio.create_task(_release_after_clash(server, held))
            await server.wait_ready(timeout=60)
            assert await release >= 1, "the first start should have failed on the held port"
            assert server.process is not None and server.process.poll() is None
        finally:
            server.stop()


async def test_a_port_that_stays_taken_fails_with_the_servers_reason(tmp_path: Path) -> None:
    with held_port() as held:
        port = held.getsockname()[1]
        server = TemporalDevServer(tmp_path, port=free_port(), ui_port=port)
        server.start()
        try:
            with pytest.raises(RuntimeError, match=f"{port}.*{BIND_CLASH}"):
                await server.wait_ready(timeout=60, bind_retries=2)
        finally:
            server.stop()
        assert server.log_path.read_text().count(BIND_CLASH) == 3  # the start and 2 retries
