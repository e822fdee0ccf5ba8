"""Every workflow update, fuzzed with malformed input: at least 1,000 hypothesis cases.

The updates are `attach`, `append_many`, `compact`, `uncompact`, `edit_window`,
`restore_ledger` (forged and malformed ledgers: wrong seq, unknown undo target, covered ids not
in the window, a wrong covered_hash, duplicate ids, huge and empty fields, NUL characters,
times outside years 1-9999, broken record shapes) and `generate` (blank or NUL content, ids
with control characters, names over 200 characters, a budget smaller than the system
messages). Every update is also sent `null`, no argument and two arguments. Each case goes
through the client when the client can express it (which validates first), or raw through
`execute_update(name, args)`, which only the workflow validates. For each case:

- it is refused with an error that names the field it broke;
- it changes nothing (the ledger is as it was);
- the session keeps working: an append and a context() succeed right after it;

and at the end no run of any fuzzed session has a WorkflowTaskFailed event in its history.

Payloads over Temporal's 2 MB cap (raw; the client refuses anything over 1.5 MB itself, naming
the field) are the one exception, on a session of their own: the server delivers such an
update, but any answer to it (a refusal too) echoes the request, so the worker fails the task
with PAYLOADS_TOO_LARGE until the server drops the update (about 20 s). The caller gets an
error, the session works again afterwards, and its history holds only those failures, a few per
case: never a loop.

Appending bad messages through the client is fuzzed in test_bad_input.py; here the client path
of `append_many` only covers what that test does not (names, dates, tool call shapes,
metadata, unknown keys, conflicting re-sends, a batch too large in bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.conversation import ConversationActivities
from activities.providers.llm import OpenAIChat
from longthread.client import Conversation, Longthread
from longthread.settings import Settings
from memory.errors import LongthreadError
from memory.models import CompactionRecord
from memory.policy import CompactionPolicy
from memory.store.store import Store
from tests.activities.loopback import loopback
from tests.reliability.sequences import workflow_task_failures
from worker.main import build_worker

CASES = int(os.environ.get("LONGTHREAD_FUZZ_CASES", "1000"))
TENANT = "fuzz"
LANES = 3  # sessions per kind, fuzzed concurrently

# About 2 minutes for 1,000 cases on an idle 2-core machine; a loaded one may take 5 times that.
pytestmark = pytest.mark.timeout(max(600, CASES * 2))

Lane = Literal["main", "restore", "oversize"]
OVERSIZE_RECOVERY = 90.0  # seconds the session may stay busy after an oversized update
OVERSIZE_FAILURES = 4  # PAYLOADS_TOO_LARGE task failures allowed per oversized case


@dataclass(frozen=True)
class Case:
    update: str  # the workflow update
    via: Literal["client", "raw"]
    arg: Any  # the raw argument (JSON-like), or the client call's arguments
    names: tuple[str, ...]  # what the error must name (all of it, in one message)
    lane: Lane  # a session with a ledger, or a fresh import waiting for its ledger
    label: str  # what was broken
    args: tuple[Any, ...] | None = None  # raw only: every argument, when not exactly `arg`


# Control characters, NUL, and instants that leave years 1-9999 once converted to UTC.
NUL_TEXTS = ["\x00", "a\x00b", "tail\x00"]
OUT_OF_RANGE = ["0001-01-01T00:00:00+01:00", "0001-01-01T00:59:59+01:00",
                "9999-12-31T23:59:59-00:30", "9999-12-31T20:00:00-05:00"]


# -- malformed values, by field ---------------------------------------------------------------
MESSAGE_BAD: dict[str, list[Any]] = {
    "id": [None, 5, "", "x" * 201, "a\nb", "tab\there", "\x00", ["a"], {"id": 1}],
    "role": [None, 5, "", "admin", "USER", "function", "Tool", ["user"]],
    "content": [None, 5, "", ["x"], {"text": "x"}],
    "name": [5, "n" * 201, "a\x00b", ["n"]],
    "created_at": ["yesterday", "2024-13-01T00:00:00Z", "2024-02-30", [], {}, *OUT_OF_RANGE,
                   "9999-12-31T00:00:00Z"],  # storable, but far past now: refused by the store
    "tool_call_id": ["call-1", 5, ["c"]],
    "tool_calls": ["x", 5, [{"id": "c"}], [{"id": "", "name": "f"}],
                   [{"id": "c", "name": "f", "bogus": 1}], [{"id": "c", "name": ""}],
                   [{"id": "c", "name": "f", "arguments": 5}],
                   *([{"id": text, "name": "f"}] for text in NUL_TEXTS),
                   [{"id": "c", "name": "f\x00"}],
                   [{"id": "c", "name": "f", "arguments": '{"q": "\x00"}'}]],
    "metadata": ["x", 5, [1], [{"pinned": True}], {"note": "a\x00b"}, {"a\x00": 1},
                 {"deep": [{"x": ["ok", "\x00"]}]}, {"pinned": True, "tag": "\x00"}],
}
COMPACT_BAD: dict[str, list[Any]] = {
    "preserve_recent": [-1, -100, 10_001, 10**12, "ten", 1.5, [], {}],
    "focus": ["f" * 2001, 5, [], {}],
}
GENERATE_BAD: dict[str, list[Any]] = {
    # Blank or NUL content, ids and names the workflow would turn into an invalid Message.
    "content": ["", 5, None, [], {}, " ", "\t\n ", *NUL_TEXTS],
    # 64-120 pass the schema but cannot hold the main lanes' system message (about 150
    # tokens): refused by the context build, naming max_tokens.
    "max_tokens": [1, 63, 2_000_001, "lots", -5, None, 1.5, [], 64, 100, 120],
    "reply_tokens": [0, -1, 64_001, "lots", None, []],
    "id": [5, [], {}, "a\nb", "\x01x", "tab\there", "x" * 201, *NUL_TEXTS],
    "name": [5, [], {}, "n" * 201, *NUL_TEXTS],
}
RECORD_BAD: dict[str, list[Any]] = {
    "id": [None, 5, [], *NUL_TEXTS],
    "seq": [-1, "x", None, 1.5],
    "level": ["extreme", 5, None],
    "trigger": ["magic", 5, None],
    "action": [None, 5, "\x00"],
    "reason": [None, 5, [], "why\x00"],
    "covered_ids": ["m1", 5, None, [1], [None], ["m\x00"]],
    "covered_hash": [None, 5, [], "\x00"],
    "removed_summary_ids": [5, [1], "s1", ["s\x00"]],
    "summary": ["x", 5, {"id": "s"}, {"id": "s", "level": 0, "content": "c", "covers": []},
                {"id": "s", "level": 1, "content": "c", "covers": [], "bogus": 1},
                {"id": "s", "level": 1, "content": "said\x00", "covers": []},
                {"id": "s", "level": 1, "content": "c", "covers": ["m\x00"]},
                {"id": "s", "level": 1, "content": "c", "covers": [],
                 "created_at": OUT_OF_RANGE[0]}],
    "merged_summary": ["x", 5, {"id": "s", "level": "top", "content": "c", "covers": []},
                       {"id": "s\x00", "level": 1, "content": "c", "covers": []}],
    "restored_summaries": ["x", [5], 5,
                           [{"id": "s", "level": 1, "content": "c", "covers": [],
                             "strategy": "x\x00"}]],
    "tokens_before": [-1, "x", None],
    "tokens_after": [-1, "x", []],
    "duration_ms": ["x", []],
    "at": ["yesterday", [], "2024-02-30T00:00:00Z", *OUT_OF_RANGE],
    "strategy": [None, 5, "\x00"],
    "undoes": [5, [], "\x00"],
    "engine_version": [5, [], "v\x00"],
    "model": [5, "gpt\x00"],
    "summary_max_tokens": ["x", []],
}
RECORD_REQUIRED = ("id", "seq", "level", "action", "reason", "covered_ids", "covered_hash",
                   "strategy", "tokens_before", "tokens_after")
NOT_AN_OBJECT: list[Any] = [5, "x", [1, 2], 1.5]


def not_an_object(draw: st.DrawFn, update: str, model: str) -> Case:
    """The raw update's one argument is not a JSON object: the error names the input type."""
    arg = draw(st.sampled_from(NOT_AN_OBJECT))
    return Case(update, "raw", arg, (model,), "main", f"argument {arg!r}")


