"""Hypothesis strategies for conversations that look like real ones: prose, names, numbers,
system prompts, and assistant tool calls followed by their results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from memory.models import Message, ScoredMessage, Summary, ToolCall

WORDS = ("order parcel refund Caroline Melanie London Friday invoice tracking express "
         "decided agreed meeting tomorrow budget 4711 49.99 May deploy server error fixed "
         "why how what painting camping support group adoption").split()

sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=14).map(
    lambda ws: " ".join(ws).capitalize() + ".")
text = st.lists(sentence, min_size=1, max_size=5).map(" ".join)
wild_text = st.text(min_size=1, max_size=300).filter(lambda t: t.strip() and "\x00" not in t
                                                     and not any(0xD800 <= ord(c) <= 0xDFFF
                                                                 for c in t))
any_text = st.one_of(text, text, wild_text)


@st.composite
def conversations(
    draw: st.DrawFn, max_units: int = 30, system: bool | None = None
) -> list[Message]:
    messages: list[Message] = []
    start = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    n = 0

    def nid() -> str:
        nonlocal n
        n += 1
        return f"m{n}"

    if system if system is not None else draw(st.booleans()):
        messages.append(Message(id=nid(), role="system", content=draw(text)))
    for _ in range(draw(st.integers(0, max_units))):
        when = start + timedelta(minutes=n * 7)
        kind = draw(st.sampled_from(["user", "assistant", "tool"]))
        if kind == "tool":
            calls = tuple(ToolCall(id=f"call{n}_{k}", name="lookup", arguments='{"q": 1}')
                          for k in range(draw(st.integers(1, 3))))
            messages.append(Message(id=nid(), role="assistant", content=draw(
                st.sampled_from(["", "Let me check."])), tool_calls=calls, created_at=when))
            for call in calls:
                messages.append(Message(id=nid(), role="tool", tool_call_id=call.id,
                                        content=draw(any_text), created_at=when))
        else:
            pinned = draw(st.integers(0, 20)) == 0
            messages.append(Message(
                id=nid(), role=kind, content=draw(any_text), created_at=when,
                name=draw(st.sampled_from([None, "Caroline", "Melanie"])),
                metadata={"pinned": True} if pinned else {}))
    return messages


@st.composite
def summaries(draw: st.DrawFn) -> list[Summary]:
    out = []
    for i in range(draw(st.integers(0, 4))):
        out.append(Summary(id=f"s{i}", level=draw(st.integers(1, 3)), content=draw(text),
                           covers=(f"old{i}a", f"old{i}b"), quoted_ids=(f"old{i}a",)))
    return out


@st.composite
def retrieved(draw: st.DrawFn, pool: list[Message]) -> list[ScoredMessage]:
    chosen = draw(st.lists(st.sampled_from(pool), unique_by=lambda m: m.id, max_size=12)) \
        if pool else []
    return [ScoredMessage(message=m, score=draw(st.floats(0, 1)), session="s") for m in chosen]
