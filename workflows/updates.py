"""How an update's argument is parsed and how a refusal is raised: bad input fails only the
update, naming the field, and never the workflow task (which Temporal would retry forever).

Also the workflow's id for a (tenant, session). Pure functions over the SDK's error types, so
the workflow module keeps to the orchestration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from memory.errors import InvalidInputError
    from memory.models import invalid_input
    from workflows.activities import OUTAGE_RETRY

__all__ = ["BUILD_CONTEXT_RETRY", "REFUSALS", "as_update_error", "parse", "refusal", "refusing",
           "workflow_id"]


def workflow_id(tenant: str, session: str) -> str:
    """`conversation-{tenant}-{session}`, each part percent-encoded with '-' escaped too, so
    two different (tenant, session) pairs can never name the same workflow."""
    def part(text: str) -> str:
        return quote(text, safe="@:").replace("-", "%2D")
    return f"conversation-{part(tenant)}-{part(session)}"


# Refusals an activity raises about its input: never retried, and the client reads them back
# as InvalidInputError (BudgetTooSmallError: the budget cannot hold the system messages).
REFUSALS = ("InvalidInputError", "BudgetTooSmallError")
BUILD_CONTEXT_RETRY = RetryPolicy(
    initial_interval=OUTAGE_RETRY.initial_interval,
    backoff_coefficient=OUTAGE_RETRY.backoff_coefficient,
    maximum_interval=OUTAGE_RETRY.maximum_interval, non_retryable_error_types=list(REFUSALS))

M = TypeVar("M", bound=BaseModel)


def as_update_error(exc: ActivityError) -> ApplicationError:
    """An activity's refusal, re-raised so only the update fails (never the workflow task)."""
    cause = exc.cause
    # An outage that outlasted the retries says so: "HTTP 500" alone reads as one failure.
    tried = (" (retried until the retry policy's attempts ran out)"
             if exc.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED else "")
    if isinstance(cause, ApplicationError):
        kind = "InvalidInputError" if cause.type in REFUSALS else cause.type
        return ApplicationError(cause.message + tried, type=kind, non_retryable=True)
    return ApplicationError(str(cause or exc) + tried, type="ActivityFailed", non_retryable=True)


def as_refusal(exc: ActivityError | ApplicationError) -> ApplicationError:
    """`as_update_error` for an activity's failure however it arrives: a local activity's
    can reach the workflow as the ApplicationError itself, its message led by its type."""
    if isinstance(exc, ActivityError):
        return as_update_error(exc)
    message = exc.message.removeprefix(f"{exc.type}: ") if exc.type else exc.message
    kind = "InvalidInputError" if exc.type in REFUSALS else exc.type or "ActivityFailed"
    return ApplicationError(message, type=kind, non_retryable=True)


def refusal(field: str, problem: str) -> ApplicationError:
    return ApplicationError(f"{field}: {problem}", type="InvalidInputError", non_retryable=True)


@contextmanager
def refusing(prefix: str = "") -> Iterator[None]:
    """Bad input found while handling an update fails that update, naming the field; it must
    never fail the workflow task (which Temporal would retry forever)."""
    try:
        yield
    except ValidationError as exc:
        error = invalid_input(exc, prefix)
        raise refusal(error.field, error.problem) from None
    except InvalidInputError as exc:
        field = f"{prefix}.{exc.field}" if prefix else exc.field
        raise refusal(field, exc.problem) from None


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", tuple: "an array"}.get(type(value), type(value).__name__)


def parse(model: type[M], args: tuple[Any, ...]) -> M:
    """An update's one argument as `model`, or a refusal naming what is wrong with it.

    Every update and its validator take `*args: Any` (the SDK requires both to have the same
    parameters), so the SDK hands over the decoded JSON as it came and a malformed argument
    (null, a number, a wrong field, a missing or second argument) reaches this check instead
    of failing the workflow task in a loop: validators refuse it before the update is
    accepted, and handlers (which also run on replay, where validators do not) parse it the
    same way."""
    if len(args) != 1:
        raise refusal(model.__name__, f"takes exactly one argument (an object), got {len(args)}")
    value = args[0]
    if isinstance(value, model):
        return value
    if not isinstance(value, dict):
        raise refusal(model.__name__, f"must be an object, not {kind_of(value)}")
    with refusing():
        return model.model_validate(value)
