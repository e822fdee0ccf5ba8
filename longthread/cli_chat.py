"""`longthread chat`: a terminal conversation through `generate()`.

Apart from `longthread/cli.py` (which `app.command` registers it in) so that module stays short.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from longthread.cli_support import EXIT_INPUT, SessionId, Tenant, err, out, run
from longthread.commands import connected
from longthread.settings import resolve_settings
from memory.checks import MAX_CONTEXT_TOKENS

__all__ = ["NO_CHAT_MODEL", "chat", "chat_configured", "talk"]

NO_CHAT_MODEL = ("no chat model configured. Set LONGTHREAD_CHAT_PROVIDER (anthropic or openai), "
                 "LONGTHREAD_CHAT_MODEL and the provider's API key (LONGTHREAD_ANTHROPIC_API_KEY "
                 "or LONGTHREAD_OPENAI_API_KEY; for Ollama or vLLM set "
                 "LONGTHREAD_OPENAI_BASE_URL), for the worker and for this command.")


def chat_configured() -> bool:
    """Whether a chat model is configured: without one, every turn would be refused by the
    worker, so the command says so before it connects."""
    return resolve_settings().chat_provider != "none"


async def talk(console: Console, session: str, tenant: str, max_tokens: int) -> None:
    """Read a line, send it through `generate()`, print the reply; until end of input."""
    async with connected(console) as ctx:
        conv = await ctx.lt.conversation(session, tenant)
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                return
            if line.strip():
                result = await conv.generate(line, max_tokens=max_tokens)
                console.print(f"[bold]model>[/bold] {result.reply.content}")


def chat(session: SessionId, tenant: Tenant = "default",
         max_tokens: Annotated[int, typer.Option(
             min=64, max=MAX_CONTEXT_TOKENS, help="The context's token budget per turn.")] = 4000
         ) -> None:
    """Talk to the configured chat model through generate(); Ctrl-D to leave."""
    if not chat_configured():
        err.print(f"[red]error:[/red] {NO_CHAT_MODEL}")
        raise typer.Exit(EXIT_INPUT)
    run(talk(out, session, tenant, max_tokens))
