"""serve_context searches with the query's content (participants' names out), embeds it while
the window is read, assembles and records with the query as asked, and replays exactly."""

from __future__ import annotations

import uuid

import pytest

from activities.serving import serve_context
from activities.types import ContextRequest
from longthread.audit import rebuild, replay_at
from memory.assembly import ASSEMBLY_VERSION
from memory.audit import ServedContext, window_digest
from memory.errors import NotFoundError
from memory.models import Message, ToolCall
from memory.store.store import Store


class _Recording:
    """A query embedder that remembers what it was asked to embed."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return [[1.0] + [0.0] * 383 for _ in texts]


async def test_search_text_leaves_out_participants_and_replay_stays_exact(store: Store) -> None:
    session = f"serve-{uuid.uuid4()}"
    turns = [("Caroline", "I painted a sunrise over the lake last week."),
             ("Melanie", "Caroline, that sounds lovely! I went camping with the kids."),
             ("Caroline", "Camping sounds fun. Where did you go?"),
             ("Melanie", "To the beach, we roasted marshmallows.")]
    await store.append_messages("acme", session, [
        Message(id=f"d{i}", role="user", name=name, content=text)
        for i, (name, text) in enumerate(turns)])
    embedder = _Recording()
    query = "What did Caroline paint?"
    first = await serve_context(store, embedder, "acme", session,
                                ContextRequest(query=query, max_tokens=200))
    second = await serve_context(store, embedder, "acme", session,
                                 ContextRequest(query=query, max_tokens=200))
    assert first == second
    # The first call had not seen the session's names: it embeds again once it has; the
    # second embeds the right text at once, while it reads the window.
    assert embedder.texts[-1] == "What did paint?"
    assert embedder.texts.count("What did paint?") == 2
    served = await store.served("acme", session)
    assert [r["query"] for r in served] == [query, query]  # assembly keeps the question
    replayed = await replay_at(store, "acme", session, 4)
    assert replayed.matches and replayed.window == second


async def test_a_short_chat_asked_with_a_query_is_served_as_its_turns(store: Store) -> None:
    """The store searches the window's turns too; assembly 6 quoted ten of these twelve turns
    as data (170 of 4,000 tokens used). Served whole as turns, and the record replays."""
    session = f"serve-{uuid.uuid4()}"
    await store.append_messages("acme", session, [
        Message(id=f"m{i}", role="user" if i % 2 == 0 else "assistant",
                content=f"Turn {i}: the refund amount for order {i} is {i * 10} euros.")
        for i in range(12)])
    for query in ("refund amount", "zzzz"):
        window = await serve_context(store, _Recording(), "acme", session,
                                     ContextRequest(query=query, max_tokens=4000))
        assert [m.section for m in window.messages] == ["recent"] * 12
        assert [m.source_ids for m in window.messages] == [(f"m{i}",) for i in range(12)]
    replayed = await replay_at(store, "acme", session, 12)
    assert replayed.matches


async def test_a_large_tool_result_is_served_whole_when_the_budget_has_room(store: Store) -> None:
    """The window holds a body over 64 KB as a 2,000-character preview; a context with room
    for it (assembly 9) shows it whole, a small one the preview, and both replay exactly."""
    session = f"serve-{uuid.uuid4()}"
    body = "".join(f"row {n}: order {n * 7} shipped to depot {n % 13}\n" for n in range(2000))
    assert 64 * 1024 < len(body.encode()) < 100_000
    call = ToolCall(id="call_1", name="orders", arguments="{}")
    await store.append_messages("acme", session, [
        Message(id="u1", role="user", content="Where did order 9793 go?"),
        Message(id="a1", role="assistant", content="", tool_calls=(call,)),
        Message(id="t1", role="tool", tool_call_id="call_1", content=body)])
    embedder = _Recording()
    roomy = await serve_context(store, embedder, "acme", session,
                                ContextRequest(max_tokens=60_000))
    (result,) = [m for m in roomy.messages if m.role == "tool"]
    assert result.content == body and result.source_ids == ("t1",)
    assert roomy.tokens <= 60_000
    small = await serve_context(store, embedder, "acme", session,
                                ContextRequest(query="depot of order 9793", max_tokens=4_000))
    (preview,) = [m for m in small.messages if m.role == "tool"]
    assert preview.content.endswith(f"[… {len(body.encode())} bytes in full in the archive "
                                    "as t1]")
    assert small.tokens <= 4_000
    served = await store.served("acme", session)
    assert [r["assembly_version"] for r in served] == [ASSEMBLY_VERSION] * 2
    replayed = await replay_at(store, "acme", session, 3)  # the newest: the small one
    assert replayed.matches and replayed.window == small
    first = ServedContext.model_validate(served[0])
    assert window_digest(await rebuild(store, "acme", session, first)) == first.digest


async def test_repeated_tool_results_are_served_as_diffs_and_replay(store: Store) -> None:
    """Assembly 13 from the store's partial read: older listings as diffs against the newest
    one, which is served whole; the record replays to the same window."""
    from memory.delta import DIFF_PREFIX
    from tests.unit.test_golden_windows import listings

    session = f"serve-{uuid.uuid4()}"
    messages = [m for m in listings(10).messages if m.role != "system"]
    await store.append_messages("acme", session, messages)
    window = await serve_context(store, _Recording(), "acme", session,
                                 ContextRequest(max_tokens=4_000))
    diffs = [m for m in window.messages if m.content.startswith(DIFF_PREFIX)]
    assert diffs and all(not m.source_ids for m in diffs) and window.tokens <= 4_000
    assert window.messages[-3].source_ids == ("r9",)  # the newest listing, whole
    replayed = await replay_at(store, "acme", session, len(messages))
    assert replayed.matches and replayed.window == window


async def test_every_context_served_at_one_turn_can_be_replayed(store: Store) -> None:
    """The model's call and an auditor's later look at the same turn are both recorded; the
    newest no longer hides the first: replay lists both and rebuilds either by its seq."""
    session = f"serve-{uuid.uuid4()}"
    await store.append_messages("acme", session, [
        Message(id=f"m{i}", role="user", content=f"Order {i} left the depot on day {i}.")
        for i in range(6)])
    model_call = await serve_context(store, _Recording(), "acme", session,
                                     ContextRequest(query="order 4", max_tokens=2000))
    look = await serve_context(store, _Recording(), "acme", session,
                               ContextRequest(max_tokens=20))
    assert model_call != look
    newest = await replay_at(store, "acme", session, 6)
    assert newest.matches and newest.window == look
    first_seq, second_seq = newest.served_at_turn
    assert newest.served.seq == second_seq and first_seq < second_seq
    first = await replay_at(store, "acme", session, 0, seq=first_seq)
    assert first.matches and first.window == model_call
    assert first.served.query == "order 4" and first.served_at_turn == [first_seq, second_seq]
    with pytest.raises(NotFoundError, match=r"^seq: no context numbered"):
        await replay_at(store, "acme", session, 6, seq=second_seq + 10_000)
    await store.append_messages("acme", f"{session}-b", [Message(id="m0", role="user",
                                                                 content="hi")])
    with pytest.raises(NotFoundError):  # a seq names a context of its own session only
        await replay_at(store, "acme", f"{session}-b", 6, seq=first_seq)


async def test_an_agents_task_many_steps_back_is_served_and_replays(store: Store) -> None:
    """Assembly 16 from the store's partial read: an agent's one task, before more steps than
    the read bound reaches, is read and served first; the record replays to the same window
    (after a compaction too, when the task is a message the version keeps)."""
    from datetime import UTC, datetime

    from memory.compaction import compose_record, plan_compaction
    from memory.policy import CompactionPolicy
    from memory.store.sessions import LoadedWindow
    from tests.unit.test_golden_windows import autonomous

    session = f"serve-{uuid.uuid4()}"
    messages = [m for m in autonomous().messages if m.role != "system"]
    await store.append_messages("acme", session, messages)
    for budget in (800, 2000):
        window = await serve_context(store, _Recording(), "acme", session,
                                     ContextRequest(max_tokens=budget))
        assert window.messages[0].source_ids == ("task",) and window.tokens <= budget
        replayed = await replay_at(store, "acme", session, len(messages))
        assert replayed.matches and replayed.window == window
        fast = await store.read_window("acme", session, budget)
        assert fast.state == (await store._read_window_paged("acme", session, budget)).state
    # 300 steps more: the task is read on its own, not by reading every step after it.
    steps = [m for n in range(30, 330) for m in (
        Message(id=f"s{n}", role="assistant", content=f"Step {n}.",
                tool_calls=(ToolCall(id=f"call_{n}", name="run", arguments="{}"),)),
        Message(id=f"o{n}", role="tool", tool_call_id=f"call_{n}", content=f"step {n}: ok"))]
    await store.append_messages("acme", session, steps)
    messages += steps
    for read in (store.read_window, store._read_window_paged):
        part = await read("acme", session, 800)
        assert not part.complete and "task" in {m.id for m in part.state.messages}
        assert len(part.state.messages) < len(messages)  # the tail was not read whole
    window = await serve_context(store, _Recording(), "acme", session,
                                 ContextRequest(max_tokens=800))
    assert window.messages[0].source_ids == ("task",)
    replayed = await replay_at(store, "acme", session, len(messages))
    assert replayed.matches and replayed.window == window
    loaded: LoadedWindow = await store.load_window("acme", session)
    plan = plan_compaction(loaded.state, CompactionPolicy(context_window=2000,
                                                          preserve_recent=6), force=True)
    assert plan is not None and "task" not in plan.covered_ids  # engine 11 keeps it
    state, record = compose_record(loaded.state, plan, record_id="c1", seq=loaded.version,
                                   summary=None, strategy="archive-only",
                                   at=datetime(2026, 12, 7, tzinfo=UTC))
    await store.commit_records("acme", session, loaded.version, [(record, state)],
                               loaded.next_base)
    window = await serve_context(store, _Recording(), "acme", session,
                                 ContextRequest(max_tokens=800))
    assert window.messages[0].source_ids == ("task",)
    replayed = await replay_at(store, "acme", session, len(messages))
    assert replayed.matches and replayed.window == window
