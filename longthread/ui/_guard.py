"""Who may open the page: the token (query once, then a cookie, or a header), the Host header
on loopback, and the headers every answer carries.

A loopback page with no token is still reachable by any web page the user visits, through the
browser: DNS rebinding could read it, and a forged form could undo a compaction. So without a
token only loopback Host names are served, and the undo form carries a per-process secret.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

__all__ = ["HEADERS", "LOOPBACK_NAMES", "Guard", "cookie_name", "cookie_value"]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

# No script runs on the page at all (it needs none), so even a missed escape could not run one.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def cookie_name(port: int) -> str:
    """Cookies ignore ports, so two pages on one host each need their own name."""
    return f"longthread_ui_{port}"


def cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the cookie never spells it out."""
    return hmac.new(token.encode(), b"longthread-ui-cookie", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _host_name(request: Request) -> str:
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class Guard(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, token: str | None, port: int, check_host: bool) -> None:
        super().__init__(app)
        self.token = token
        self.cookie = cookie_name(port)
        self.check_host = check_host

    def _refuse(self, request: Request) -> Response | None:
        if self.check_host and _host_name(request) not in LOOPBACK_NAMES:
            return PlainTextResponse("400: this page answers only to a loopback Host name "
                                     "(127.0.0.1 or localhost)", status_code=400)
        if self.token is None:
            return None
        given = request.query_params.get("token")
        if given is not None:
            if not _same(given, self.token):
                return PlainTextResponse("401: wrong token", status_code=401)
            # First visit: keep the token in a cookie and take it out of the address bar.
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(params)}" if params else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(self.cookie, cookie_value(self.token), httponly=True,
                                samesite="strict", path="/")
            return response
        bearer = request.headers.get("authorization", "")
        offered = [request.headers.get("x-longthread-token", ""),
                   bearer[7:] if bearer.lower().startswith("bearer ") else ""]
        if any(o and _same(o, self.token) for o in offered):
            return None
        if _same(request.cookies.get(self.cookie, ""), cookie_value(self.token)):
            return None
        return PlainTextResponse("401: this page needs its token: open it once with "
                                 "?token=<token>, or send the header "
                                 "'Authorization: Bearer <token>'", status_code=401,
                                 headers={"WWW-Authenticate": "Bearer"})

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = self._refuse(request) or await call_next(request)
        response.headers.update(HEADERS)
        return response
