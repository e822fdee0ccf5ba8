"""`longthread mcp`: longthread's tools for MCP clients (Claude Desktop, IDEs, agents).

Built on the official `mcp` package (`MCPServer`). It serves stdio by default, or streamable
HTTP on 127.0.0.1:PORT (path `/mcp`) with `--port`; it never listens beyond loopback. One server
is bound to one tenant (`--tenant`), so a client can reach no other tenant's sessions.

Tools: `append`, `context`, `message`, `compact`, `uncompact`, `ledger`, `replay`, `why`,
`search`. Arguments are typed (their JSON schema is what clients see, closed to other
properties), and bad input comes back as a tool error, one line per problem naming the field
and its limit, e.g. `messages[0].role: ...` or `max_tokens: must be at least 1`; an unknown
argument is refused by name. Only `append` creates a session; the others answer "no session"
for one that does not exist. `message` and `ledger` answer a page at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from rich.console import Console
from temporalio.service import RPCError

from longthread.audit import ReplayResult, TurnHistory, replay_at
from longthread.client import Longthread, check_ids
from longthread.commands import Ctx
from longthread.commands_audit import message_named, why_of
from longthread.mcp_server import (
    AppendSummary,
    CompactResult,
    ContextResult,
    LedgerPage,
    MessagePage,
    NothingCompacted,
    ProviderFormat,
    SearchHit,
    SearchResults,
    StrictServer,
)
from longthread.settings import Settings, acting_for
from memory.checks import MAX_CONTEXT_TOKENS, MAX_TURN, check_id
from memory.errors import LongthreadError, NotFoundError
from memory.models import CompactionRecord, Message

__all__ = ["AppendSummary", "CompactResult", "ContextResult", "LedgerPage", "MessagePage",
           "NothingCompacted", "SearchResults", "build_server", "serve"]

MAX_PAGE_CHARS = 200_000
MAX_LEDGER_PAGE = 200  # records; at about 1,200 characters each, 240,000 characters at most
WHY_PREVIEW_CHARS = 2_000  # `why` shows the start of a message; `message` reads it whole

INSTRUCTIONS = (
    "longthread keeps long conversations inside a model's context window. Append every "
    "message of a conversation with `append`; before each model call, get the window with "
    "`context` (optionally with a `query` to retrieve archived evidence). `compact` summarizes "
    "older turns now, `uncompact` undoes a ledger record, `ledger` lists the compactions, a "
    "page at a time, `replay` rebuilds the window served at a past turn, `why` says which "
    "records took a turn out of the window and why, and `search` finds archived messages. "
    "A window shows a very large message as a preview ending '[… N bytes in full in the "
    "archive as ID]'; `message` reads the whole of it, a page at a time.")

Session = Annotated[str, Field(min_length=1, max_length=200,
                               description="The conversation's id, e.g. 'ticket-4711'.")]


@contextmanager
def _as_tool_errors() -> Iterator[None]:
    """Errors the caller can act on become tool errors with their own text (which names the
    field); a crash stays a crash, so nothing unexpected leaks to the client."""
    try:
        yield
    except (LongthreadError, ConnectionError, TimeoutError) as exc:
        raise ToolError(str(exc) or type(exc).__name__) from exc
    except RPCError as exc:
        raise ToolError(f"temporal: {exc.message}") from exc


def build_server(lt: Longthread, tenant: str = "default") -> MCPServer:
    """The MCP server over one client, scoped to one tenant."""
    server: MCPServer = StrictServer("longthread", instructions=INSTRUCTIONS, version="0.1.0")
    ctx = Ctx(lt, None, Console(stderr=True))
    actor = acting_for(lt.settings, "mcp")  # recorded on each compaction and undo it asks for

    async def store_ready() -> None:
        ctx.store = await lt.store()

    @server.tool(description="Append messages to a session (created on first use). Each "
                 "message needs an id, a role (system|user|assistant|tool) and content; an id "
                 "already stored is skipped, so a retry never duplicates.")
    async def append(session: Session, messages: Annotated[list[Message], Field(
            min_length=1, description="Messages in order, e.g. {\"id\": \"m1\", \"role\": "
            "\"user\", \"content\": \"...\"}; tool results need tool_call_id.")],
                     ) -> AppendSummary:
        with _as_tool_errors():
            conv = await lt.conversation(session, tenant=tenant)
            result = await conv.append_many(messages)
        return AppendSummary(appended=result.appended, duplicates=result.duplicates,
                             total=result.total)

    @server.tool(description="The context window for the next model call, within max_tokens: "
                 "system messages, summaries, retrieved evidence for `query`, recent turns. "
                 "Recorded, so `replay` can rebuild it later. `unanswered_calls` lists tool "
                 "calls in the window whose result is not appended yet: OpenAI and Anthropic "
                 "refuse a request carrying one. With `format` 'openai', 'anthropic' or "
                 "'responses', `request` holds the window as that API's arguments "
                 "(`messages`, and Anthropic's `system`; the Responses API's `input`), "
                 "unanswered calls left out.")
    async def context(session: Session,
                      query: Annotated[str | None, Field(
                          description="What the next turn is about; retrieves archived "
                          "messages relevant to it.")] = None,
                      max_tokens: Annotated[int, Field(ge=1, le=MAX_CONTEXT_TOKENS)] = 4000,
                      format: Annotated[ProviderFormat, Field(
                          description="'window' (longthread's messages only), 'openai' "
                          "(Chat Completions), 'anthropic' or 'responses' (OpenAI's Responses "
                          "API): also `request`, ready to send.")] = "window",
                      ) -> ContextResult:
        with _as_tool_errors():
            await store_ready()
            conv = await ctx.existing(session, tenant)
            window = await conv.context(query=query, max_tokens=max_tokens)
        return ContextResult.of(window, format)

    @server.tool(description="One stored message whole, by id: the full body of a message "
                 "the window shows as a preview ('in full in the archive as ID'), or one a "
                 "summary covers. A long id may be given as the tail a window's line shows "
                 "('…9f02873d'). Long contents come in pages: call again with next_offset "
                 "(only `content` is paged; tool calls and metadata come whole).")
    async def message(session: Session,
                      id: Annotated[str, Field(min_length=1, max_length=200,
                                               description="The message's id, or the tail a "
                                               "window shows for a long one.")],
                      offset: Annotated[int, Field(
                          ge=0, description="First character of content to return.")] = 0,
                      max_chars: Annotated[int, Field(
                          ge=1, le=MAX_PAGE_CHARS,
                          description="Characters of content per page.")] = 20_000,
                      ) -> MessagePage:
        with _as_tool_errors():
            check_id("id", id)
            await store_ready()
            conv = await ctx.existing(session, tenant)
            _, found = await message_named(conv, id, "id")
        total = len(found.content)
        if offset >= max(total, 1):  # a message without content (tool calls only) has page 0
            raise ToolError(f"offset: must be less than {max(total, 1):,}, the content's "
                            "length" if total else "offset: must be 0 (the message has no "
                            "content)")
        end = min(total, offset + max_chars)
        return MessagePage(message=found.model_copy(update={"content": found.content[offset:end]}),
                           offset=offset, total_chars=total,
                           next_offset=end if end < total else None)

    @server.tool(description="Compact the session now: summarize older turns into one undoable "
                 "ledger record. Returns the record, or {compacted: false, reason} saying why "
                 "nothing was compacted.")
    async def compact(session: Session,
                      preserve_recent: Annotated[int | None, Field(
                          ge=0, le=10_000, description="How many newest messages stay verbatim."
                      )] = None,
                      focus: Annotated[str | None, Field(
                          max_length=2000, description="What the summary must keep.")] = None,
                      ) -> CompactResult:
        with _as_tool_errors():
            await store_ready()
            conv = await ctx.existing(session, tenant)
            attempt = await conv.try_compact(preserve_recent=preserve_recent, focus=focus,
                                             actor=actor)
        if attempt.record is not None:
            return CompactResult(attempt.record)
        return CompactResult(NothingCompacted(reason=attempt.nothing_because(preserve_recent)))

    @server.tool(description="Undo a ledger record (a compaction, pop or clear) by its id: the "
                 "covered messages come back into the window. Returns the undo record. A "
                 "compaction whose summary a later record took out (a merge, a clear) is "
                 "refused, naming those to undo first; `with_later` undoes them with it.")
    async def uncompact(session: Session, record_id: Annotated[str, Field(
            min_length=1, max_length=200, description="A ledger record id, e.g. 'c1'.")],
                        with_later: Annotated[bool, Field(
            description="Also undo the later records that took its summary out, newest "
            "first, in one step.")] = False,
                        ) -> CompactionRecord:
        with _as_tool_errors():
            await store_ready()
            conv = await ctx.existing(session, tenant)
            return await conv.uncompact(record_id, with_later=with_later, actor=actor)

    @server.tool(description="The session's compactions, oldest first, a page at a time: "
                 "each record's trigger, level, covered message ids, tokens before and after, "
                 "strategy, the summary. `total` counts them all; call again with next_offset "
                 "(null after the last page). Record N has seq N, so offset total-limit reads "
                 "the newest.")
    async def ledger(session: Session,
                     offset: Annotated[int, Field(
                         ge=0, le=MAX_TURN, description="The first record's seq (0: the "
                         "oldest).")] = 0,
                     limit: Annotated[int, Field(
                         ge=1, le=MAX_LEDGER_PAGE, description="Records per page.")] = 20,
                     ) -> LedgerPage:
        with _as_tool_errors():
            await store_ready()
            await ctx.settled(session, tenant)
            store = await lt.store()
            total = await store.ledger_length(tenant, session)
            if offset > total:  # offset == total is where the next record will go: empty page
                raise ToolError(f"offset: must be at most {total:,}, the ledger's length")
            end = min(total, offset + limit)  # records below the count read are all committed
            records = await store.ledger(tenant, session, start=offset, stop=end)
        return LedgerPage(records=records, offset=offset, total=total,
                          next_offset=end if end < total else None)

    @server.tool(description="Rebuild exactly the window the model was served after `turn` "
                 "messages, from the archive and the ledger, and check it against the digest "
                 "recorded then (`matches`). The newest context served at or before `turn`, "
                 "unless `seq` names one; `served_at_turn` lists every context served at its "
                 "turn.")
    async def replay(session: Session, turn: Annotated[int, Field(
            ge=0, le=MAX_TURN, description="A turn number: how many messages the session "
            "held.")],
                     seq: Annotated[int | None, Field(
            ge=1, le=MAX_TURN, description="One served context's number (from "
            "`served_at_turn`); then `turn` is not used.")] = None,
                     ) -> ReplayResult:
        with _as_tool_errors():
            await store_ready()
            await ctx.settled(session, tenant)
            return await replay_at(await lt.store(), tenant, session, turn, seq=seq)

    @server.tool(description="Why a message left the window: the message at `turn` (the "
                 "N-th stored, from 1; or give the message's id, whole or as the tail a window "
                 "shows, and `turn` in the answer is its turn); `steps`, what each ledger record "
                 "did to it, with its reason, including later merges of the summary it went "
                 "into; `in_force`, the records still keeping it out (empty: it is in the "
                 "window verbatim); `carried_by`, the summaries in the window that stand for "
                 "it; and `now`, in one sentence.")
    async def why(session: Session, turn: Annotated[int | str, Field(
            description="A turn number (an integer: the N-th message, from 1, as `search` "
            "results' `turn`), or a message's id (a string).")],
                  ) -> TurnHistory:
        with _as_tool_errors():
            if isinstance(turn, bool) or (isinstance(turn, int) and not 1 <= turn <= MAX_TURN):
                raise ToolError(f"turn: must be a whole number from 1 to {MAX_TURN}, or a "
                                "message id")
            await store_ready()
            conv = await ctx.settled(session, tenant)
            try:
                history = await why_of(conv, await lt.store(), turn)
            except NotFoundError as exc:  # "12" is an id; the turn 12 is the integer
                hint = ("; a turn number goes as an integer" if isinstance(turn, str)
                        and turn.isascii() and turn.isdigit() else "")
                raise ToolError(f"{exc}{hint}") from exc
        content = history.message.content
        if len(content) > WHY_PREVIEW_CHARS:  # `message` pages the whole of it
            content = (content[:WHY_PREVIEW_CHARS] + f" [… {len(content):,} characters in "
                       f"full: `message` with id {history.message.id!r}]")
        return history.model_copy(update={"message": history.message.model_copy(
            update={"content": content})})

    @server.tool(description="Hybrid search (BM25 and embeddings) over every archived message "
                 "of the session, compacted or not: `results`, the best match first, each "
                 "with its score and its `turn` (the N-th message stored, what `why` and "
                 "`replay` take; `seq` is the same position from 0), and `count`.")
    async def search(session: Session,
                     query: Annotated[str, Field(min_length=1, max_length=10_000)],
                     k: Annotated[int, Field(ge=1, le=200)] = 10) -> SearchResults:
        with _as_tool_errors():
            await store_ready()
            conv = await ctx.existing(session, tenant)
            found = await conv.search(query, k)
        return SearchResults(query=query, count=len(found),
                             results=[SearchHit.of(hit) for hit in found])

    return server


async def serve(port: int | None = None, tenant: str = "default",
                settings: Settings | None = None) -> None:
    """Serve until the client hangs up (stdio) or the process is stopped (HTTP)."""
    check_ids(tenant, "mcp")
    async with await Longthread.connect(settings) as lt:
        server = build_server(lt, tenant)
        if port is None:
            await server.run_stdio_async()
        else:
            await server.run_streamable_http_async(host="127.0.0.1", port=port)
