"""`memory.Session`: the whole engine in-process, for developers not yet on the durable stack.

With `memory.session_file` (`save`/`load`), the one module under memory/ that may touch a
file and the clocks (event durations, when a record was made); workflows never import it. Ids
of summaries and records are sequential, not random, so two sessions fed the same messages
with the same clocks (`clock`, `wall_clock`) produce byte-identical ledgers. A session may be
shared between threads: its calls take turns.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

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
from memory.messages import check_not_future
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    ContextWindow,
    Message,
    Summary,
    Trigger,
    check_actor,
    message_digest,
    parse_messages,
    validate_sequence,
)
from memory.policy import CompactionPolicy
from memory.retrieval import candidate_count, neighbour_hit_count
from memory.session_archive import Archive
from memory.session_file import SESSION_FORMAT, SessionData, read_session, write_session
from memory.summarizer import ExtractiveSummarizer, Summarizer, SummaryResult
from memory.tokens import TokenCounter, default_counter
from memory.undo import compose_undos, undo_targets
from memory.window import assemble_from_window, by_reference

__all__ = ["Session", "SessionData"]

_log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[Concatenate[Session, _P], _R]
            ) -> Callable[Concatenate[Session, _P], _R]:
    """One call at a time per session. A web app shares a session between threads; unlocked,
    four threads adding messages lost 64 of them from the window and wrote duplicate ledger
    ids (session 28's user test). Reentrant: adding compacts, compacting reads the window."""
    def call(self: Session, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)
    functools.update_wrapper(call, method)
    return call


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
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(session_id, str) or not 0 < len(session_id) <= 200 \
                or any(c.isspace() or not c.isprintable() for c in session_id):
            raise InvalidInputError("session_id", "must be 1-200 visible characters (no "
                                    f"spaces), got {session_id!r}")
        self.session_id = session_id
        self.policy = policy or CompactionPolicy()
        self.counter = counter or default_counter()
        self.summarizer = summarizer or ExtractiveSummarizer(self.counter)
        self.auto_compact = auto_compact
        self.on_event = on_event
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._archive = Archive()
        self.window = WindowState()
        self.ledger: list[CompactionRecord] = []

    # -- appending -------------------------------------------------------------------------
    @_locked
    def add_message(
        self, /, role: str, content: str = "", *, id: str | None = None, **fields: object
    ) -> Message:
        """One message; without an `id` it gets the first free `m<n>` (n from the count)."""
        ident = self._archive.free_id() if id is None else id
        (message,) = self.add_messages([{"id": ident, "role": role, "content": content, **fields}])
        return message

    @_locked
    def add_messages(self, raw: Sequence[object]) -> list[Message]:
        """Append in order, as the durable store does: a message already here, byte for byte,
        is skipped (a retried append is harmless); a known id with other content is refused.
        A body over 64 KB stands in the window as its preview, as the durable window holds it
        (`memory.window.by_reference`); `get_context` shows it whole when there is room."""
        messages = parse_messages(raw)
        check_not_future(messages, datetime.now(UTC))
        validate_sequence(messages, open_tool_calls=self._archive.call_ids)
        fresh: list[Message] = []
        for index, message in enumerate(messages):
            known = self._archive.get(message.id)
            if known is None:
                fresh.append(message)
            elif message_digest(known) != message_digest(message):
                raise conflict_error(index, message, known)
        for message in fresh:
            self._archive.add(message)
        self.window = WindowState(summaries=self.window.summaries, messages=(
            *self.window.messages, *(by_reference(m) for m in fresh)))
        if self.auto_compact:
            self.maybe_compact()
        return messages

    @_locked
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
        with self._lock:
            return list(self._archive.values())

    @_locked
    def get_token_estimate(self) -> int:
        """Tokens the current working window (summaries + verbatim messages) costs."""
        return _window_tokens(self.window, self.counter)

    def should_compact(self, token_limit: int | None = None) -> bool:
        return self.policy.should_compact(self.get_token_estimate(), token_limit)

    # -- compacting ------------------------------------------------------------------------
    @_locked
    def compact(
        self,
        preserve_recent: int | None = None,
        focus: str | None = None,
        *,
        trigger: Trigger = "manual",
        force: bool = True,
        actor: str | None = None,
    ) -> CompactionRecord | None:
        """Compact now; None when nothing older than `preserve_recent` is left to compact, or
        when compacting it would not make the window smaller (`no_gain`). `actor` (who asks)
        goes into the record."""
        if preserve_recent is not None:
            check_range("preserve_recent", preserve_recent, 0, 1_000_000)
        actor = check_actor(actor)
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
        strategy, model, version, fallback = "archive-only", None, None, None
        try:
            if plan.summarize:
                covered = [self._archive[i] for i in plan.covered_ids]
                result, fallback = self._summarize(covered, plan.summary_max_tokens, focus)
                summary = Summary(id=f"s{seq + 1}", level=1, content=result.text,
                                  covers=plan.covered_ids, quoted_ids=result.quoted_ids,
                                  strategy=result.strategy)
                strategy, model, version = result.strategy, result.model, result.prompt_version
            window, record = compose_record(
                self.window, plan, record_id=record_id, seq=seq, summary=summary,
                strategy=strategy, trigger=trigger, model=model, prompt_version=version,
                fallback=fallback, duration_ms=(self._clock() - started) * 1000,
                at=self._wall_clock(), counter=self.counter, focus=focus, actor=actor)
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

    def _summarize(self, covered: list[Message], max_tokens: int, focus: str | None
                   ) -> tuple[SummaryResult, str | None]:
        """The configured summarizer, or, when it fails, the extractive one with the reason
        in the record, as the durable worker falls back. Raising instead left the message
        just added stored but reported as failed: an app's retry stored it again (163
        duplicates in 200 turns), and every later add raised while the window grew."""
        if isinstance(self.summarizer, ExtractiveSummarizer):
            return self.summarizer.summarize(covered, max_tokens, focus), None  # no fallback
        try:
            result = self.summarizer.summarize(covered, max_tokens, focus)
            if result.text.strip():
                return result, None
            problem = "an empty summary"
        except Exception as exc:
            problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        name = getattr(self.summarizer, "name", type(self.summarizer).__name__)
        fallback = f"extractive: {name} failed ({problem})"
        _log.warning("summarizer fell back: %s", fallback)
        return ExtractiveSummarizer(self.counter).summarize(covered, max_tokens, focus), fallback

    def force_compact(self, focus: str | None = None, *,
                      actor: str | None = None) -> CompactionRecord | None:
        """Emergency compaction: keep only the last two messages verbatim."""
        return self.compact(preserve_recent=2, focus=focus, actor=actor)

    @_locked
    def uncompact(self, record_id: str, with_later: bool = False, *,
                  actor: str | None = None) -> CompactionRecord:
        """Undo a compaction: its originals return to the window, its summary leaves. With
        `with_later`, the later compactions that merged its summary are undone first (newest
        first), all or none. Returns the undo record of `record_id`."""
        actor = check_actor(actor)
        if not any(r.id == record_id for r in self.ledger):
            raise NotFoundError(f"record_id: no compaction {record_id!r} in this session")
        steps = compose_undos(  # originals come back as the window holds them: previews
            self.window, undo_targets(record_id, self.ledger, self.window, with_later),
            self.ledger, seq=len(self.ledger), originals=self._archive.previews(),
            order=self._archive.order, at=self._wall_clock(), counter=self.counter,
            actor=actor)
        self.window = steps[-1][0]
        self.ledger.extend(record for _, record in steps)
        return steps[-1][1]

    def _emit(self, event: CompactionEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- context ---------------------------------------------------------------------------
    @_locked
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
        retrieved = self._archive.search(query, k, neighbours, neighbour_hit_count(k),
                                         self.session_id) if query else []
        return assemble_from_window(self.window, max_tokens=max_tokens, retrieved=retrieved,
                                    query=query, counter=self.counter, bodies=self._archive)

    # -- persistence -----------------------------------------------------------------------
    @_locked
    def to_data(self) -> SessionData:
        return SessionData(format=SESSION_FORMAT, session_id=self.session_id,
                           policy=self.policy, messages=tuple(self._archive.values()),
                           window=self.window, ledger=tuple(self.ledger))

    @_locked
    def save(self, path: str | Path) -> None:
        """The whole session to `path`, atomically: a crash while saving leaves the last save.
        Locked while it writes, so two threads' saves land in the order they were made."""
        write_session(path, self.to_data())

    @classmethod
    def load(cls, path: str | Path, *, policy: CompactionPolicy | None = None,
             **kwargs: object) -> Session:
        """A saved session; `policy` replaces the saved one, other arguments are `Session`'s."""
        data = read_session(path)
        session = cls("loaded", policy=policy or data.policy,
                      **kwargs)  # type: ignore[arg-type]
        session.session_id = data.session_id  # saved before the id rule (a space): kept
        for message in data.messages:
            session._archive.add(message)
        session.window = data.window
        session.ledger = list(data.ledger)
        return session
