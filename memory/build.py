"""Which build of longthread this is, beyond the package's version (it stayed 0.1.0 across
releases, so an operator in a rolling upgrade could not tell an old host from a new one): the
archive schema it needs, its engine and its assembly. `longthread --version` prints it, and
each worker carries it in its Temporal identity, where `longthread health` reads it."""

from __future__ import annotations

import re

__all__ = ["build_label", "build_of_identity"]

_IN_IDENTITY = re.compile(r"\((schema \d+, [^()]+)\)$")


def build_label() -> str:
    from memory.assembly import ASSEMBLY_VERSION
    from memory.compaction import ENGINE_VERSION
    from memory.store.migrations import MIGRATIONS

    return f"schema {len(MIGRATIONS)}, {ENGINE_VERSION}, assembly {ASSEMBLY_VERSION}"


def build_of_identity(identity: str) -> str | None:
    """The build a worker's identity names (`pid@host (schema 17, …)`), None for a worker
    from before identities named one."""
    found = _IN_IDENTITY.search(identity)
    return found[1] if found else None
