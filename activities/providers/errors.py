"""Map provider HTTP failures onto Temporal's retry semantics.

400/401/403/404/422 mean the request or key is wrong: retrying cannot help, so they are
non-retryable. 408, 409, 429 and 5xx are outages: retryable, honouring the server's
retry-after. The SDKs' own retries are off everywhere, so only Temporal retries.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.exceptions import ApplicationError

__all__ = ["NON_RETRYABLE_STATUS", "PROVIDER_EMPTY", "PROVIDER_REJECTED", "call_provider",
           "empty_reply", "to_application_error"]

T = TypeVar("T")
NON_RETRYABLE_STATUS = frozenset({400, 401, 403, 404, 422})
PROVIDER_REJECTED = "ProviderRejected"
PROVIDER_UNAVAILABLE = "ProviderUnavailable"
PROVIDER_EMPTY = "ProviderEmptyReply"


def _sdk_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """The SDKs' status and connection errors, for the SDKs loaded in this process: an error
    from an SDK means it is loaded, and importing both SDKs up front would cost every client
    about two seconds at import."""
    status: list[type[Exception]] = []
    connection: list[type[Exception]] = []
    for name in ("anthropic", "openai"):
        sdk: Any = sys.modules.get(name)
        if sdk is not None:
            status.append(sdk.APIStatusError)
            connection.append(sdk.APIConnectionError)
    return tuple(status), tuple(connection)


def _retry_after(headers: object) -> timedelta | None:
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = get(key)
        if value is None:
            continue
        try:
            return timedelta(seconds=max(float(value) * scale, 0.0))
        except ValueError:
            continue
    return None


def to_application_error(exc: Exception) -> ApplicationError:
    status_errors, connection_errors = _sdk_errors()
    if isinstance(exc, status_errors):
        status: int = getattr(exc, "status_code", 0)
        if status in NON_RETRYABLE_STATUS:
            return ApplicationError(f"provider rejected the request: HTTP {status}",
                                    status, type=PROVIDER_REJECTED, non_retryable=True)
        return ApplicationError(
            f"provider unavailable: HTTP {status}", status, type=PROVIDER_UNAVAILABLE,
            next_retry_delay=_retry_after(getattr(getattr(exc, "response", None), "headers",
                                                  None)))
    if isinstance(exc, connection_errors):
        return ApplicationError(f"provider unreachable: {type(exc).__name__}",
                                type=PROVIDER_UNAVAILABLE)
    raise exc


async def call_provider(call: Awaitable[T]) -> T:
    """Await an SDK call, re-raising its HTTP failure as the right ApplicationError."""
    try:
        return await call
    except Exception as exc:
        status_errors, connection_errors = _sdk_errors()
        if isinstance(exc, (*status_errors, *connection_errors)):
            raise to_application_error(exc) from exc
        raise


def empty_reply(what: str, stop: str | None, extra: str = "") -> ApplicationError:
    """A model that answered with no text. Empty content comes back on truncation (a
    reasoning model can spend the whole `max_tokens` before writing), a content filter or a
    refusal. Stored as it came, an empty summary would stand for the turns it replaced with
    nothing, and an empty reply would put words the model never said into the session; so it
    is a failure, not retried (the same request gets the same answer), naming why."""
    why = f"stop reason {stop!r}" if stop else "no stop reason"
    return ApplicationError(f"the model returned an empty {what} ({why}){extra}",
                            type=PROVIDER_EMPTY, non_retryable=True)
