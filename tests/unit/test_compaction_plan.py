"""plan_compaction's automatic chunks: one chunk per record, or the whole excess when a burst
of appends left the window far over target."""

from __future__ import annotations

from memory.compaction import WindowState, compose_record, plan_compaction, window_tokens
from memory.models import Message, ToolCall
from memory.policy import CompactionPolicy
from memory.tokens import default_counter

POLICY = CompactionPolicy(context_window=1000, preserve_recent=4)


def _window(n: int) -> WindowState:
    return WindowState(messages=tuple(
        Message(id=f"m{i}", role="user" if i % 2 == 0 else "assistant",
                content=f"Turn {i}: the parcel for order {4700 + i} is stuck in Leeds again.")
        for i in range(n)))


def _tokens(state: WindowState, ids: tuple[str, ...]) -> int:
    counter = default_counter()
    return sum(counter.count_message(m.role, m.content) for m in state.messages if m.id in ids)


def test_a_chunk_covers_about_the_chunk_fraction_oldest_first() -> None:
    state = _window(150)  # far over the 1000-token window
    plan = plan_compaction(state, POLICY)
    assert plan is not None and plan.level == "emergency"
    assert plan.covered_ids[0] == "m0"
    covered = _tokens(state, plan.covered_ids)
    chunk = int(POLICY.context_window * POLICY.chunk_fraction)
    assert chunk <= covered < chunk + 40  # stops at the first message past the chunk
    assert window_tokens(state) - covered > POLICY.context_window  # one chunk is not enough


def test_catch_up_takes_the_whole_excess_in_one_record() -> None:
    state = _window(150)
    plan = plan_compaction(state, POLICY, catch_up=True)
    assert plan is not None
    after, record = compose_record(state, plan, record_id="c1", seq=0, summary=None,
                                     strategy="archive-only")
    assert window_tokens(after) <= int(POLICY.context_window * POLICY.target)
    assert [m.id for m in after.messages][-4:] == ["m146", "m147", "m148", "m149"]
    assert record.covered_ids == plan.covered_ids


def test_catch_up_changes_nothing_when_one_chunk_covers_the_excess() -> None:
    n = 1
    while window_tokens(_window(n)) < 0.86 * POLICY.context_window:
        n += 1
    state = _window(n)
    assert window_tokens(state) - POLICY.context_window * POLICY.target <= (
        POLICY.context_window * POLICY.chunk_fraction)
    plain = plan_compaction(state, POLICY)
    eager = plan_compaction(state, POLICY, catch_up=True)
    assert plain is not None and eager is not None and plain.level == "medium"
    assert plain.covered_ids == eager.covered_ids


def test_catch_up_never_splits_a_tool_unit_or_covers_unarchived_messages() -> None:
    state = _window(120)
    call = Message(id="call", role="assistant", content="Looking it up.",
                   tool_calls=(ToolCall(id="t1", name="track", arguments='{"order": 4711}'),))
    result = Message(id="result", role="tool", content="In Leeds.", tool_call_id="t1")
    messages = list(state.messages)
    messages[60:60] = [call, result]
    state = WindowState(messages=tuple(messages))
    plan = plan_compaction(state, POLICY, catch_up=True, keep_ids={"m30"})
    assert plan is not None
    assert {"call", "result", "m29", "m31"} <= set(plan.covered_ids)
    assert "m30" not in plan.covered_ids  # not archived yet: it stays in the window
    assert "m119" not in plan.covered_ids  # the preserved tail


def test_a_small_window_still_summarizes_in_the_one_message_loop() -> None:
    """Each light round frees only what gets the window under its target: a few hundred
    tokens in a small window, too few to pay for a summary, so every record was archive-only
    and no window carried the older conversation. The oldest units are now taken until the
    span pays for a summary; a record that still cannot says why in its reason."""
    from memory.session import Session

    session = Session("s", policy=CompactionPolicy(context_window=600, preserve_recent=2))
    for i in range(200):
        session.add_messages([{"id": f"m{i}", "role": "user",
                               "content": f"Fact {i}: the parcel went to depot {i} on Friday."}])
    assert session.window.summaries, [r.reason for r in session.ledger[:3]]
    assert window_tokens(session.window) <= 600
    for record in session.ledger:
        if record.summary is None:
            assert "no summary: " in record.reason, record.reason