def message(ident: str, n: int) -> dict[str, Any]:
    return {"id": ident, "role": "user" if n % 2 == 0 else "assistant",
            "content": f"Fuzz message {n} about order {4700 + n}."}


@st.composite
def append_case(draw: st.DrawFn) -> Case:
    tag = draw(st.uuids()).hex[:10]
    batch = [message(f"fz-{tag}-{k}", k) for k in range(draw(st.integers(1, 4)))]
    at = draw(st.integers(0, len(batch) - 1))
    kind = draw(st.sampled_from(["field"] * 6 + [
        "missing", "unknown-key", "messages", "hold", "duplicate", "conflict", "orphan",
        "not-an-object", "too-large"] * 2 + ["too-many"]))
    arg: Any = {"messages": batch}
    where = f"messages.{at}"
    client_ok = True
    names: tuple[str, ...]
    if kind == "field":
        field = draw(st.sampled_from(sorted(MESSAGE_BAD)))
        value = draw(st.sampled_from(MESSAGE_BAD[field]))
        if field == "tool_calls":  # only assistant messages may carry tool calls
            batch[at]["role"] = "user" if value == [{"id": "c", "name": "f"}] else "assistant"
        if field == "tool_call_id" and isinstance(value, str):
            batch[at]["role"] = "user"  # only tool messages may carry one
        batch[at][field] = value
        names, label = (where, field), f"{where}.{field}={value!r:.40}"
    elif kind == "missing":
        field = draw(st.sampled_from(["id", "role"]))
        del batch[at][field]
        names, label = (where, field), f"{where}.{field} missing"
    elif kind == "unknown-key":
        key = draw(st.sampled_from(["bogus", "toolCalls", "timestamp", "seq"]))
        batch[at][key] = draw(st.sampled_from(["surprise", 1, None, []]))
        names, label = (where, key), f"{where}.{key}: unknown key"
    elif kind == "messages":
        arg = {"messages": draw(st.sampled_from([None, "x", 5, {}, [], [1], ["x"], [None]]))}
        names, label = ("messages",), f"messages={arg['messages']!r}"
        client_ok = isinstance(arg["messages"], list)
    elif kind == "hold":
        arg["hold_compaction"] = draw(st.sampled_from(["maybe", 5, [], {}, None, 0.5]))
        names, label = ("hold_compaction",), f"hold_compaction={arg['hold_compaction']!r}"
    elif kind == "duplicate":
        batch.append({**batch[at], "content": "the same id again"})
        names, label = (f"messages.{len(batch) - 1}", "id"), "an id twice in one batch"
    elif kind == "conflict":  # an id the session stored, sent again with other content
        batch.insert(0, {"id": "base-0", "role": "user", "content": f"not the same {tag}"})
        names, label = ("messages.0", "id"), "a stored id with other content"
    elif kind == "orphan":
        batch[at] = {"id": batch[at]["id"], "role": "tool", "tool_call_id": f"never-{tag}",
                     "content": "a result nobody asked for"}
        names, label = (where, "tool_call_id"), "a tool result that answers no call"
    elif kind == "not-an-object":
        arg = draw(st.sampled_from(NOT_AN_OBJECT))
        names, label, client_ok = ("AppendInput",), f"argument {arg!r}", False
    elif kind == "too-many":
        arg = {"messages": [message(f"fz-{tag}-{k}", k) for k in range(10_001)]}
        names, label = ("messages",), "10,001 messages"
    else:  # multi-byte text over the client's byte limit, under Temporal's 2 MB cap
        return Case("append_many", "client", {"messages": [
            {"id": f"fz-{tag}-big{k}", "role": "user", "content": "é" * 400_000}
            for k in range(2)]}, ("messages", "bytes"), "main", "batch over MAX_BATCH_BYTES")
    via: Literal["client", "raw"] = "client" if client_ok and draw(st.booleans()) else "raw"
    if kind == "field" and field in ("role", "content", "id") and draw(st.integers(0, 3)):
        via = "raw"  # test_bad_input already sends these through the client
    return Case("append_many", via, arg, names, "main", label)


