"""Delta compression of successive edits of one message, with exact reconstruction.

An agent that rewrites a plan twenty times should not cost twenty full copies. The first
version is kept whole; each later one is a list of copy/insert operations against the one
before (difflib's opcodes), which round-trips byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher
from itertools import pairwise

from pydantic import BaseModel, ConfigDict

__all__ = ["DeltaChain", "compress_versions", "reconstruct"]

Op = tuple[int, int] | str  # copy previous[i:j], or insert literal text


class DeltaChain(BaseModel):
    model_config = ConfigDict(frozen=True)

    base: str
    deltas: tuple[tuple[Op, ...], ...] = ()

    @property
    def versions(self) -> int:
        return 1 + len(self.deltas)


def _delta(previous: str, current: str) -> tuple[Op, ...]:
    ops: list[Op] = []
    matcher = SequenceMatcher(None, previous, current, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            ops.append((i1, i2))
        elif j2 > j1:
            ops.append(current[j1:j2])
    return tuple(ops)


def _apply(previous: str, ops: Sequence[Op]) -> str:
    return "".join(previous[op[0] : op[1]] if isinstance(op, tuple) else op for op in ops)


def compress_versions(versions: Sequence[str]) -> DeltaChain:
    if not versions:
        raise ValueError("versions: at least one version is required")
    deltas = tuple(_delta(a, b) for a, b in pairwise(versions))
    return DeltaChain(base=versions[0], deltas=deltas)


def reconstruct(chain: DeltaChain, version: int | None = None) -> str:
    """Version `version` (0-based; default the latest), rebuilt exactly."""
    last = chain.versions - 1 if version is None else version
    if not 0 <= last < chain.versions:
        raise IndexError(f"version: must be 0..{chain.versions - 1}")
    text = chain.base
    for ops in chain.deltas[:last]:
        text = _apply(text, ops)
    return text
