"""Messages by the id a person or a model holds: the whole id, or the tail a window shows.

A window shows a long id (a UUID) by "…" and its last ID_TAIL characters (`memory.packing`,
assembly versions 5 and 6): `[…9f02873d 2024-03-07] Priya: ...`. That tail is all a reader of
the window has, so `show`, `why`, the MCP `message` tool and `Conversation.messages` take it
too: an id not stored as asked is looked up as such a tail, with or without its "…", among
the session's long ids. A tail two of them share names neither, and is refused: a window
shows an id whole when an id beside it shares its tail, but the ids beside it are not all
of the session's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memory.models import Message
from memory.packing import ID_SHOWN_WHOLE, ID_TAIL
from memory.store.base import StoreBase
from memory.store.rows import MESSAGE_COLUMNS, message_columns, row_to_message

__all__ = ["SHOWN_CANDIDATES", "Lookup", "MessageLookups", "tail_of"]

SHOWN_CANDIDATES = 3  # ids an ambiguous tail's refusal names

_EXACT = (f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = %s AND session = %s"
          " AND id = ANY(%s)")

# Every long id of the session ending in one of `tails`: how many share each tail, and the
# first SHOWN_CANDIDATES of them (in append order), with the whole row only for a tail that
# names one message (an ambiguous tail's bodies, up to 2 MB each, are not read).
_BY_TAIL = f"""
WITH hits AS (
    SELECT id, seq, right(id, {ID_TAIL}) AS tail,
           count(*) OVER (PARTITION BY right(id, {ID_TAIL})) AS matches,
           row_number() OVER (PARTITION BY right(id, {ID_TAIL}) ORDER BY seq) AS n
    FROM messages
    WHERE tenant = %(tenant)s AND session = %(session)s AND length(id) > {ID_SHOWN_WHOLE}
      AND right(id, {ID_TAIL}) = ANY(%(tails)s::text[])
)
SELECT h.tail, h.matches, h.id AS hit, {message_columns("m")}
FROM hits h LEFT JOIN messages m
  ON h.matches = 1 AND m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = h.id
WHERE h.n <= {SHOWN_CANDIDATES}
ORDER BY h.tail, h.seq
"""


def tail_of(ident: str) -> str | None:
    """The tail `ident` is, if it has the form a window shows one in (`…` and ID_TAIL
    characters, or those characters alone); None for anything else."""
    tail = ident.removeprefix("…")
    return tail if len(tail) == ID_TAIL else None


@dataclass(frozen=True)
class Lookup:
    """What each id asked for names: `found` maps it (as asked: a tail, or a whole id) to the
    message's seq (0-based) and the message; `ambiguous` maps a tail several long ids end
    with to the first SHOWN_CANDIDATES of them and how many there are."""

    asked: tuple[str, ...]
    found: dict[str, tuple[int, Message]]
    ambiguous: dict[str, tuple[tuple[str, ...], int]]

    @property
    def messages(self) -> list[Message]:
        """The messages found, in the order asked for."""
        return [self.found[i][1] for i in self.asked if i in self.found]

    @property
    def missing(self) -> list[str]:
        """The ids asked for (each once) that name no message, whole or as a tail."""
        return [i for i in dict.fromkeys(self.asked)
                if i not in self.found and i not in self.ambiguous]

    def ambiguity(self, ident: str) -> str:
        """Why `ident` (one of `ambiguous`) names no message, for an error after its field."""
        ids, count = self.ambiguous[ident]
        more = f" and {count - len(ids)} more" if count > len(ids) else ""
        return (f"{ident!r} is ambiguous: {count} message ids end with {tail_of(ident)!r} "
                f"({', '.join(map(repr, ids))}{more}); give the whole id")


class MessageLookups(StoreBase):
    """`find_messages`; mixed into `Store`, whose `_batch` scopes each query by tenant."""

    async def find_messages(self, tenant: str, session: str, ids: Sequence[str]) -> Lookup:
        """The messages `ids` name: by whole id in one query, then, only if some are not
        stored under the id as asked, those of them that have a tail's form in one more."""
        (rows,) = await self._batch(tenant, [(_EXACT, (tenant, session, list(ids)))])
        found = {row["id"]: (int(row["seq"]), row_to_message(row)) for row in rows}
        tails = {i: t for i in ids if i not in found and (t := tail_of(i)) is not None}
        ambiguous: dict[str, tuple[tuple[str, ...], int]] = {}
        if tails:
            (rows,) = await self._batch(tenant, [(_BY_TAIL, {
                "tenant": tenant, "session": session, "tails": sorted(set(tails.values()))})])
            by_tail: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_tail.setdefault(row["tail"], []).append(row)
            for ident, tail in tails.items():
                hits = by_tail.get(tail)
                if not hits:
                    continue
                if int(hits[0]["matches"]) == 1:
                    found[ident] = (int(hits[0]["seq"]), row_to_message(hits[0]))
                else:
                    ambiguous[ident] = (tuple(h["hit"] for h in hits), int(hits[0]["matches"]))
        return Lookup(asked=tuple(ids), found=found, ambiguous=ambiguous)
