"""`memory.Session`: the whole engine in-process, for developers not yet on the durable stack.

This is the one module under memory/ that may touch a file (`save`/`load`) and a clock (event
durations); workflows never import it. Ids of summaries and records are sequential, not random,
so two sessions fed the same messages produce byte-identical ledgers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memory.checks import (
    MAX_CONTEXT_TOKENS,
    MAX_NEIGHBOURS,
    MAX_RETRIEVE,
    check_query,
    check_range,
)
from memory.compaction import (
    WindowState,
    compose_record,
    no_gain,
    plan_compaction,
)
from memory.compaction import window_tokens as _window_tokens
from memory.conflicts import conflict_error
from memory.errors import InvalidInputError, NotFoundError
from memory.lexical import bm25_scores
from memory.messages import check_not_future
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    ContextWindow,
    Message,
    ScoredMessage,
    Summary,
    Trigger,
    message_digest,
    parse_messages,
    validate_sequence,
)
from memory.policy import CompactionPolicy
from memory.retrieval import candidate_count, content_query, neighbour_hit_count
from memory.summarizer import ExtractiveSummarizer, Summarizer
from memory.text import indexed_text
from memory.tokens import TokenCounter, default_counter
from memory.undo import compose_undos, undo_targets
from memory.window import assemble_from_window

__all__ = ["Session", "SessionData"]

RRF_K = 60  # memory/store/store.py: a hit's fused score is 1/(RRF_K + rank)


class SessionData(BaseModel):
    """Everything a session holds; what `save` writes and `load` reads back."""

    model_config = ConfigDict(frozen=True)

    format: int = 1
    session_id: str = "local"
    policy: CompactionPolicy = Field(default_factory=CompactionPolicy)
    messages: tuple[Message, ...] = ()
    window: WindowState = Field(default_factory=WindowState)
    ledger: tuple[CompactionRecord, ...] = ()


class Session:
    def __init__(
        self,
        session_id: str = "local",
        *,
        policy: CompactionPolicy | None = None,
        summarizer: Summarizer | None = None,
        counter: TokenCounter | None = None,
        auto_compact: bool = True,
        on_event: Callable[[CompactionEvent], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.session_id = session_id
        self.policy = policy or CompactionPolicy()
        self.counter = counter or default_counter()
        self.summarizer = summarizer or ExtractiveSummarizer(self.counter)
        self.auto_compact = auto_compact
        self.on_event = on_event
        self._clock = clock
        self._archive: dict[str, Message] = {}
        self._order: dict[str, int] = {}
        self.window = WindowState()
        self.ledger: list[CompactionRecord] = []

    # -- appending -------------------------------------------------------------------------
    def add_message(
        self, role: str, content: str = "", *, id: str | None = None, **fields: object
    ) -> Message:
        """One message; without an `id` it gets the first free `m<n>` (n from the count)."""
        ident = self._free_id() if id is None else id
        (message,) = self.add_messages([{"id": ident, "role": role, "content": content, **fields}])
        return message

    def _free_id(self) -> str:
        """Deterministic, and never one a caller already chose (that wedged the session)."""
        n = len(self._archive) + 1
        while f"m{n}" in self._archive:
            n += 1
        return f"m{n}"

    def add_messages(self, raw: Sequence[object]) -> list[Message]:
        """Append in order, as the durable store does: a message already here, byte for byte,
        is skipped (a retried append is harmless); a known id with other content is refused."""
        messages = parse_messages(raw)
        check_not_future(messages, datetime.now(UTC))
        open_calls = {c.id for m in self._archive.values() for c in m.tool_calls}
        validate_sequence(messages, open_tool_calls=open_calls)
        fresh: list[Message] = []
        for index, message in enumerate(messages):
            known = self._archive.get(message.id)
            if known is None:
                fresh.append(message)
            elif message_digest(known) != message_digest(message):
                raise conflict_error(index, message, known)
        for message in fresh:
            self._order[message.id] = len(self._order)
            self._archive[message.id] = message
        self.window = WindowState(
            summaries=self.window.summaries, messages=(*self.window.messages, *fresh)
        )
        if self.auto_compact:
            self.maybe_compact()
        return messages

    def maybe_compact(self, max_rounds: int = 32) -> list[CompactionRecord]:
        """Compact chunk by chunk while the policy asks for it and each round helps."""
        done: list[CompactionRecord] = []
        while len(done) < max_rounds and self.should_compact():
            record = self.compact(trigger="auto", force=False)
            if record is None or record.tokens_after >= record.tokens_before:
                break
            done.append(record)
        return done

    # -- inspecting ------------------------------------------------------------------------
    @property
    def messages(self) -> list[Message]:
        """Every message ever added, in order: compaction never removes anything from here."""
        return list(self._archive.values())

    def get_token_estimate(self) -> int:
        """Tokens the current working window (summaries + verbatim messages) costs."""
        return _window_tokens(self.window, self.counter)

    def should_compact(self, token_limit: int | None = None) -> bool:
        return self.policy.should_compact(self.get_token_estimate(), token_limit)

    # -- compacting ------------------------------------------------------------------------
    def compact(
        self,
        preserve_recent: int | None = None,
        focus: str | None = None,
        *,
        trigger: Trigger = "manual",
        force: bool = True,
    ) -> CompactionRecord | None:
        """Compact now; None when nothing older than `preserve_recent` is left to compact, or
        when compacting it would not make the window smaller (`no_gain`)."""
        plan = plan_compaction(self.window, self.policy, force=force,
                               preserve_recent=preserve_recent, counter=self.counter)
        if plan is None:
            return None
        seq = len(self.ledger)
        record_id = f"c{seq + 1}"
        self._emit(CompactionEvent(kind="started", record_id=record_id, level=plan.level,
                                   reason=plan.reason, tokens_before=plan.tokens_before))
        started = self._clock()
        summary: Summary | None = None
        strategy, model, version = "archive-only", None, None
        try:
            if plan.summarize:
                covered = [self._archive[i] for i in plan.covered_ids]
                result = self.summarizer.summarize(covered, plan.summary_max_tokens, focus)
                summary = Summary(id=f"s{seq + 1}", level=1, content=result.text,
                                  covers=plan.covered_ids, quoted_ids=result.quoted_ids,
                                  strategy=result.strategy)
                strategy, model, version = result.strategy, result.model, result.prompt_version
            window, record = compose_record(
                self.window, plan, record_id=record_id, seq=seq, summary=summary,
                strategy=strategy, trigger=trigger, model=model, prompt_version=version,
                duration_ms=(self._clock() - started) * 1000, counter=self.counter,
                focus=focus)
        except Exception as exc:
            self._emit(CompactionEvent(kind="failed", record_id=record_id, level=plan.level,
                                       reason=plan.reason, tokens_before=plan.tokens_before,
                                       error=type(exc).__name__))
            raise
        why = no_gain(record)
        if why is not None:
            self._emit(CompactionEvent(kind="skipped", record_id=record_id, level=plan.level,
                                       reason=plan.reason, tokens_before=record.tokens_before,
                                       tokens_after=record.tokens_after, error=why))
            return None
        self.window = window
        self.ledger.append(record)
        self._emit(CompactionEvent(
            kind="completed", record_id=record_id, level=plan.level, reason=plan.reason,
            tokens_before=record.tokens_before, tokens_after=record.tokens_after,
            ratio=record.ratio, duration_ms=record.duration_ms))
        return record

    def force_compact(self, focus: str | None = None) -> CompactionRecord | None:
        """Emergency compaction: keep only the last two messages verbatim."""
        return self.compact(preserve_recent=2, focus=focus)

    def uncompact(self, record_id: str, with_later: bool = False) -> CompactionRecord:
        """Undo a compaction: its originals return to the window, its summary leaves. With
        `with_later`, the later compactions that merged its summary are undone first (newest
        first), all or none. Returns the undo record of `record_id`."""
        if not any(r.id == record_id for r in self.ledger):
            raise NotFoundError(f"record_id: no compaction {record_id!r} in this session")
        steps = compose_undos(
            self.window, undo_targets(record_id, self.ledger, self.window, with_later),
            self.ledger, seq=len(self.ledger), originals=self._archive, order=self._order,
            counter=self.counter)
        self.window = steps[-1][0]
        self.ledger.extend(record for _, record in steps)
        return steps[-1][1]

    def _emit(self, event: CompactionEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- context ---------------------------------------------------------------------------
    def get_context(self, query: str | None = None, max_tokens: int = 4000,
                    retrieve: int = 40, neighbours: int = 1) -> ContextWindow:
        """The window for a model call, assembled as the served `context()` assembles it
        (`memory.window.assemble_from_window`): shares that follow the query and what
        retrieval found, reranked candidates, a date on every retrieved line, and the summary
        hierarchy condensed to fit. Only retrieval differs: the served path fuses BM25 with
        embeddings in the store, this one is BM25 alone over the same indexed text."""
        check_range("max_tokens", max_tokens, 1, MAX_CONTEXT_TOKENS)
        check_range("retrieve", retrieve, 1, MAX_RETRIEVE)
        check_range("neighbours", neighbours, 0, MAX_NEIGHBOURS)
        query = check_query("query", query)
        query = query if query and query.strip() else None
        k = max(retrieve, candidate_count(max_tokens))
        retrieved = self._search(query, k, neighbours, neighbour_hit_count(k)) if query else []
        return assemble_from_window(self.window, max_tokens=max_tokens, retrieved=retrieved,
                                    query=query, counter=self.counter)

    def _search(self, query: str, k: int, neighbours: int, neighbour_hits: int
                ) -> list[ScoredMessage]:
        """`Store.search` in-process, without the vector leg: the query without the speakers'
        names (`content_query`), BM25 over each message's text and day (`indexed_text`, what
        the store indexes), scored 1/(60 + rank) as the store's fusion scores a hit, and the
        `neighbours` turns around each of the best `neighbour_hits` hits at half the score of
        the nearest hit."""
        archived = [m for m in self._archive.values() if m.role != "system"]
        names = {m.name for m in archived if m.name}
        scores = bm25_scores(content_query(query, names),
                             [indexed_text(m.content, m.created_at) for m in archived])
        ranked = sorted((i for i in range(len(archived)) if scores[i] > 0),
                        key=lambda i: (-scores[i], i))[:k]
        hits = {i: 1.0 / (RRF_K + rank) for rank, i in enumerate(ranked, start=1)}
        around = {j for i in ranked[:neighbour_hits]
                  for j in range(i - neighbours, i + neighbours + 1)
                  if 0 <= j < len(archived)} - hits.keys()
        for j in sorted(around):
            hits[j] = hits[min(ranked, key=lambda h: abs(h - j))] * 0.5
        return [ScoredMessage(message=archived[i], score=score, session=self.session_id,
                              seq=self._order[archived[i].id]) for i, score in hits.items()]

    # -- persistence -----------------------------------------------------------------------
    def to_data(self) -> SessionData:
        return SessionData(session_id=self.session_id, policy=self.policy,
                           messages=tuple(self._archive.values()), window=self.window,
                           ledger=tuple(self.ledger))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_data().model_dump_json(indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, *, policy: CompactionPolicy | None = None,
             **kwargs: object) -> Session:
        """A saved session; `policy` replaces the saved one, other arguments are `Session`'s."""
        try:
            data = SessionData.model_validate_json(Path(path).read_text(encoding="utf-8"))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "file"
            raise InvalidInputError(str(path), f"not a saved session ({where}: "
                                    f"{first['msg']})") from None
        session = cls(data.session_id, policy=policy or data.policy,
                      **kwargs)  # type: ignore[arg-type]
        for message in data.messages:
            session._order[message.id] = len(session._order)
            session._archive[message.id] = message
        session.window = data.window
        session.ledger = list(data.ledger)
        return session
