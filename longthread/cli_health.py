"""`longthread health`: apart from `longthread/cli.py`, which `app.command` registers it in,
to keep that module to the commands' declarations."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from longthread.cli_support import EXIT_FAIL, Json, out, run

__all__ = ["health"]


def health(timeout: Annotated[float, typer.Option(
               min=0.1, max=300, help="Seconds each check may take before it counts as failed."
           )] = 5.0,
           as_json: Json = False) -> None:
    """Check that this deployment can serve: Temporal answers, workers poll the task queue,
    the archive is reachable at this code's schema with this configuration's vectors. Exit 0
    when all pass, 1 otherwise: a readiness probe."""
    from longthread.health import check_health

    checks = run(check_health(timeout=timeout))
    if as_json:
        out.print_json(json.dumps({"ok": all(c.ok for c in checks),
                                   "checks": [c.as_dict() for c in checks]}))
    else:
        for c in checks:
            mark = "[green]ok  [/green]" if c.ok else "[red]FAIL[/red]"
            out.print(f"{mark} {c.name:<8} {escape(c.detail)} ({c.ms:g} ms)", highlight=False,
                      soft_wrap=True)
    if not all(c.ok for c in checks):
        raise typer.Exit(EXIT_FAIL)