def test_an_emergency_keeps_the_recent_messages_too() -> None:
    """A user test's agent: its question, one call and a 49 KB result put the window at 150%.
    Emergency kept 2 messages and summarized the question away, leaving the window bigger."""
    state = WindowState(messages=(
        Message(id="sys", role="system", content="You are a coding agent."),
        Message(id="u1", role="user", content="Why does the nightly build fail?"),
        Message(id="a1", role="assistant", content="",
                tool_calls=(ToolCall(id="call_1", name="read_log", arguments="{}"),)),
        Message(id="t1", role="tool", tool_call_id="call_1",
                content="error: linker failed at step 7\n" * 1_600)))
    policy = CompactionPolicy(context_window=8_000, preserve_recent=6)
    assert policy.decide(window_tokens(state)).level == "emergency"
    assert plan_compaction(state, policy) is None  # nothing outside the newest six
    # Keeping fewer, the question alone is outside: it opened the turn still running (the
    # call's result is the newest message), so it stays, forced or not (engine version 11;
    # before, a forced compaction summarized it away and the turn went on without it).
    assert plan_compaction(state, CompactionPolicy(context_window=8_000, preserve_recent=2)) \
        is None
    assert plan_compaction(state, CompactionPolicy(context_window=8_000, preserve_recent=2),
                           force=True) is None
    answered = WindowState(messages=(*state.messages, Message(
        id="a2", role="assistant", content="The linker fails at step 7.")))
    forced = plan_compaction(answered, CompactionPolicy(context_window=8_000, preserve_recent=1),
                             force=True)  # the turn is over: the question may go
    assert forced is not None and forced.covered_ids[0] == "u1" and forced.summarize
    after, record = compose_record(answered, forced, record_id="c1", seq=0, summary=None,
                                   strategy="archive-only")
    assert record.tokens_after == window_tokens(after) < record.tokens_before


def _pending_call_window() -> WindowState:
    """A call whose tool is still running, then users writing while it runs."""
    call = Message(id="call", role="assistant", content="",
                   tool_calls=(ToolCall(id="c-slow", name="build", arguments="{}"),))
    users = tuple(Message(id=f"u{i}", role="user", content=f"Any news on build {4700 + i}? "
                          "The release train leaves from platform nine today.") for i in range(60))
    return WindowState(messages=(_window(1).messages[0], call, *users))


def test_the_newest_call_awaiting_its_result_is_not_compacted() -> None:
    """Archived, the call left its result to arrive alone in the window (ut27: the LangChain
    history then began a turn with a ToolMessage, which OpenAI refuses)."""
    state = _pending_call_window()
    for plan in (plan_compaction(state, POLICY, catch_up=True),
                 plan_compaction(state, POLICY, force=True, preserve_recent=0)):
        assert plan is not None and "m0" in plan.covered_ids and "u0" in plan.covered_ids
        assert "call" not in plan.covered_ids
    answered = WindowState(messages=(*state.messages[:2], Message(
        id="result", role="tool", tool_call_id="c-slow", content="built"), *state.messages[2:]))
    plan = plan_compaction(answered, POLICY, force=True, preserve_recent=0)
    assert plan is not None and {"call", "result"} <= set(plan.covered_ids)  # answered: it may go


def test_calls_never_answered_do_not_stop_the_window_shrinking() -> None:
    """A chain that saves the model's calls but never their results: once the assistant has
    spoken again, an older call is compacted like any turn. Freezing every unanswered call
    (the first version) took a 1,000-token window to 6,020 tokens in 150 turns (review)."""
    from memory.session import Session

    session = Session(policy=POLICY, clock=lambda: 0.0)
    for turn in range(150):
        session.add_messages([
            Message(id=f"q{turn}", role="user", content=f"Book trip {turn} to Lisbon in May."),
            Message(id=f"c{turn}", role="assistant", content="",
                    tool_calls=(ToolCall(id=f"call{turn}", name="book", arguments="{}"),))])
    assert session.get_token_estimate() <= POLICY.context_window
    assert "c149" in {m.id for m in session.window.messages}  # the newest call stays


