"""Assembly 9: a body the window holds as a preview is shown whole when the budget has room,
never at the cost of its own turn, and earlier versions are untouched."""

from __future__ import annotations

from memory.audit import window_digest
from memory.compaction import WindowState
from memory.models import ContextWindow, Message, ScoredMessage, ToolCall
from memory.window import (
    BODY_REF_BYTES,
    WHOLE_BODIES_MAX_BYTES,
    assemble_from_window,
    by_reference,
    whole_bodies,
)

BODY = "".join(f"row {n}: order {n * 7} shipped to depot {n % 13}\n" for n in range(2000))
CALL = ToolCall(id="call_1", name="orders", arguments="{}")


def _session(extra: tuple[Message, ...] = ()) -> tuple[WindowState, dict[str, Message]]:
    result = Message(id="t1", role="tool", tool_call_id="call_1", content=BODY)
    originals = [Message(id="sys", role="system", content="You are a logistics agent."),
                 Message(id="u1", role="user", content="Where did order 9793 go?"),
                 Message(id="a1", role="assistant", tool_calls=(CALL,)), result, *extra]
    return (WindowState(messages=tuple(by_reference(m) for m in originals)),
            {m.id: m for m in originals})


def _read(state: WindowState, budget: int, originals: dict[str, Message]
          ) -> tuple[list[str], list[str]]:
    """What serving reads for a `budget` context (in order) and what it shows whole."""
    chooser, read = whole_bodies(state, budget), []
    while (wanted := chooser.wanted()) is not None:
        read.append(wanted)
        chooser.offer(originals[wanted])
    return read, list(chooser.chosen)


def _tool(window: ContextWindow) -> str:
    (content,) = [m.content for m in window.messages if m.role == "tool"]
    return content


def test_the_body_is_shown_whole_when_it_costs_at_most_half_the_budget() -> None:
    assert len(BODY.encode()) > BODY_REF_BYTES
    state, originals = _session()
    assert _read(state, 60_000, originals) == (["t1"], ["t1"])
    window = assemble_from_window(state, max_tokens=60_000, bodies=originals)
    assert _tool(window) == BODY and window.tokens <= 60_000
    # Version 8 ignores the bodies: the preview, byte for byte as before.
    old = assemble_from_window(state, max_tokens=60_000, version=8, bodies=originals)
    assert old == assemble_from_window(state, max_tokens=60_000, version=8)
    assert _tool(old).endswith("in full in the archive as t1]")


def test_a_budget_without_room_keeps_the_preview_and_reads_nothing() -> None:
    state, originals = _session()
    assert _read(state, 4_000, originals) == ([], [])  # 16 bytes a token: cannot fit, unread
    window = assemble_from_window(state, max_tokens=30_000, bodies=originals)
    assert _tool(window).endswith("in full in the archive as t1]")  # ~22k tokens > half
    assert window == assemble_from_window(state, max_tokens=30_000)


def test_a_body_that_is_not_the_one_previewed_is_not_shown() -> None:
    state, originals = _session()
    other = originals["t1"].model_copy(update={"content": BODY.replace("row 1:", "row one:")})
    window = assemble_from_window(state, max_tokens=60_000, bodies={"t1": other})
    assert _tool(window).endswith("in full in the archive as t1]")


def test_a_body_never_pushes_its_own_turn_out_of_the_window() -> None:
    """Asked with a query that retrieval answers at length, the recent turns get a small
    floor. A whole body in an older turn would leave that turn out, so it goes back to its
    preview, and the window is the one version 8 served; with more room it is shown whole."""
    later = tuple(Message(id=f"x{i}", role=("user", "assistant")[i % 2],
                          content=f"Next question {i} about depot {i}.") for i in range(4))
    state, originals = _session(later)
    hits = [ScoredMessage(message=Message(
        id=f"h{i}", role="user", content=f"Order {i * 7} went to depot {i % 13} on day {i}. " * 12),
        score=1 / (60 + i), session="s", seq=i) for i in range(600)]
    query = "depot of order 9793"
    assert _read(state, 45_000, originals) == (["t1"], ["t1"])  # chosen, then left out
    window = assemble_from_window(state, max_tokens=45_000, query=query, retrieved=hits,
                                  bodies=originals)
    before = assemble_from_window(state, max_tokens=45_000, query=query, retrieved=hits,
                                  version=8)
    assert window_digest(window) == window_digest(before)
    assert all(m.content != BODY for m in window.messages)
    roomy = assemble_from_window(state, max_tokens=100_000, query=query, retrieved=hits,
                                 bodies=originals)
    assert _tool(roomy) == BODY and roomy.tokens <= 100_000


def test_bodies_share_one_half_of_the_budget_and_one_megabyte_newest_first() -> None:
    """Each body within half the budget is not enough: together they would push the
    conversation out (and a window travels through Temporal in `generate()`, 2 MB a payload)."""
    dumps: list[Message] = []
    for n in range(30):
        call = ToolCall(id=f"c{n}", name="dump", arguments="{}")
        dumps += [Message(id=f"q{n}", role="user", content=f"Dump table {n}."),
                  Message(id=f"a{n}", role="assistant", tool_calls=(call,)),
                  Message(id=f"r{n}", role="tool", tool_call_id=f"c{n}",
                          content=BODY.replace("row", f"t{n}"))]
    state = WindowState(messages=tuple(by_reference(m) for m in dumps))
    originals = {m.id: m for m in dumps}
    sizes = {m.id: len(m.content.encode()) for m in dumps}

    shown_whole = {60_000: ["r29"], 100_000: ["r29", "r28"]}
    for budget, expected in shown_whole.items():
        read, chosen = _read(state, budget, originals)
        assert chosen == expected  # and two more read, found too large, and the choice stops
        assert read == [f"r{n}" for n in range(29, 29 - len(expected) - 2, -1)]
        window = assemble_from_window(state, max_tokens=budget, bodies=originals)
        whole = [m.source_ids[0] for m in reversed(window.messages)
                 if m.role == "tool" and m.content == originals[m.source_ids[0]].content]
        assert whole == expected and window.tokens <= budget
    # At the largest budget, what is read and shown stays within 1 MB, the newest first.
    read, chosen = _read(state, 2_000_000, originals)
    assert read == chosen == [f"r{n}" for n in range(29, 29 - len(read), -1)]
    assert 0 < sum(sizes[i] for i in read) <= WHOLE_BODIES_MAX_BYTES
    window = assemble_from_window(state, max_tokens=2_000_000, bodies=originals)
    assert sum(len(m.content.encode()) for m in window.messages
               if m.content == originals[m.source_ids[0]].content and m.role == "tool") \
        <= WHOLE_BODIES_MAX_BYTES


def test_a_newer_body_too_dense_to_fit_does_not_keep_an_older_one_out() -> None:
    """Bodies are read by stored size, but chosen by tokens: a newer 130 KB of dense text
    (33k tokens) is read and passed over, and an older 70 KB of CJK (24k tokens, counted by
    script since version 17) is shown, within the 30k of a 60k budget bodies may take."""
    dense = "x" * 130_000
    cjk = "物流中心的订单已发货。" * 2200
    messages = (Message(id="u", role="user", content="Show both exports."),
                Message(id="old", role="user", content=cjk),
                Message(id="new", role="user", content=dense))
    state = WindowState(messages=tuple(by_reference(m) for m in messages))
    originals = {m.id: m for m in messages}
    assert _read(state, 60_000, originals) == (["new", "old"], ["old"])
    window = assemble_from_window(state, max_tokens=60_000, bodies=originals)
    assert [m.source_ids[0] for m in window.messages if m.content == cjk] == ["old"]
