"""One small hierarchy of errors: callers catch by kind, users read the field and the limit."""

from __future__ import annotations

__all__ = [
    "BudgetTooSmallError",
    "InvalidInputError",
    "LedgerConflictError",
    "LongthreadError",
    "NotFoundError",
    "SessionErasedError",
]


class LongthreadError(Exception):
    """Base of every error longthread raises on purpose."""


class InvalidInputError(LongthreadError, ValueError):
    """Bad input, refused before anything is stored. Names the field and the limit."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class BudgetTooSmallError(InvalidInputError):
    """The token budget cannot hold what must always be kept (system messages)."""

    def __init__(self, max_tokens: int, required: int) -> None:
        self.max_tokens = max_tokens
        self.required = required
        super().__init__(
            "max_tokens",
            f"budget {max_tokens} is smaller than the {required} tokens the system messages need",
        )


class NotFoundError(LongthreadError, LookupError):
    """A session, record or message that does not exist (for this tenant)."""


class LedgerConflictError(LongthreadError):
    """The stored ledger already holds a different compaction at this position."""


class SessionErasedError(InvalidInputError):
    """The session was erased (`longthread db erase`): its id refuses every write for good, so
    a worker still running for it, or a client that kept its id, cannot bring data back."""

    TAIL = "was erased; an erased session's id cannot be used again"

    def __init__(self, tenant: str, session: str) -> None:
        super().__init__("session", f"{session!r} of tenant {tenant!r} {self.TAIL}")

    @classmethod
    def relayed(cls, problem: str) -> SessionErasedError | None:
        """The error again from its text, as a worker's refusal carries it through Temporal
        (a client catches it by type), or None when `problem` is not this error's."""
        if not problem.endswith(cls.TAIL):
            return None
        error = cls.__new__(cls)
        InvalidInputError.__init__(error, "session", problem)
        return error