def noise(draw: st.DrawFn, arg: dict[str, Any]) -> dict[str, Any]:
    """Sometimes an unknown key beside the broken one (these inputs ignore unknown keys)."""
    if draw(st.booleans()):
        arg["note"] = draw(st.text(st.characters(codec="utf-8"), max_size=12))
    return arg


@st.composite
def compact_case(draw: st.DrawFn) -> Case:
    if draw(st.integers(0, 9)) == 0:
        return not_an_object(draw, "compact", "CompactInput")
    field = draw(st.sampled_from(sorted(COMPACT_BAD)))
    arg = {field: draw(st.sampled_from(COMPACT_BAD[field]))}
    if draw(st.booleans()):  # a valid other field alongside
        other = "focus" if field == "preserve_recent" else "preserve_recent"
        arg[other] = draw(st.sampled_from(["orders", "the refund"])) if other == "focus" \
            else draw(st.integers(0, 20))
    label = f"{field}={arg[field]!r:.40}"
    if draw(st.booleans()):
        return Case("compact", "client", arg, (field,), "main", label)
    return Case("compact", "raw", noise(draw, arg), (field,), "main", label)


def uncompact_case(targets: dict[str, str]) -> st.SearchStrategy[Case]:
    @st.composite
    def build(draw: st.DrawFn) -> Case:
        kind = draw(st.sampled_from(["shape", "shape", "semantic", "semantic", "missing",
                                     "not-an-object"]))
        if kind == "not-an-object":
            return not_an_object(draw, "uncompact", "UncompactInput")
        if kind == "missing":
            return Case("uncompact", "raw", noise(draw, {}), ("record_id",), "main",
                        "record_id missing")
        if kind == "shape":
            value: Any = draw(st.sampled_from(["", "x" * 201, 5, None, [], {}]))
            label = f"record_id={value!r:.40}"
        else:
            label = draw(st.sampled_from(sorted(targets)))
            value = targets[label]
        if isinstance(value, str) and draw(st.booleans()):
            return Case("uncompact", "client", {"record_id": value}, ("record_id",), "main",
                        label)
        return Case("uncompact", "raw", noise(draw, {"record_id": value}), ("record_id",),
                    "main", label)
    return build()


