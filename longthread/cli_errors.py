"""The CLI's error lines that need more than the exception's own text.

Bad LONGTHREAD_* settings: one line per problem, naming the environment variable (or .env key)
the user set and the limit it broke, instead of pydantic's traceback naming the model field;
and a LONGTHREAD_* name that is no setting at all (a typo), which would otherwise be ignored.
The CLI checks them once, before any command runs, so every command refuses them alike (exit 2)
and before it contacts Temporal or Postgres. Also what stopped a wait to settle, and why an
undo record cannot be undone: the underlying errors name the wrong cause for both."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import SecretStr, ValidationError
from temporalio.service import RPCError

from longthread.settings import Settings, unknown_names
from memory.models import CompactionRecord

__all__ = ["setting_problems", "settings_errors", "undo_of_undo", "unknown_settings",
           "unsettled"]

# Longer values are not echoed: the problem and the limit say enough, and a line stays a line.
MAX_ECHO_CHARS = 40
_NUMERIC = {"int_parsing", "int_from_float", "int_type", "float_parsing", "float_type",
            "finite_number", "greater_than", "greater_than_equal", "less_than",
            "less_than_equal"}


def settings_errors() -> list[str]:
    """`LONGTHREAD_X: problem` for each bad setting in the environment and ./.env, and for
    each LONGTHREAD_* name that is no setting; empty when they load."""
    problems = unknown_settings(os.environ, Path(".env"))
    try:
        Settings()
    except ValidationError as exc:
        problems += setting_problems(exc)
    return problems


def unknown_settings(environ: Mapping[str, str], dotenv: Path) -> list[str]:
    """`LONGTHREAD_X: not a longthread setting (did you mean …?)` for each name no code reads."""
    return [u.line() for u in unknown_names(environ, dotenv)]


def setting_problems(exc: ValidationError) -> list[str]:
    """Each of pydantic's errors for `Settings` as `LONGTHREAD_<FIELD>: problem (got 'v')`.
    `memory.checks.invalid_input` reports only the first error under the field's own name;
    a user fixing their environment wants every variable named at once."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"LONGTHREAD_{field.upper()}" if field else "LONGTHREAD_* settings"
        problem = _problem(field, error)
        given = error.get("input")
        if (isinstance(given, str) and len(given) <= MAX_ECHO_CHARS
                and not _secret(field)):
            problem += f" (got {given!r})"
        lines.append(f"{name}: {problem}")
    return lines


def _problem(field: str, error: Any) -> str:
    """The rule the value broke, in the words of the limits the field declares."""
    info = Settings.model_fields.get(field)
    kind, ctx = str(error["type"]), error.get("ctx") or {}
    if kind == "literal_error" and info is not None:
        choices = [str(c) for c in get_args(info.annotation)]
        if choices:
            return f"must be one of {', '.join(choices)}"
    if kind in _NUMERIC and info is not None:
        what = "a number" if float in (info.annotation, *get_args(info.annotation)) \
            else "an integer"
        low = high = None
        for rule in info.metadata:
            for attr, words in (("ge", "at least"), ("gt", "more than")):
                if getattr(rule, attr, None) is not None:
                    low = (words, getattr(rule, attr))
            for attr, words in (("le", "at most"), ("lt", "less than")):
                if getattr(rule, attr, None) is not None:
                    high = (words, getattr(rule, attr))
        if low and high and low[0] == "at least" and high[0] == "at most":
            return f"must be {what} from {_num(low[1])} to {_num(high[1])}"
        limits = " and ".join(f"{words} {_num(value)}"
                              for words, value in (bound for bound in (low, high) if bound))
        return f"must be {what}" + (f" {limits}" if limits else "")
    message = str(error["msg"])
    if ctx.get("error") is not None:  # a validator's own ValueError
        message = str(ctx["error"])
    return message.replace("Input should be", "must be", 1)


def _num(value: object) -> str:
    """2000000, not 2000000.0 or 2,000,000: the form the variable takes."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _secret(field: str) -> bool:
    """Never echo a key, whatever went wrong with it."""
    info = Settings.model_fields.get(field)
    return (info is None or field == "database_url"  # a URL holds its password
            or SecretStr in (info.annotation, *get_args(info.annotation)))


def unsettled(session: str, exc: RPCError | TimeoutError, waited: float, limit: float,
              queue: str) -> str:
    """What stopped a wait for `session` to settle, with the time it really took. A status
    query no worker picks up fails on Temporal's own deadline (about 30 s), well before
    `limit`: that is a missing worker, not a slow one, and the message says which."""
    if isinstance(exc, RPCError):  # a query no worker picks up: "Timeout expired" at 30 s
        return (f"{session!r}: no worker answered its status query ({exc.message or 'failed'} "
                f"after {waited:.0f} s); is a worker polling task queue {queue!r}?")
    return (f"{session!r} did not settle within {limit:.0f} s: its worker is still embedding "
            "or compacting, or stopped answering.")


def undo_of_undo(record_id: str, ledger: Sequence[CompactionRecord]) -> str | None:
    """Why `record_id` cannot be undone when it names an undo record: the engine looks only
    for compactions, so it answers "no compaction" for a record the ledger plainly shows."""
    undo = next((r for r in ledger if r.id == record_id and r.trigger == "undo"), None)
    if undo is None:
        return None
    return (f"{record_id!r} is an undo of {undo.undoes}, not a compaction: an undo cannot "
            "itself be undone")
