"""`longthread resume`: apart from `longthread/cli.py`, which `app.command` registers it in.

A session's embedding and compaction run in its workflow, which an append or an attach starts.
With Temporal's state lost (a dev server started without its database, a cluster rebuilt), a
session that had work waiting kept it until someone wrote to it: 936 messages unembedded and a
window at 385% of its policy, while `health` said ok (an SRE's user test). This starts a run
for each such session; it continues from the archive's cursors.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from longthread.cli_support import Json, Tenant, out, run

__all__ = ["resume"]


def resume(sessions: Annotated[list[str] | None, typer.Argument(
               metavar="[SESSION]...", help="Sessions to resume whatever they hold (default: "
               "every session of the tenant with work waiting).", show_default=False)] = None,
           tenant: Tenant = "default", as_json: Json = False) -> None:
    """Start the run of each session of a tenant that has work waiting (messages not yet
    embedded, or a window over the policy's context window), as after Temporal's state was
    lost; each continues from the archive. A session whose run is going is left as it is."""
    from longthread.commands import connected

    async def body() -> None:
        async with connected(out, need_db=True) as ctx:
            store = ctx.need_store()
            named = list(dict.fromkeys(sessions or []))
            waiting = {w.session: w for w in await store.waiting(
                tenant, ctx.lt.policy.context_window)}
            chosen = named or list(waiting)
            for session in chosen:
                await ctx.lt.conversation(session, tenant, create=False)
            if as_json:
                out.print_json(json.dumps({"tenant": tenant, "resumed": [
                    {"session": s, "unembedded": waiting[s].unembedded if s in waiting else 0,
                     "window_tokens": waiting[s].window_tokens if s in waiting else None}
                    for s in chosen]}))
                return
            if not chosen:
                out.print(f"nothing waiting in tenant {escape(tenant)!r}", highlight=False)
            for s in chosen:
                held = (f"{waiting[s].unembedded:,} unembedded, window "
                        f"{waiting[s].window_tokens:,} tokens") if s in waiting else "as asked"
                out.print(f"resumed {escape(s)} ({held})", highlight=False, soft_wrap=True)
    run(body())