@st.composite
def edit_case(draw: st.DrawFn) -> Case:
    """pop() and clear() take no input, so only the raw update can be malformed."""
    kind = draw(st.sampled_from(["kind", "kind", "kind", "missing", "not-an-object"]))
    if kind == "not-an-object":
        return not_an_object(draw, "edit_window", "EditInput")
    if kind == "missing":
        return Case("edit_window", "raw", noise(draw, {}), ("kind",), "main", "kind missing")
    value: Any = draw(st.sampled_from(["nuke", "", "POP", "Clear", "pop ", "undo", 5, None,
                                       [], {}, ["pop"]]))
    return Case("edit_window", "raw", noise(draw, {"kind": value}), ("kind",), "main",
                f"kind={value!r}")


@st.composite
def generate_case(draw: st.DrawFn) -> Case:
    if draw(st.integers(0, 9)) == 0:
        return not_an_object(draw, "generate", "GenerateInput")
    field = draw(st.sampled_from(sorted(GENERATE_BAD)))
    arg: dict[str, Any] = {"content": draw(st.sampled_from(
        ["What about order 4711?", "Summarise the refund.", "hi"]))}
    if field == "content" and draw(st.integers(0, 5)) == 0:
        del arg["content"]
        label = "content missing"
    else:
        arg[field] = draw(st.sampled_from(GENERATE_BAD[field]))
        label = f"{field}={arg[field]!r:.40}"
    if field == "content" and draw(st.integers(0, 7)) == 0:  # over 1.5 MB, under 2 MB
        arg["content"] = "é" * 800_000
        label = "content of 1.6 MB"
    if field in ("content", "max_tokens", "reply_tokens") and "content" in arg \
            and draw(st.booleans()):
        return Case("generate", "client", arg, (field,), "main", label)
    return Case("generate", "raw", noise(draw, arg), (field,), "main", label)


# What each update must name when its arguments are not one object (attach takes none).
INPUTS = {"attach": "attach", "append_many": "AppendInput", "compact": "CompactInput",
          "uncompact": "UncompactInput", "edit_window": "EditInput",
          "restore_ledger": "RestoreInput", "generate": "GenerateInput"}
VALID: dict[str, Any] = {"attach": {}, "append_many": {"messages": [message("fz-valid", 0)]},
                         "compact": {"preserve_recent": 4}, "uncompact": {"record_id": "c1"},
                         "edit_window": {"kind": "pop"}, "restore_ledger": {"records": []},
                         "generate": {"content": "What about order 4711?"}}


@st.composite
def args_case(draw: st.DrawFn) -> Case:
    """`null`, no argument, or a valid argument and one more: for every update, raw."""
    update = draw(st.sampled_from(sorted(INPUTS)))
    shapes: list[tuple[Any, ...]] = [(None,), (VALID[update], VALID[update]),
                                     (VALID[update], None), (None, None, None)]
    if update == "attach":
        shapes += [({},), (5,), ("x",)]
    else:
        shapes += [()]
    args = draw(st.sampled_from(shapes))
    return Case(update, "raw", None, (INPUTS[update],), "main",
                f"{update} with {len(args)} argument(s) {args!r:.60}", args=args)


