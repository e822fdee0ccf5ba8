"""`longthread search`: apart from `longthread/cli.py`, which `app.command` registers it in,
to keep that module to the commands' declarations."""

from __future__ import annotations

from typing import Annotated

import typer

from longthread.cli_support import Json, Tenant, out, run
from memory.checks import MAX_RETRIEVE

__all__ = ["search"]


def search(query: Annotated[str, typer.Argument(help="What to look for.")],
           tenant: Tenant = "default",
           session: Annotated[str | None, typer.Option(
               "--session", "-s", help="Search this session only (hybrid: BM25 and "
               "embeddings); without it, every session of the tenant (BM25).")] = None,
           k: Annotated[int, typer.Option(
               "-k", min=1, max=MAX_RETRIEVE, help="How many messages to show.")] = 20,
           as_json: Json = False) -> None:
    """Find messages across a tenant's sessions ("which tickets mention A-58213?"), or in
    one session; each hit names its session and turn (for `why` and `replay`)."""
    from longthread.commands import connected

    async def body() -> None:
        async with connected(out, need_db=True) as ctx:
            await ctx.search(query, tenant, session, k, as_json)
    run(body())
