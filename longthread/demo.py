"""`longthread demo`: the main job, on an embedded stack of its own, with no keys needed."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from rich.console import Console

from longthread.client import Longthread
from worker.dev import embedded_stack
from worker.main import run_worker
from worker.settings import Settings
from worker.stack import free_port

__all__ = ["run_demo"]

TICKET = [
    ("user", "Melanie", "Hi, my order 4711 has not arrived. It was due on May 3."),
    ("assistant", "Caroline", "Sorry about that! Which address did you order to?"),
    ("user", "Melanie", "12 Baker Street, London. I need it before Friday."),
    ("assistant", "Caroline", "The parcel is stuck in Leeds. I will resend it by express."),
]


async def run_demo(out: Console, data_dir: Path | None = None) -> None:
    root = data_dir or Path(tempfile.mkdtemp(prefix="longthread-demo-"))
    settings = Settings(data_dir=root, temporal_address=f"127.0.0.1:{free_port()}",
                        temporal_ui_port=free_port(), task_queue="longthread-demo")
    out.print(f"starting the embedded stack in {root} …")
    async with embedded_stack(settings) as info:
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(settings.model_copy(update={"database_url": info.database_url}), stop))
        try:
            lt = await Longthread.connect(settings)
            conv = await lt.conversation("demo-ticket", tenant="demo")
            result = await conv.append_many([
                {"id": f"t{i}", "role": role, "name": name, "content": text}
                for i, (role, name, text) in enumerate(TICKET, start=1)
            ])
            out.print(f"appended {result.appended} messages")
            for message in await conv.messages():
                out.print(f"  [{message.id}] {message.name}: {message.content}", markup=False)
            await conv.close()
        finally:
            stop.set()
            await worker
    out.print("demo finished; the stack is stopped")