def oversize_cases(source: list[CompactionRecord]) -> list[Case]:
    """Raw updates over Temporal's 2 MB payload cap (the client refuses them itself)."""
    record = source[0].model_dump(mode="json") | {"reason": "why " * 550_000}
    return [
        Case("append_many", "raw", {"messages": [
            {"id": "fz-huge", "role": "user", "content": "x" * 2_100_000}]}, (), "oversize",
            "a 2.1 MB append"),
        Case("restore_ledger", "raw", {"records": [record]}, (), "oversize",
             "a 2.2 MB ledger"),
        Case("generate", "raw", {"content": "é" * 1_200_000}, (), "oversize",
             "a 2.4 MB generate"),
    ]


def restore_case(source: list[CompactionRecord],
                 own: list[CompactionRecord]) -> st.SearchStrategy[Case]:
    """Forged or malformed ledgers. `source` is the ledger of the session the restore lanes
    were imported from (its genuine ledger restores cleanly); `own` is the main lanes' ledger."""
    docs = [r.model_dump(mode="json") for r in source]

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        kind = draw(st.sampled_from(["shape", "shape", "shape", "missing", "records",
                                     "forged", "forged", "forged", "forged", "already"]))
        k = draw(st.integers(0, len(docs) - 1))
        records = [dict(d) for d in docs[: k + 1 + draw(st.integers(0, len(docs)))]]
        if kind == "records" and draw(st.integers(0, 5)) == 0:  # over 1.5 MB, under 2 MB
            records[k]["reason"] = "why " * 400_000
            return Case("restore_ledger", "client", {"records": records}, ("records",),
                        "restore", "records of 1.6 MB")
        if kind == "records":
            value: Any = draw(st.sampled_from([None, "x", 5, {}, [1], ["x"], [None]]))
            return Case("restore_ledger", "raw", {"records": value}, ("records",), "restore",
                        f"records={value!r}")
        if kind == "shape":  # the record does not parse: refused before anything else
            field = draw(st.sampled_from(sorted(RECORD_BAD)))
            records[k][field] = draw(st.sampled_from(RECORD_BAD[field]))
            return Case("restore_ledger", draw(st.sampled_from(["raw", "client"])),
                        {"records": records}, (f"records.{k}.{field}",), "restore",
                        f"records[{k}].{field}={records[k][field]!r:.40}")
        if kind == "missing":
            field = draw(st.sampled_from((*RECORD_REQUIRED, "bogus")))
            if field == "bogus":
                records[k]["bogus"] = "an unknown key"
            else:
                del records[k][field]
            return Case("restore_ledger", draw(st.sampled_from(["raw", "client"])),
                        {"records": records}, (f"records.{k}.{field}",), "restore",
                        f"records[{k}].{field} missing")
        if kind == "already":  # the main lanes hold this ledger already
            at = draw(st.integers(0, len(own) - 1))
            forged = own[at].model_copy(update={"seq": len(own)})
            field = "records.0.id"
            if draw(st.booleans()):
                forged = forged.model_copy(update={"seq": draw(st.sampled_from(
                    [0, len(own) - 1, len(own) + 1, 10**6])), "id": f"new-{at}"})
                field = "records.0.seq"
            return Case("restore_ledger", draw(st.sampled_from(["raw", "client"])),
                        {"records": [forged.model_dump(mode="json")]}, (field,), "main",
                        f"{field} against the session's own ledger")
        # forged: parses, but does not fit the imported originals
        record = source[k]
        how = draw(st.sampled_from(["seq", "seq", "duplicate-id", "undo-target",
                                    "covered-ids", "covered-hash", "dropped-first"]))
        if how == "duplicate-id" and k == 0:
            how = "seq"
        huge = draw(st.sampled_from(["", "reason", "summary", "covered"]))
        field = f"records.{k}."
        if how == "seq":
            bad = draw(st.sampled_from([record.seq + 1, record.seq + 7, 10**9]))
            if k > 0:
                bad = draw(st.sampled_from([bad, 0, record.seq - 1]))
            record = record.model_copy(update={"seq": bad})
            field += "seq"
        elif how == "duplicate-id":
            record = record.model_copy(update={"id": source[draw(st.integers(0, k - 1))].id})
            field += "id"
        elif how == "undo-target":
            record = record.model_copy(update={"trigger": "undo", "undoes": draw(
                st.sampled_from(["ghost", "", source[-1].id + "x", "u1"]))})
            field += "undoes"
        elif record.trigger == "undo" or how == "dropped-first":
            records = [dict(d) for d in docs[1:]]  # everything after the first record
            return Case("restore_ledger", draw(st.sampled_from(["raw", "client"])),
                        {"records": records}, ("records.0.seq",), "restore",
                        "the first record dropped")
        elif how == "covered-ids":
            ghost = draw(st.sampled_from(["ghost", "m-never", "base-0x"]))
            ids = list(record.covered_ids)
            ids.insert(draw(st.integers(0, len(ids))), ghost)
            if huge == "covered":
                ids += [f"ghost-{n}" for n in range(3000)]
            record = record.model_copy(update={"covered_ids": tuple(ids)})
            field += "covered_ids"
        else:
            record = record.model_copy(update={"covered_hash": draw(st.sampled_from(
                ["", "0" * 64, record.covered_hash[::-1], record.covered_hash.upper()]))})
            field += "covered_hash"
        if huge == "reason":
            record = record.model_copy(update={"reason": "why " * 40_000})
        if huge == "summary" and record.summary is not None:
            record = record.model_copy(update={"summary": record.summary.model_copy(
                update={"content": "said " * 40_000})})
        records[k] = record.model_dump(mode="json")
        return Case("restore_ledger", draw(st.sampled_from(["raw", "client"])),
                    {"records": records}, (field,), "restore",
                    f"{field} forged ({how}, huge {huge or 'nothing'})")
    return build()


