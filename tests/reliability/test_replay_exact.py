"""Replay is exact: for hypothesis-generated sequences of operations on real sessions, every
context that was ever served is rebuilt from the archive and the ledger with the same digest.

Each hypothesis example is one sequence: a fresh session (extractive, or abstractive through
the real OpenAI SDK against a loopback server that answers with varied prose) under a small
policy with a small `hierarchy_fanout`, so automatic compactions and summary merges happen
often. The operations are append batches (tool call/result pairs, results arriving in a later
batch, system and pinned messages, re-sent batches, a large body stored by reference), context()
with and without a query at many budgets, manual compaction (preserve_recent, focus), uncompact
of any ledger record, pop, clear, settle, bursts of single appends (the dev server suggests
continue-as-new after 150 events, so runs continue often), and export then import into a fresh
session with its ledger, after which the sequence goes on in the imported copy.

After every context() the public `replay_at` must match it; after every sequence, each served
record of each session the sequence touched is replayed on its own and must match. An import
must restore the exported ledger exactly, and with nothing compacted since, the same window.

Not generated today: export/import after a tool result arrived behind other messages (the
import is refused; see `late_results` below).

LONGTHREAD_REPLAY_EXAMPLES sets how many sequences run (the issue asks for 1,000; the default,
20, keeps `make test` within a few minutes on 2 cores: a sequence takes 3-8 s there).
LONGTHREAD_REPLAY_SUMMARY names a markdown file that gets the run's numbers, rewritten after
every sequence, so a long run stopped early still says exactly what it covered.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from rich.console import Console
from temporalio.client import Client

from activities.conversation import ConversationActivities
from activities.providers.embedders import Embedder
from activities.providers.llm import OpenAISummarizer
from longthread.audit import replay_at
from longthread.client import Conversation, Longthread
from longthread.commands import Ctx, plan_import
from longthread.settings import Settings
from memory.audit import ServedContext, window_digest
from memory.errors import InvalidInputError
from memory.policy import CompactionPolicy
from memory.store.store import Store
from memory.window import BODY_REF_BYTES
from tests.activities.loopback import loopback
from tests.reliability.sequences import (
    OPENERS,
    VERBS,
    WORDS,
    Bridge,
    ProseReplies,
    prose,
    replay_served,
    served_contexts,
)
from worker.main import build_worker

EXAMPLES = int(os.environ.get("LONGTHREAD_REPLAY_EXAMPLES", "20"))
STEPS = int(os.environ.get("LONGTHREAD_REPLAY_STEPS", "20"))
# A markdown summary, rewritten after every sequence, so a long run stopped early still
# reports exactly what it covered.
SUMMARY = os.environ.get("LONGTHREAD_REPLAY_SUMMARY")
TENANT = "replay-exact"
T = TypeVar("T")

pytestmark = pytest.mark.timeout(max(600, EXAMPLES * 20))

# -- what a sequence is made of -------------------------------------------------------------
sentence = st.builds(lambda who, verb, words, end: f"{who} {verb} the {' '.join(words)}{end}",
                     st.sampled_from(OPENERS), st.sampled_from(VERBS),
                     st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
                     st.sampled_from([".", "!", "?", "."]))
free_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                    max_size=60).filter(str.strip)
text = st.one_of(st.lists(sentence, min_size=1, max_size=3).map(" ".join),
                 st.lists(sentence, min_size=12, max_size=45).map(" ".join),
                 free_text)
# One item of a batch: a plain message, a system message, a tool call answered in the same
# batch, or a tool call left open (answered by a later batch, or never).
item = st.one_of(
    st.tuples(st.sampled_from(["user", "assistant"]), text, st.integers(0, 9)),
    st.tuples(st.just("system"), st.lists(sentence, min_size=1, max_size=2).map(" ".join),
              st.just(0)),
    st.tuples(st.just("tool"), text, st.integers(1, 3)),
    st.tuples(st.just("call"), text, st.integers(1, 2)),
)
queries = st.one_of(st.none(), st.just("   "),
                    st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join),
                    sentence, free_text)
# 40,000: room for the large body to be shown whole (assembly 9) rather than as its preview
budgets = st.sampled_from([30, 60, 120, 250, 500, 900, 2000, 6000, 40_000])
shares = st.one_of(st.none(), st.sampled_from([(0.2, 0.3, 0.5), (0.0, 0.0, 1.0),
                                               (0.5, 0.5, 0.0), (0.1, 0.8, 0.1)]))
View = tuple[str | None, int, int, int, tuple[float, float, float] | None]
views: st.SearchStrategy[View] = st.tuples(queries, budgets, st.sampled_from([1, 5, 40]),
                                           st.integers(0, 2), shares)
then = st.one_of(st.none(), views)  # a context served right after an operation, or not
when = st.one_of(st.none(), st.datetimes(min_value=datetime(2001, 1, 1),
                                         max_value=datetime(2026, 1, 1),  # not ahead of now
                                         timezones=st.just(UTC)))


@dataclass
class Harness:
    bridge: Bridge
    client: Client
    store: Store
    embedder: Embedder
    queues: dict[str, str]
    prose: ProseReplies
    workdir: Path
    tally: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    requests: list[Any] = field(default_factory=list)  # the loopback's summarizer requests

    def summary(self, final: bool) -> str:
        t = self.tally
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        rows = [
            ("examples (sequences) completed", f"{t['sequences']} of {EXAMPLES} asked"
             + ("" if final else " (run in progress or stopped)")),
            ("steps per sequence (at most)", STEPS),
            ("sequences extractive / abstractive",
             f"{t['sequences-extractive']} / {t['sequences-abstractive']}"),
            ("contexts served (each checked by replay_at right away)", t["contexts"]),
            ("served records replayed at the end of their sequence", t["served-replayed"]),
            ("mismatches", "0 so far (a mismatch fails the run at once: see its outcome)"),
            ("budgets refused (system messages over the budget)", t["budget-refused"]),
            ("contexts showing a large body whole (assembly 9)", t["whole-bodies"]),
            ("messages appended", t["messages"]),
            ("compactions: auto / manual", f"{t['records-auto']} / {t['records-manual']}"),
            ("undo / pop / clear records",
             f"{t['records-undo']} / {t['records-pop']} / {t['records-clear']}"),
            ("undo refusals (unknown, undo, undone, merged)", t["undo-refused"]),
            ("merges (summaries of summaries)", t["merges"]),
            ("abstractive summaries (OpenAI SDK, loopback server)", t["abstractive-summaries"]),
            ("summarizer requests served by the loopback", len(self.requests)),
            ("export/import round trips", t["imports"]),
            ("continue-as-new", t["continued-as-new"]),
            ("wall time", f"{time.monotonic() - self.started:.0f} s"),
            ("load average (1, 5, 15 min) at this point", load),
        ]
        lines = ["| measure | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in rows]
        return "\n".join(lines) + "\n"


class ReplayMachine(RuleBasedStateMachine):
    harness: ClassVar[Harness]

    def __init__(self) -> None:
        super().__init__()
        self.h = type(self).harness
        self.sessions: list[str] = []
        self.convs: list[Conversation] = []
        self.next_id = 0
        self.open_calls: list[tuple[str, int]] = []  # (call id, number of its message)
        # A tool result appended behind other messages: importing such a session's export is
        # refused today (restore_ledger hashes covered messages in tool-unit order, the
        # compaction hashed them in window order; see the reliability report), so sequences
        # that did this skip export/import until that is fixed.
        self.late_results = False
        self.sent: list[list[dict[str, Any]]] = []
        self.systems = 0
        self.large = 0
        self.imports = 0
        self.edited = False  # a pop or clear since the last append: another one adds nothing
        self.may_import = 0

    # -- plumbing ---------------------------------------------------------------------------
    def run(self, work: Coroutine[Any, Any, T], timeout: float = 180.0) -> T:
        started = time.monotonic()
        try:
            return self.h.bridge.run(work, timeout)
        finally:
            name = getattr(work, "__qualname__", "?")
            self.h.seconds[name] = self.h.seconds.get(name, 0.0) + time.monotonic() - started
            self.h.calls[name] += 1

    @property
    def conv(self) -> Conversation:
        return self.convs[-1]

    @property
    def session(self) -> str:
        return self.sessions[-1]

    def ident(self) -> str:
        self.next_id += 1
        return f"m{self.next_id}"

    def send(self, batch: list[dict[str, Any]]) -> None:
        self.edited = False
        result = self.run(self.conv.append_many(batch))
        assert result.appended + result.duplicates == len(batch)
        self.sent.append(batch)
        self.h.tally["messages"] += result.appended

    # -- the sequence -----------------------------------------------------------------------
    @initialize(kind=st.sampled_from(["extractive", "abstractive"]),
                window=st.sampled_from([300, 450, 700, 1200]), fanout=st.integers(2, 3),
                keep=st.integers(0, 4), may_import=st.sampled_from([0, 1, 1, 2]))
    def start(self, kind: str, window: int, fanout: int, keep: int, may_import: int) -> None:
        self.may_import = may_import  # export/import is slow (it settles): not every sequence
        self.lt = Longthread(self.h.client, Settings(task_queue=self.h.queues[kind]),
                             CompactionPolicy(context_window=window, preserve_recent=keep,
                                              hierarchy_fanout=fanout),
                             store=self.h.store, embedder=self.h.embedder)
        name = f"seq-{uuid.uuid4().hex[:12]}"
        self.convs.append(self.run(self.lt.conversation(name, tenant=TENANT)))
        self.sessions.append(name)
        self.kind = kind
        self.h.tally[f"sequences-{kind}"] += 1

    @rule(items=st.lists(item, min_size=1, max_size=6), stamp=when, view=then)
    def append(self, items: list[tuple[str, str, int]], stamp: datetime | None,
               view: View | None) -> None:
        batch: list[dict[str, Any]] = []
        for kind, body, n in items:
            if kind == "system" and self.systems >= 2:
                kind = "user"
            if kind in ("user", "assistant", "system"):
                message: dict[str, Any] = {"id": self.ident(), "role": kind, "content": body}
                if n == 0 and kind == "user":
                    message["metadata"] = {"pinned": True}
                if n == 1:
                    message["name"] = "Caroline"
                if stamp is not None:
                    message["created_at"] = stamp.isoformat()
                self.systems += kind == "system"
                batch.append(message)
                continue
            call = self.ident()
            calls = [{"id": f"{call}-c{k}", "name": "lookup", "arguments": f'{{"k": {k}}}'}
                     for k in range(n)]
            batch.append({"id": call, "role": "assistant", "content": "", "tool_calls": calls})
            if kind == "call":
                self.open_calls.extend((c["id"], self.next_id) for c in calls)
            else:
                batch.extend({"id": self.ident(), "role": "tool", "tool_call_id": c["id"],
                              "content": f"{c['id']}: {body}"} for c in calls)
        self.send(batch)
        self.serve(view)

    @precondition(lambda self: bool(self.open_calls))
    @rule(body=text, how_many=st.integers(1, 3))
    def answer_open_calls(self, body: str, how_many: int) -> None:
        answered, self.open_calls = self.open_calls[:how_many], self.open_calls[how_many:]
        self.late_results |= any(number < self.next_id for _, number in answered)
        self.send([{"id": self.ident(), "role": "tool", "tool_call_id": call,
                    "content": f"result for {call}: {body}"} for call, _ in answered])
        self.edited = False

    @precondition(lambda self: bool(self.sent))
    @rule(pick=st.integers(0, 10**6))
    def resend(self, pick: int) -> None:
        batch = self.sent[pick % len(self.sent)]
        result = self.run(self.conv.append_many(batch))
        assert result.appended + result.duplicates == len(batch)

    @precondition(lambda self: self.large == 0)
    @rule(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
    def append_large_body(self, words: list[str]) -> None:
        self.large += 1  # above BODY_REF_BYTES: the window holds a preview and a reference
        body = (" ".join(words) + " ") * (70_000 // (len(" ".join(words)) + 1) + 1)
        self.send([{"id": self.ident(), "role": "user", "content": body}])

    @rule(count=st.integers(6, 14), body=sentence, settle=st.booleans(), view=then)
    def burst(self, count: int, body: str, settle: bool, view: View | None) -> None:
        for n in range(count):
            self.send([{"id": self.ident(), "role": "user" if n % 2 else "assistant",
                        "content": f"{body} ({n})"}])
        if settle:  # let background compaction catch up before the next step
            self.run(self.conv.settle(timeout=120))
        self.serve(view)

    @rule(view=views)
    def context(self, view: View) -> None:
        self.serve(view)

    def serve(self, view: View | None) -> None:
        """Serve a context now (if `view` says so); the public replay_at must rebuild it."""
        if view is None:
            return
        query, budget, k, neighbours, split = view
        try:
            window = self.run(self.conv.context(query, budget, k=k, neighbours=neighbours,
                                                shares=split))
        except InvalidInputError as exc:  # the system messages alone exceed the budget
            assert exc.field == "max_tokens", exc
            self.h.tally["budget-refused"] += 1
            return
        assert window.tokens <= budget
        self.h.tally["contexts"] += 1
        if any(len(m.content) > BODY_REF_BYTES for m in window.messages):
            self.h.tally["whole-bodies"] += 1
        result = self.run(replay_at(self.h.store, TENANT, self.session, turn=10**9))
        assert result.served.digest == window_digest(window), "the record is not what was served"
        assert result.matches, f"replay_at differs from the context just served: {result.served}"

    @rule(keep=st.one_of(st.none(), st.integers(0, 6)),
          focus=st.one_of(st.none(), st.sampled_from(WORDS), sentence),
          summary=st.one_of(st.none(), st.integers(0, 10**9).map(
              lambda seed: prose(random.Random(seed)))), view=then)
    def compact(self, keep: int | None, focus: str | None, summary: str | None,
                view: View | None) -> None:
        if summary is not None and self.kind == "abstractive":
            self.h.prose.push(summary)  # the next abstractive summary (if this session has one)
        record = self.run(self.conv.compact(preserve_recent=keep, focus=focus))
        assert record is None or (record.trigger, record.focus) == ("manual", focus)
        self.serve(view)

    @rule(pick=st.integers(0, 10**6), bogus=st.booleans(), view=then)
    def uncompact(self, pick: int, bogus: bool, view: View | None) -> None:
        ledger = self.run(self.conv.ledger())
        target = f"nope-{pick}" if bogus or not ledger else ledger[pick % len(ledger)].id
        try:
            record = self.run(self.conv.uncompact(target))
        except InvalidInputError as exc:  # unknown, an undo, already undone, or merged since
            assert exc.field == "record_id", exc
            self.h.tally["undo-refused"] += 1
        else:
            assert record.undoes == target
        self.serve(view)

    @precondition(lambda self: not self.edited)
    @rule(kind=st.sampled_from(["pop", "clear"]), view=then)
    def edit(self, kind: str, view: View | None) -> None:
        self.edited = True
        if kind == "pop":
            self.run(self.conv.pop())
        else:
            record = self.run(self.conv.clear())
            assert record is None or record.trigger == "clear"
        self.serve(view)

    @precondition(lambda self: self.imports < self.may_import and not self.late_results)
    @rule(batch=st.sampled_from([1, 7, 50, 500]))
    def export_import(self, batch: int) -> None:
        self.imports += 1
        self.run(self._export_import(batch), timeout=400)

    async def _export_import(self, batch: int) -> None:
        store, source = self.h.store, self.session
        ctx = Ctx(self.lt, store, Console(file=io.StringIO()))
        path = self.h.workdir / f"{source}.jsonl"
        await ctx.export(source, TENANT, path, force=True)  # settles the source first
        copy = f"{source}-i{self.imports}"
        await ctx.import_file(copy, plan_import(path, batch), TENANT)
        conv = Conversation(self.lt, copy, TENANT)
        await conv.settle(timeout=120)
        exported, imported = await store.ledger(TENANT, source), await store.ledger(TENANT, copy)
        assert imported[:len(exported)] == exported, "the import did not restore the ledger"
        originals = await store.all_messages(TENANT, source)
        assert await store.all_messages(TENANT, copy) == originals
        # The source's served contexts travel too (numbered anew); teardown replays them on
        # the copy like its own.
        def unnumbered(served: list[ServedContext]) -> list[ServedContext]:
            return [s.model_copy(update={"seq": 0}) for s in served]
        assert unnumbered(await served_contexts(store, TENANT, copy)) == unnumbered(
            await served_contexts(store, TENANT, source)), "the import lost served contexts"
        if len(imported) == len(exported):  # nothing compacted since: the same window
            assert (await store.load_window(TENANT, copy)).state == \
                (await store.load_window(TENANT, source)).state
        self.sessions.append(copy)
        self.convs.append(conv)
        self.h.tally["imports"] += 1

    def teardown(self) -> None:
        if not self.sessions:
            return
        self.run(self._check_every_served())

    async def _check_every_served(self) -> None:
        store = self.h.store
        for conv, session in zip(self.convs, self.sessions, strict=True):
            served = await served_contexts(store, TENANT, session)
            for record in served:
                window = await replay_served(store, TENANT, session, record)
                assert window_digest(window) == record.digest, (
                    f"replay of context {record.seq} in {session} (turn {record.turn}, "
                    f"ledger_seq {record.ledger_seq}) differs from what was served: {record}")
            self.h.tally["served-replayed"] += len(served)
            for entry in await store.ledger(TENANT, session):
                self.h.tally[f"records-{entry.trigger}"] += 1
                self.h.tally["merges"] += entry.merged_summary is not None
                self.h.tally["abstractive-summaries"] += entry.strategy == "abstractive"
            stats = await conv.stats()
            self.h.tally["continued-as-new"] += stats.runs - 1
            await conv.close()
        self.h.tally["sequences"] += 1
        if SUMMARY:
            Path(SUMMARY).write_text(self.h.summary(final=False))


async def test_replay_matches_every_served_context(
    short_history_client: Client, store: Store, embedder: Embedder
) -> None:
    client = short_history_client
    queues = {"extractive": f"replay-x-{uuid.uuid4()}", "abstractive": f"replay-a-{uuid.uuid4()}"}
    started = time.monotonic()
    with loopback() as provider, tempfile.TemporaryDirectory() as workdir:
        replies = ProseReplies(seed=11)
        provider.replies = replies
        summarizer = OpenAISummarizer("sk-loopback", "loopback-llm",
                                      base_url=provider.url + "/v1")
        extractive = ConversationActivities(store, embedder)
        abstractive = ConversationActivities(store, embedder, summarizer)
        async with build_worker(client, queues["extractive"], extractive.all()), \
                build_worker(client, queues["abstractive"], abstractive.all()):
            harness = Harness(Bridge(asyncio.get_running_loop()), client, store, embedder,
                              queues, replies, Path(workdir), requests=provider.requests)
            ReplayMachine.harness = harness
            await asyncio.to_thread(
                run_state_machine_as_test, ReplayMachine, settings=settings(
                    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck)))
    await abstractive.aclose()
    tally = harness.tally
    if SUMMARY:
        Path(SUMMARY).write_text(harness.summary(final=True))
    spent = {name: (round(seconds, 1), harness.calls[name])
             for name, seconds in harness.seconds.items()}
    print(f"\nreplay-exact: {tally['sequences']} sequences in {time.monotonic() - started:.0f} s,"
          f" {dict(sorted(tally.items()))}, {len(provider.requests)} summarizer requests,"
          f" (seconds, calls) by operation: {spent}")
    assert tally["sequences"] >= EXAMPLES
    assert tally["served-replayed"] >= tally["contexts"] > 0
    # The sequences reached what they are meant to cover: at 20 sequences the common ones;
    # the rarer ones on longer runs. Hypothesis switches each rule off for a whole sequence
    # with a probability drawn per sequence, so at 20 sequences an import, undo, pop or clear
    # was missing in about 3% of runs (a simulation of this machine by a review in session 25;
    # merges: 0 in one 20-sequence run, 173 in 330 sequences). The tally above shows them all.
    reached = ["abstractive-summaries", "continued-as-new", "records-auto"]
    if EXAMPLES >= 100:
        reached += ["imports", "records-undo", "records-pop", "records-clear", "merges",
                    "records-manual", "budget-refused", "undo-refused"]
    if EXAMPLES >= 20:
        assert all(tally[name] > 0 for name in reached), tally
