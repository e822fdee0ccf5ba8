"""Every message a `memory.Session` was given, and its lexical search, kept incrementally.

A library session lives for months: rebuilding the id set of tool calls on every append and
re-tokenizing every message on every search made `add_message` and `get_context` grow with
the session (15.7 ms and 943 ms at 50,000 messages, session 28's user test). Both now cost
what the new message or the query costs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from memory.lexical import BM25Index
from memory.models import Message, ScoredMessage
from memory.retrieval import content_query
from memory.text import indexed_text
from memory.window import by_reference

__all__ = ["RRF_K", "Archive"]

RRF_K = 60  # memory/store/store.py: a hit's fused score is 1/(RRF_K + rank)


class Archive(Mapping[str, Message]):
    """The messages by id, in the order they came (compaction never removes one)."""

    def __init__(self) -> None:
        self._messages: dict[str, Message] = {}
        self.order: dict[str, int] = {}  # id → its seq
        self.call_ids: set[str] = set()  # every tool call id made, for the sequence check
        self._searchable: list[Message] = []  # the non-system messages, as indexed
        self._lexical = BM25Index()
        self._names: set[str] = set()

    def __getitem__(self, key: str) -> Message:
        return self._messages[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, message: Message) -> None:
        self.order[message.id] = len(self.order)
        self._messages[message.id] = message
        self.call_ids.update(c.id for c in message.tool_calls)
        if message.role != "system":
            self._searchable.append(message)
            if message.name:
                self._names.add(message.name)
            self._lexical.add(indexed_text(message.content, message.created_at))

    def free_id(self) -> str:
        """The first `m<n>` not taken, n from the count: deterministic, and never an id a
        caller chose already (that wedged the session)."""
        n = len(self._messages) + 1
        while f"m{n}" in self._messages:
            n += 1
        return f"m{n}"

    def previews(self) -> Mapping[str, Message]:
        """The messages as the window holds them: bodies over 64 KB as their previews."""
        return _Previews(self._messages)

    def search(self, query: str, k: int, neighbours: int, neighbour_hits: int,
               session: str) -> list[ScoredMessage]:
        """`Store.search` in-process, without the vector leg: the query without the speakers'
        names (`content_query`), BM25 over each message's text and day (`indexed_text`, what
        the store indexes), scored 1/(60 + rank) as the store's fusion scores a hit, and the
        `neighbours` turns around each of the best `neighbour_hits` hits at half the score of
        the nearest hit."""
        archived = self._searchable
        scores = self._lexical.scores(content_query(query, self._names))
        ranked = sorted(scores, key=lambda i: (-scores[i], i))[:k]
        hits = {i: 1.0 / (RRF_K + rank) for rank, i in enumerate(ranked, start=1)}
        around = {j for i in ranked[:neighbour_hits]
                  for j in range(i - neighbours, i + neighbours + 1)
                  if 0 <= j < len(archived)} - hits.keys()
        for j in sorted(around):
            hits[j] = hits[min(ranked, key=lambda h: abs(h - j))] * 0.5
        return [ScoredMessage(message=archived[i], score=score, session=session,
                              seq=self.order[archived[i].id]) for i, score in hits.items()]


class _Previews(Mapping[str, Message]):
    def __init__(self, messages: dict[str, Message]) -> None:
        self._messages = messages

    def __getitem__(self, key: str) -> Message:
        return by_reference(self._messages[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._messages)

    def __len__(self) -> int:
        return len(self._messages)