def test_a_message_marked_joins_next_leaves_only_with_the_next() -> None:
    """An Agents SDK reasoning item and the calls of its response form one unit: the
    Responses API refuses a function_call sent without its reasoning item."""
    from memory.units import JOINS_NEXT, tool_units

    joined = {JOINS_NEXT: True}
    reasoning = Message(id="rs", role="assistant", content="[reasoning] look it up",
                        metadata=joined)
    fc1 = Message(id="fc1", role="assistant", content="", metadata=joined,
                  tool_calls=(ToolCall(id="a", name="lookup", arguments="{}"),))
    fc2 = Message(id="fc2", role="assistant", content="",
                  tool_calls=(ToolCall(id="b", name="lookup", arguments="{}"),))
    out = [Message(id=f"out-{c}", role="tool", tool_call_id=c, content="found") for c in "ab"]
    units = tool_units([reasoning, fc1, fc2, *out, Message(id="u", role="user", content="ok")],
                       joins=True)
    assert [[m.id for m in unit] for unit in units] == [
        ["rs", "fc1", "fc2", "out-a", "out-b"], ["u"]]
    unmarked = [m.model_copy(update={"metadata": {}}) for m in (reasoning, fc1, fc2)]
    assert len(tool_units([*unmarked, *out], joins=True)) == 3  # without the mark, as before
    assert len(tool_units([reasoning, fc1, fc2, *out])) == 3  # assembly: never joined
    user = Message(id="u0", role="user", content="next question")
    assert len(tool_units([reasoning, user], joins=True)) == 2  # a user turn never joins


def test_every_call_of_the_assistants_latest_run_awaiting_a_result_stays() -> None:
    """The second review: calls stored one a message (no JOINS_NEXT), or followed by the
    assistant's own text, were archived while their results were coming."""
    from memory.units import MAX_AWAITING_UNITS

    def call(n: int) -> Message:
        return Message(id=f"c{n}", role="assistant", content="",
                       tool_calls=(ToolCall(id=f"k{n}", name="build", arguments="{}"),))

    users = _pending_call_window().messages[2:]
    said = Message(id="said", role="assistant", content="Building both, one moment.")
    state = WindowState(messages=(_window(1).messages[0], call(1), call(2), said, *users))
    plan = plan_compaction(state, POLICY, force=True, preserve_recent=0)
    assert plan is not None and "said" in plan.covered_ids
    assert not {"c1", "c2"} & set(plan.covered_ids)
    many = WindowState(messages=(*(call(n) for n in range(40)), *users))
    plan = plan_compaction(many, POLICY, force=True, preserve_recent=0)
    assert plan is not None  # bounded: only the newest MAX_AWAITING_UNITS stay
    assert [f"c{n}" for n in range(40 - MAX_AWAITING_UNITS)] == [
        i for i in plan.covered_ids if i.startswith("c")]


def test_an_agent_that_goes_on_past_unanswered_calls_stays_within_its_window() -> None:
    """The third review: one user prompt, then 200 file writes of about 4 KB, every fifth
    never answered (or, in parallel, one call of two): with the turn running back to the user
    only, 16 such units stayed for good, 26,548 tokens of an 8,000-token window."""
    from memory.session import Session

    policy = CompactionPolicy(context_window=8000)
    for parallel in (False, True):
        session = Session(policy=policy, clock=lambda: 0.0)
        session.add_messages([Message(id="u", role="user", content="Write the project.")])
        for step in range(200):
            calls = [ToolCall(id=f"w{step}", name="write_file",
                              arguments='{"text": "' + f"line {step} " * 400 + '"}')]
            if parallel:
                calls.append(ToolCall(id=f"x{step}", name="lint", arguments="{}"))
            answered = parallel or step % 5
            session.add_messages([
                Message(id=f"c{step}", role="assistant", content="", tool_calls=tuple(calls)),
                *([Message(id=f"r{step}", role="tool", tool_call_id=f"w{step}",
                           content="written")] if answered else [])])
            assert session.get_token_estimate() <= policy.context_window, (parallel, step)
