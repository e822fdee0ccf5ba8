"""LangChain's own RunnableWithMessageHistory over LongthreadChatMessageHistory, async and sync,
on the real embedded Temporal and Postgres. The chat model is langchain-core's fake model (it
stands in for a hosted API); everything else is real."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.history import RunnableWithMessageHistory
from temporalio.client import Client

from longthread.client import Longthread
from longthread.integrations.langchain import LongthreadChatMessageHistory
from longthread.settings import Settings
from memory.errors import InvalidInputError
from memory.store.store import Store

# LangChain 1.6.4 deprecated RunnableWithMessageHistory (for LangGraph); it still is the way
# most code uses a BaseChatMessageHistory, so it is what these tests drive.
pytestmark = pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")

PROMPT = ChatPromptTemplate.from_messages([("system", "You are a travel agent."),
                                           MessagesPlaceholder("history"), ("human", "{q}")])


def chain(histories: dict[str, BaseChatMessageHistory],
          replies: list[str]) -> RunnableWithMessageHistory:
    return RunnableWithMessageHistory(
        PROMPT | FakeListChatModel(responses=replies), lambda session_id: histories[session_id],
        input_messages_key="q", history_messages_key="history")


async def test_chain_turns_tool_messages_and_compaction_async(
    worker: object, lt: Longthread, store: Store,
) -> None:
    session = str(uuid.uuid4())  # a UUID is an ordinary session id
    history = LongthreadChatMessageHistory(await lt.conversation(session, tenant="acme-corp"))
    runnable = chain({session: history}, ["Lisbon is sunny in May.", "Book the 9:40 flight."])
    config = RunnableConfig(configurable={"session_id": session})
    first = await runnable.ainvoke({"q": "Where should I go in May?"}, config=config)
    second = await runnable.ainvoke({"q": "How do I get there?"}, config=config)
    assert (first.content, second.content) == ("Lisbon is sunny in May.",
                                               "Book the 9:40 flight.")

    tool_turn: list[BaseMessage] = [
        AIMessage(content="", tool_calls=[{"name": "fares", "args": {"to": "LIS"},
                                           "id": "call_1", "type": "tool_call"}]),
        ToolMessage(content="TAP 129 EUR", tool_call_id="call_1", id="fare-result"),
        HumanMessage(content=[{"type": "text", "text": "Thanks!"}], name="Ana")]
    await history.aadd_messages(tool_turn)

    got = await history.aget_messages()
    assert [m.type for m in got] == ["human", "ai", "human", "ai", "ai", "tool", "human"]
    assert [m.content for m in got[:4]] == ["Where should I go in May?",
                                            "Lisbon is sunny in May.", "How do I get there?",
                                            "Book the 9:40 flight."]
    # Exact round-trip; a message added without an id comes back with the id it is stored as.
    assert got[4] == tool_turn[0].model_copy(update={"id": got[4].id})
    assert got[5] == tool_turn[1] and got[6] == tool_turn[2].model_copy(update={"id": got[6].id})
    stored = await store.all_messages("acme-corp", session)
    assert [m.id for m in stored] == [m.id for m in got]
    assert stored[4].tool_calls[0].id == "call_1" and stored[5].tool_call_id == "call_1"

    await history.conversation.compact(preserve_recent=3)
    compacted = await history.aget_messages()
    assert isinstance(compacted[0], SystemMessage) and "Summary of" in compacted[0].text
    # The tool call and its result stay together, and so does the question that opened the
    # turn still running ("Thanks!" came right after the result: no reply ended the turn).
    assert compacted[1:] == [got[2], *got[-3:]]

    await history.aclear()
    assert await history.aget_messages() == []
    assert len(await store.all_messages("acme-corp", session)) == 7  # nothing lost
    assert (await history.conversation.ledger())[-1].trigger == "clear"


async def test_sync_methods_from_a_thread_and_a_clear_error_inside_the_loop(
    worker: object, lt: Longthread,
) -> None:
    history = LongthreadChatMessageHistory(await lt.conversation(f"s-{uuid.uuid4()}"))
    with pytest.raises(RuntimeError, match=r"await history\.aget_messages\(\)"):
        _ = history.messages
    with pytest.raises(RuntimeError, match=r"aadd_messages"):
        history.add_messages([HumanMessage("hi")])

    def sync_program() -> list[BaseMessage]:
        runnable = chain({"s": history}, ["Noted: window seat."])
        answer = runnable.invoke({"q": "I want a window seat."},
                                 config={"configurable": {"session_id": "s"}})
        assert answer.content == "Noted: window seat."
        history.add_messages([HumanMessage("And a vegetarian meal.", id="meal")])
        return history.messages

    got = await asyncio.to_thread(sync_program)
    assert [m.content for m in got] == ["I want a window seat.", "Noted: window seat.",
                                        "And a vegetarian meal."]
    assert got[-1].id == "meal"
    await asyncio.to_thread(history.clear)
    assert await history.aget_messages() == []


async def test_open_for_a_synchronous_program(
    worker: object, client: Client, task_queue: str, app_url: str,
) -> None:
    settings = Settings(temporal_address=client.service_client.config.target_host,
                        database_url=app_url, task_queue=task_queue)
    session = f"sync-{uuid.uuid4()}"

    def sync_program() -> tuple[list[str], list[str]]:
        history = LongthreadChatMessageHistory.open(session, tenant="acme", settings=settings)
        try:
            history.add_messages([HumanMessage("Seat 12A, please."), AIMessage("Done: 12A.")])
            first = [str(m.content) for m in history.messages]
        finally:
            history.close()
        again = LongthreadChatMessageHistory.open(session, tenant="acme", settings=settings)
        try:
            return first, [str(m.content) for m in again.messages]
        finally:
            again.close()

    first, reopened = await asyncio.to_thread(sync_program)
    assert first == reopened == ["Seat 12A, please.", "Done: 12A."]
    with pytest.raises(RuntimeError, match="synchronous code"):
        LongthreadChatMessageHistory.open(session, tenant="acme", settings=settings)


async def test_re_adding_a_stored_message_is_a_duplicate_and_other_content_is_refused(
    worker: object, lt: Longthread, store: Store,
) -> None:
    """A framework retrying an add that had landed (same message, same id) stores nothing
    twice and raises nothing; the same id with other content is still refused. Both paths."""
    session = f"retry-{uuid.uuid4()}"
    history = LongthreadChatMessageHistory(await lt.conversation(session, tenant="acme"))
    turn: list[BaseMessage] = [HumanMessage("Seat 12A, please.", id="lc2-h1"),
                               HumanMessage("no id here"),
                               AIMessage("", id="lc2-a1", tool_calls=[
                                   {"name": "seat", "args": {"seat": "12A"}, "id": "call_s",
                                    "type": "tool_call"}]),
                               ToolMessage("held", tool_call_id="call_s", id="lc2-t1")]
    await history.aadd_messages(turn)
    first = await store.all_messages("acme", session)
    assert len(first) == 4

    await history.aadd_messages([HumanMessage("Seat 12A, please.", id="lc2-h1")])  # a retry
    await history.aadd_messages(turn[2:])  # a tool unit, retried
    back = await history.aget_messages()
    await history.aadd_messages(back)  # read back, ids longthread gave included
    await asyncio.to_thread(history.add_messages, [HumanMessage("Seat 12A, please.",
                                                                id="lc2-h1")])  # sync path
    assert await store.all_messages("acme", session) == first
    assert await history.aget_messages() == back

    with pytest.raises(InvalidInputError) as refused:
        await history.aadd_messages([HumanMessage("Seat 14C, please.", id="lc2-h1")])
    assert refused.value.field == "messages[0].id" and "lc2-h1" in refused.value.problem
    with pytest.raises(InvalidInputError, match=r"messages\[1\]\.id"):
        await asyncio.to_thread(history.add_messages, [
            HumanMessage("And a meal.", id="lc2-h2"), AIMessage("No.", id="lc2-a1")])
    assert await store.all_messages("acme", session) == first  # nothing of a refused batch


async def test_an_invalid_tool_call_is_stored_and_answered(
    worker: object, lt: Longthread,
) -> None:
    """A model's malformed arguments land in `invalid_tool_calls`; its ToolMessage answering
    that call was refused as an orphan and the whole turn lost (ut27)."""
    history = LongthreadChatMessageHistory(await lt.conversation(f"lc-{uuid.uuid4()}"))
    turn: list[BaseMessage] = [
        HumanMessage("Book Lisbon.", id="h1"),
        AIMessage("", id="a1", invalid_tool_calls=[
            {"type": "invalid_tool_call", "name": "book", "args": "{city: Lisbon",
             "id": "call_bad", "error": "not JSON"}]),
        ToolMessage("error: arguments are not JSON", tool_call_id="call_bad", id="t1")]
    await history.aadd_messages(turn)
    assert await history.aget_messages() == turn
    with pytest.raises(InvalidInputError, match=r"^messages\[0\]\.content: contains a NUL"):
        await history.aadd_messages([HumanMessage("a\x00b")])


async def test_for_session_gives_each_session_id_its_own_history(
    worker: object, lt: Longthread, store: Store,
) -> None:
    """The documented factory: one history per request's session id, made without a round
    trip (ut27: the example's closure over one history mixed every user's messages)."""
    runnable = RunnableWithMessageHistory(
        PROMPT | FakeListChatModel(responses=["Hi Ana.", "Hi Bo."]),
        lambda session_id: LongthreadChatMessageHistory.for_session(lt, session_id, "acme"),
        input_messages_key="q", history_messages_key="history")
    ana, bo = f"ana-{uuid.uuid4()}", f"bo-{uuid.uuid4()}"
    for session, q in ((ana, "I am Ana."), (bo, "I am Bo.")):
        await runnable.ainvoke({"q": q}, config=RunnableConfig(
            configurable={"session_id": session}))
    assert [m.content for m in await store.all_messages("acme", ana)] == ["I am Ana.", "Hi Ana."]
    assert [m.content for m in await store.all_messages("acme", bo)] == ["I am Bo.", "Hi Bo."]
    with pytest.raises(InvalidInputError, match=r"^session: "):
        LongthreadChatMessageHistory.for_session(lt, "two words")


async def test_a_large_body_reads_back_as_its_preview_and_re_adding_it_stores_nothing(
    worker: object, lt: Longthread, store: Store,
) -> None:
    """The history is the window as counted: a 300 KB tool result is its preview (ut27: it
    came back whole), and messages read back and added again are still duplicates."""
    session = f"lc-{uuid.uuid4()}"
    history = LongthreadChatMessageHistory(await lt.conversation(session))
    log = "build step ok\n" * 25_000
    turn: list[BaseMessage] = [
        AIMessage("", id="a1", tool_calls=[{"name": "build", "args": {}, "id": "c1",
                                            "type": "tool_call"}]),
        ToolMessage(log, tool_call_id="c1", id="t1")]
    await history.aadd_messages(turn)
    got = await history.aget_messages()
    assert got[0] == turn[0] and isinstance(got[1], ToolMessage)
    assert got[1].text.startswith(log[:2000]) and len(got[1].text) < 2200
    assert got[1].text.endswith(f"[… {len(log)} bytes in full in the archive as t1]")
    await history.aadd_messages(got)
    assert [m.content for m in await store.all_messages("default", session)][1] == log
    assert await store.count("default", session) == 2
