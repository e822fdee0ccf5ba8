"""What code of one version may do with an archive whose schema is at another.

Apart from `migrations.py` (which applies the SQL in `sql/`) and `roles.py` (who may
migrate) because both check it: `setup` (`db setup`, `dev`) and `ensure_schema` (a worker's
start).
"""

from __future__ import annotations

from memory.errors import LongthreadError

__all__ = ["SchemaError", "check_client_schema", "check_not_newer"]


class SchemaError(LongthreadError):
    """The archive's schema is not one this code can use: behind, and this login may not
    migrate it; or ahead of every migration this code knows."""


def check_not_newer(current: int, known: int, who: str = "worker") -> None:
    """Refuse an archive migrated by a newer longthread. An older worker started on it
    silently, reading and writing tables whose meaning had changed under it (a rolled-back
    deploy, one stale replica); it must be upgraded first, not guess."""
    if current > known:
        upgrade = "the worker" if who == "worker" else who
        raise SchemaError(f"the archive's schema is at version {current}, newer than this "
                          f"{who}'s {known}: upgrade {upgrade}")


def check_client_schema(current: int, known: int) -> None:
    """A client reads and records (served contexts) in the archive itself, and never
    migrates: on an archive behind its code it failed on the first missing table with a
    traceback (`relation "served_counters" does not exist`; upgrade test, session 31). A newer
    archive is not refused: an upgrade migrates first and replaces clients last, and clients
    of the version before keep working meanwhile (unknown fields in what the archive holds
    are left out: `memory.messages.ARCHIVE`)."""
    if current < known:
        raise SchemaError(f"the archive's schema is at version {current}, this client's is "
                          f"{known}: run `longthread db setup` (or start a worker of this "
                          "version whose login may migrate) before using this client")