def collect(strategy: st.SearchStrategy[Case], count: int) -> list[Case]:
    cases: list[Case] = []

    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(case: Case) -> None:
        cases.append(case)

    gather()
    return cases


# -- sending a case ---------------------------------------------------------------------------
def client_call(conv: Conversation, case: Case) -> Awaitable[Any]:
    arg = case.arg
    if case.update == "append_many":
        return conv.append_many(arg["messages"], hold_compaction=arg.get("hold_compaction",
                                                                          False))
    if case.update == "compact":
        return conv.compact(**arg)
    if case.update == "uncompact":
        return conv.uncompact(arg["record_id"])
    if case.update == "restore_ledger":
        return conv.restore_ledger(arg["records"])  # dicts: the client validates them
    if case.update == "generate":
        return conv.generate(**arg)
    raise AssertionError(f"no client call for {case.update}")


def names_all(text: str, names: tuple[str, ...]) -> bool:
    """Whether `text` names every one of `names` as a whole word or path (`messages[2].id`
    and pydantic's `messages.2.id` are the same path)."""
    flat = re.sub(r"\[(\d+)\]", r".\1", text)
    return all(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", flat) for name in names)


def chain(exc: BaseException | None) -> list[str]:
    texts = []
    while exc is not None:
        texts.append(str(exc))
        exc = exc.cause if isinstance(exc, WorkflowUpdateFailedError) else exc.__cause__
    return texts


async def refusal(conv: Conversation, client: Client, case: Case) -> list[str]:
    """Send the case; return the refusal's messages (outermost first)."""
    handle = client.get_workflow_handle(conv.id)
    try:
        if case.via == "client":
            await asyncio.wait_for(client_call(conv, case), 60)
        elif case.args is not None:
            await asyncio.wait_for(handle.execute_update(case.update, args=list(case.args)), 60)
        else:
            await asyncio.wait_for(handle.execute_update(case.update, case.arg), 60)
    except TimeoutError:
        raise AssertionError(f"{case} was neither refused nor answered within 60 s") from None
    except (LongthreadError, pydantic.ValidationError) as exc:
        assert case.via == "client", (case, exc)
        return chain(exc)
    except WorkflowUpdateFailedError as exc:
        assert case.lane != "oversize", f"{case.label} reached the workflow: {exc.cause}"
        return chain(exc)[1:]
    except RPCError as exc:  # the server could not deliver it: only an oversized payload
        assert case.lane == "oversize", (case, exc)
        return [exc.message]
    raise AssertionError(f"malformed input was accepted: {case}")


@dataclass
class Session:
    conv: Conversation
    lane: Lane
    alive: int = 0


async def still_works(session: Session, store: Store, ledger: list[str],
                      recovery: list[float] | None = None) -> None:
    """An append and a context() succeed, and the ledger is as it was. After an oversized
    update (`recovery` set) the session may refuse updates for a while: it must recover
    within OVERSIZE_RECOVERY seconds, and how long it took goes into `recovery`."""
    session.alive += 1
    n = session.alive
    started = time.monotonic()
    while True:
        try:
            result = await asyncio.wait_for(session.conv.append_many([{
                "id": f"alive-{n}", "role": "user" if n % 2 else "assistant",
                "content": f"Still here after case {n}: order {4700 + n % 50}."}]), 60)
            break
        except RPCError:
            if recovery is None or time.monotonic() - started > OVERSIZE_RECOVERY:
                raise
            await asyncio.sleep(1)
    if recovery is not None:
        recovery.append(time.monotonic() - started)
    assert result.appended == 1
    window = await session.conv.context("order" if n % 3 == 0 else None, 300)
    assert 0 < window.tokens <= 300
    assert [r.id for r in await store.ledger(TENANT, session.conv.session)] == ledger


# About 150 tokens: generate() with max_tokens 64-120 cannot hold it.
SYSTEM = {"id": "base-system", "role": "system", "content": " ".join(
    f"Rule {n}: answer about orders, refunds and parcels politely and briefly."
    for n in range(14))}


async def setup_main(lt: Longthread, name: str) -> tuple[Conversation, dict[str, str]]:
    """A session whose ledger has an undone compaction, a merge (fanout 2) and a pop."""
    conv = await lt.conversation(name, tenant=TENANT)
    await conv.append_many([SYSTEM] + [message(f"base-{n}", n) for n in range(10)])
    first = await conv.compact(preserve_recent=6)
    assert first is not None
    undo = await conv.uncompact(first.id)
    for round_ in range(3):  # the third summary folds the first two
        await conv.append_many([message(f"more-{round_}-{n}", n) for n in range(6)])
        assert await conv.compact(preserve_recent=4) is not None
    ledger = await conv.ledger()
    merged = next(r for r in ledger if r.merged_summary is not None)
    folded = next(r for r in ledger if r.summary is not None
                  and r.summary.id in merged.removed_summary_ids)
    await conv.append_many([{"id": "base-tail", "role": "user", "content": "one more"}])
    popped = await conv.pop()
    assert [m.id for m in popped] == ["base-tail"]
    pop = (await conv.ledger())[-1]
    return conv, {"record_id: unknown": "c999", "record_id: an undo record": undo.id,
                  "record_id: already undone": first.id,
                  "record_id: merged by a later compaction": folded.id,
                  "record_id: unknown, like a pop's": pop.id + "0"}


async def setup_source(lt: Longthread, name: str) -> Conversation:
    """The session whose export the restore lanes import: every kind of ledger record."""
    conv = await lt.conversation(name, tenant=TENANT)
    await conv.append_many([message(f"base-{n}", n) for n in range(8)] + [
        {"id": "call", "role": "assistant", "content": "",
         "tool_calls": [{"id": "t1", "name": "lookup", "arguments": "{}"}]},
        {"id": "result", "role": "tool", "tool_call_id": "t1", "content": "order 4711: late"}])
    c1 = await conv.compact(preserve_recent=4)
    await conv.append_many([message(f"src-a-{n}", n) for n in range(4)])
    await conv.compact(preserve_recent=4)
    assert c1 is not None
    await conv.uncompact(c1.id)
    await conv.pop()
    await conv.append_many([message(f"src-b-{n}", n) for n in range(3)])
    await conv.compact(preserve_recent=2)
    await conv.clear()
    await conv.append_many([message(f"src-c-{n}", n) for n in range(2)])
    await conv.compact(preserve_recent=0)
    return conv


async def test_every_update_refuses_malformed_input_and_keeps_working(
    client: Client, activities: ConversationActivities, store: Store
) -> None:
    queue = f"fuzz-{uuid.uuid4()}"
    lt = Longthread(client, Settings(task_queue=queue),
                    CompactionPolicy(context_window=250_000, preserve_recent=4,
                                     hierarchy_fanout=2),
                    store=store, embedder=activities.embedder)
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    # A chat model (a loopback that refuses every call), so generate()'s arguments are checked
    # past its first question, whether the worker has a chat model at all.
    with loopback() as provider:
        for _ in range(CASES):
            provider.fail(400)
        chatting = ConversationActivities(store, activities.embedder, chat=OpenAIChat(
            "k", "fuzz-llm", base_url=provider.url + "/v1"))
        try:
            await _fuzz(client, lt, chatting, queue, run, started)
        finally:
            await chatting.aclose()


async def _fuzz(client: Client, lt: Longthread, activities: ConversationActivities, queue: str,
                run: str, started: float) -> None:
    store = activities.store
    async with build_worker(client, queue, activities.all()):
        source = await setup_source(lt, f"source-{run}")
        source_ledger = await source.ledger()
        kinds = Counter(r.trigger for r in source_ledger)
        assert {"manual", "undo", "pop", "clear"} <= set(kinds), kinds
        originals = await store.all_messages(TENANT, source.session)
        mains = [await setup_main(lt, f"main-{run}-{n}") for n in range(LANES)]
        targets = mains[0][1]
        own = await mains[0][0].ledger()
        restores = []
        for n in range(LANES):
            conv = await lt.conversation(f"restore-{run}-{n}", tenant=TENANT)
            await conv.append_many(originals, hold_compaction=True)
            restores.append(conv)

        oversized = await lt.conversation(f"oversize-{run}", tenant=TENANT)
        await oversized.append_many([message("base-0", 0)])

        share = {"append_many": 0.25, "compact": 0.09, "uncompact": 0.11, "edit_window": 0.07,
                 "restore_ledger": 0.28, "generate": 0.14, "arguments": 0.06}
        strategies: dict[str, st.SearchStrategy[Case]] = {
            "append_many": append_case(), "compact": compact_case(),
            "uncompact": uncompact_case(targets), "edit_window": edit_case(),
            "restore_ledger": restore_case(source_ledger, own), "generate": generate_case(),
            "arguments": args_case()}
        cases = [case for name, strategy in strategies.items()
                 for case in collect(strategy, max(10, round(CASES * share[name])))]
        # Hypothesis stops early once a small space (the argument shapes) is exhausted: the
        # large ones make up the difference.
        while len(cases) < CASES:
            missing = CASES - len(cases)
            cases += collect(strategies["append_many"], missing // 2 + 1)
            cases += collect(strategies["restore_ledger"], missing // 2 + 1)
        cases += oversize_cases(source_ledger)
        assert len(cases) >= CASES

        sessions = {"main": [Session(conv, "main") for conv, _ in mains],
                    "restore": [Session(conv, "restore") for conv in restores],
                    "oversize": [Session(oversized, "oversize")]}
        ledgers = {s.conv.session: [r.id for r in await s.conv.ledger()]
                   for group in sessions.values() for s in group}
        queues: dict[str, list[Case]] = {}
        for n, case in enumerate(cases):
            group = sessions[case.lane]
            queues.setdefault(group[n % len(group)].conv.session, []).append(case)
        tally: Counter[str] = Counter()
        recovery: list[float] = []

        async def lane(session: Session) -> None:
            for case in queues.get(session.conv.session, []):
                texts = await refusal(session.conv, client, case)
                named = [t for t in texts if names_all(t, case.names)]
                assert named, f"the refusal of {case.label!r} ({case.update}, {case.via}) " \
                    f"does not name {case.names}: {texts}"
                if case.lane != "oversize":
                    tally["named-at-top" if named[0] == texts[0] else "named-in-cause"] += 1
                tally[f"{case.update}/{case.via}"] += 1
                tally[f"{case.lane}-lane"] += 1
                await still_works(session, store, ledgers[session.conv.session],
                                  recovery if case.lane == "oversize" else None)

        everyone = [s for group in sessions.values() for s in group]
        try:
            async with asyncio.TaskGroup() as lanes:  # the first failure stops every lane
                for s in everyone:
                    lanes.create_task(lane(s))
        except BaseException:
            # A wedged session (an activity retried forever) would hold the worker's shutdown:
            # end the fuzzed workflows so the failure is reported now.
            for s in everyone:
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(s.conv.id).terminate("update fuzz failed")
            raise

        # The genuine ledger still restores cleanly after all the forgeries.
        for conv in restores:
            assert await conv.restore_ledger(source_ledger) == len(source_ledger)
            assert await conv.ledger() == source_ledger
        failed = {s.conv.id: await workflow_task_failures(client, s.conv.id) for s in everyone}
        source_failed = await workflow_task_failures(client, source.id)
    too_large = failed.pop(oversized.id)
    assert not any(failed.values()) and not source_failed, (failed, source_failed)
    # The oversized updates: a few PAYLOADS_TOO_LARGE task failures each, nothing else.
    assert all(f.startswith("WORKFLOW_TASK_FAILED_CAUSE_PAYLOADS_TOO_LARGE") for f in too_large)
    assert len(too_large) <= OVERSIZE_FAILURES * len(recovery), too_large
    assert sum(s.alive for s in everyone) == len(cases)
    print(f"\nupdate-fuzz: {len(cases)} cases in {time.monotonic() - started:.0f} s: "
          f"{dict(sorted(tally.items()))}; oversized updates: {len(recovery)}, "
          f"{len(too_large)} PAYLOADS_TOO_LARGE task failures, session back after "
          f"{', '.join(f'{r:.0f}' for r in recovery)} s")
