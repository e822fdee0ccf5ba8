"""The audit page's routes: sessions, the ledger timeline, one record (covered messages beside
the summary that replaced them), the window served at a turn (rebuilt and checked as `replay`
does), and undo behind a confirmation page.

Every page is rendered on the server by Jinja2 with autoescaping on: message text is user data.
Ids travel in query parameters, never in paths, so any id a tenant may use round-trips intact.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from temporalio.service import RPCError

from longthread.audit import replay_at, why_at, why_of_id
from longthread.client import Longthread, check_ids
from longthread.settings import acting_for
from longthread.ui._guard import Guard
from memory.audit import ServedContext
from memory.checks import MAX_TURN
from memory.errors import InvalidInputError, LongthreadError, NotFoundError
from memory.models import CompactionRecord
from memory.store.store import Store
from memory.undo import undo_refusal

__all__ = ["COVERED_SHOWN", "SERVED_SHOWN", "UNDO_SECONDS", "build_app"]

COVERED_SHOWN = 500  # covered messages rendered per record unless ?all=1
SERVED_SHOWN = 200  # newest served contexts listed; any turn can still be opened by number
# The client retries an update for minutes while no worker polls; a browser should not wait.
UNDO_SECONDS = 60.0


def _url(path: str, **params: object) -> str:
    return path + "?" + urlencode({k: v for k, v in params.items() if v is not None})


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


_env = Environment(loader=PackageLoader("longthread.ui", "templates"), autoescape=True,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.globals["url"] = _url
_env.filters["when"] = _when


class AuditPage:
    """The handlers, bound to one store, one client (for undo) and an optional fixed tenant."""

    def __init__(self, store: Store, lt: Longthread, tenant: str | None) -> None:
        self.store = store
        self.lt = lt
        self.fixed_tenant = tenant
        self.csrf = secrets.token_urlsafe(24)
        self.actor = acting_for(lt.settings, "ui")  # recorded on each undo the page makes

    # -- helpers ---------------------------------------------------------------------------
    def render(self, name: str, tenant: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = _env.get_template(name).render(tenant=tenant, fixed=self.fixed_tenant is not None,
                                              csrf=self.csrf, **context)
        return HTMLResponse(html, status_code=status)

    def tenant(self, asked: str | None) -> str:
        """The fixed tenant, or the one asked for; never another tenant's."""
        if self.fixed_tenant is not None:
            if asked not in (None, self.fixed_tenant):
                raise HTTPException(403, f"this page serves tenant {self.fixed_tenant!r} only")
            return self.fixed_tenant
        tenant = asked or "default"
        check_ids(tenant, "x")
        return tenant

    def ids(self, params: Any) -> tuple[str, str]:
        tenant = self.tenant(params.get("tenant"))
        session = params.get("session") or ""
        check_ids(tenant, session)
        return tenant, session

    async def ledger(self, tenant: str, session: str) -> list[CompactionRecord]:
        records = await self.store.ledger(tenant, session)
        if not records and not await self.store.count(tenant, session):
            raise await self.store.missing(tenant, session)
        return records

    async def record(self, tenant: str, session: str, record_id: str
                     ) -> tuple[CompactionRecord, list[CompactionRecord]]:
        records = await self.ledger(tenant, session)
        found = next((r for r in records if r.id == record_id), None)
        if found is None:
            raise NotFoundError(f"record: no record {record_id!r} in session {session!r}")
        return found, records

    # -- pages -----------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        tenant = self.tenant(request.query_params.get("tenant"))
        return self.render("index.html", tenant, sessions=await self.store.sessions(tenant))

    async def session(self, request: Request) -> Response:
        tenant, session = self.ids(request.query_params)
        records = await self.ledger(tenant, session)
        served = [ServedContext.model_validate(d)
                  for d in await self.store.served(tenant, session)]
        return self.render(
            "session.html", tenant, session=session, records=records,
            served=served[-SERVED_SHOWN:], served_count=len(served),
            messages=await self.store.count(tenant, session),
            undone_by={r.undoes: r.id for r in records if r.undoes},
            done=request.query_params.get("done"))

    async def record_page(self, request: Request) -> Response:
        tenant, session = self.ids(request.query_params)
        record, records = await self.record(tenant, session, request.query_params.get("id", ""))
        show_all = request.query_params.get("all") == "1"
        ids = record.covered_ids if show_all else record.covered_ids[:COVERED_SHOWN]
        covered = await self.store.get_messages(tenant, session, ids)
        target = next((r for r in records if r.id == record.undoes), None)
        return self.render("record.html", tenant, session=session, r=record, covered=covered,
                           target=target, truncated=len(ids) < len(record.covered_ids),
                           undone_by={x.undoes: x.id for x in records if x.undoes})

    async def window(self, request: Request) -> Response:
        tenant, session = self.ids(request.query_params)
        turn = _whole(request.query_params, "turn", 0)
        seq = _whole(request.query_params, "seq", 1) if "seq" in request.query_params else None
        await self.ledger(tenant, session)  # a clear 404 for an unknown session
        result = await replay_at(self.store, tenant, session, turn, seq=seq)
        shown = turn if seq is None else result.served.turn  # `turn` is not used with a seq
        return self.render("window.html", tenant, session=session, turn=shown, result=result)

    async def why(self, request: Request) -> Response:
        tenant, session = self.ids(request.query_params)
        ident = request.query_params.get("id")
        if ident:  # a message id, whole or as a window shows its tail
            history = await why_of_id(self.store, tenant, session, ident.strip())
        else:
            history = await why_at(self.store, tenant, session,
                                   _whole(request.query_params, "turn", 1))
        return self.render("why.html", tenant, session=session, h=history)

    async def undo_confirm(self, request: Request) -> Response:
        tenant, session = self.ids(request.query_params)
        record, records = await self.record(tenant, session, request.query_params.get("id", ""))
        undone_by = next((r.id for r in records if r.undoes == record.id), None)
        # Asked now, so the page explains a refusal instead of offering a form that fails;
        # the undo itself asks again against the window it commits on.
        refusal = None
        if not (record.undoes or undone_by):
            window = await self.store.read_window(tenant, session, max_tokens=1)
            refusal = undo_refusal(record.id, records, {s.id for s in window.state.summaries})
        return self.render("undo.html", tenant, session=session, r=record, undone_by=undone_by,
                           refusal=refusal)

    async def undo(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.csrf.encode()):
            raise HTTPException(403, "the undo form is stale or forged: reload the page")
        tenant, session = self.ids(form)
        record, _ = await self.record(tenant, session, form.get("id", ""))
        try:
            async with asyncio.timeout(UNDO_SECONDS):
                conv = await self.lt.conversation(session, tenant=tenant)
                undo = await conv.uncompact(record.id, actor=self.actor)
        except InvalidInputError as exc:
            return self.render("error.html", tenant, status=409, message=str(exc))
        except (TimeoutError, RPCError) as exc:
            return self.render("error.html", tenant, status=503, message=(
                f"undo of {record.id} was not confirmed by a worker within {UNDO_SECONDS:.0f} "
                f"s ({exc or 'timeout'}); is `longthread dev` or a worker running? The ledger "
                "shows whether it committed."))
        return RedirectResponse(_url("/session", tenant=tenant, session=session,
                                     done=undo.id), status_code=303)

    # -- errors ----------------------------------------------------------------------------
    def _error(self, request: Request, status: int, message: str) -> Response:
        tenant = self.fixed_tenant or "default"
        asked = request.query_params.get("tenant")
        if self.fixed_tenant is None and asked:
            tenant = asked
        return self.render("error.html", tenant, status=status, message=message)

    async def on_error(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return self._error(request, exc.status_code, str(exc.detail))
        if isinstance(exc, InvalidInputError):
            return self._error(request, 400, str(exc))
        if isinstance(exc, NotFoundError):
            return self._error(request, 404, str(exc))
        return self._error(request, 500, f"{type(exc).__name__}: {exc}")


def build_app(store: Store, lt: Longthread, *, tenant: str | None, token: str | None,
              port: int, check_host: bool) -> Starlette:
    page = AuditPage(store, lt, tenant)
    routes = [
        Route("/", page.index),
        Route("/session", page.session),
        Route("/record", page.record_page),
        Route("/window", page.window),
        Route("/why", page.why),
        Route("/undo", page.undo_confirm, methods=["GET"]),
        Route("/undo", page.undo, methods=["POST"]),
        Mount("/static", StaticFiles(directory=Path(__file__).with_name("static")),
              name="static"),
    ]
    handlers: dict[Any, Any] = {HTTPException: page.on_error, InvalidInputError: page.on_error,
                                NotFoundError: page.on_error, LongthreadError: page.on_error}
    return Starlette(routes=routes, exception_handlers=handlers, middleware=[
        Middleware(Guard, token=token, port=port, check_host=check_host)])


def _whole(params: Mapping[str, str], field: str, low: int) -> int:
    """A query parameter that must be a whole number from `low` to MAX_TURN."""
    try:
        value = int(params.get(field, ""))
    except ValueError:
        raise InvalidInputError(field, "must be a whole number") from None
    if not low <= value <= MAX_TURN:
        raise InvalidInputError(field, f"must be from {low} to {MAX_TURN:,}")
    return value
