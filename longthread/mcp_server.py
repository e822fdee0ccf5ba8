"""The parts of `longthread mcp` that are not tools: the server class, which checks arguments
strictly and words their errors for a model to read, and the tools' result models.

Only `longthread.mcp` imports this module."""

from __future__ import annotations

from typing import Any, Literal, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult, Tool
from pydantic import BaseModel, ConfigDict, JsonValue, RootModel, ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails

from memory.checks import invalid_input
from memory.models import CompactionRecord, ContextWindow, Message, ScoredMessage
from memory.render import to_anthropic, to_openai, to_responses, unanswered_calls

__all__ = ["AppendSummary", "CompactResult", "ContextResult", "LedgerPage", "MessagePage",
           "NothingCompacted", "ProviderFormat", "SearchHit", "SearchResults", "StrictServer",
           "argument_problems"]

ProviderFormat = Literal["window", "openai", "anthropic", "responses"]


class AppendSummary(BaseModel):
    """What an append did: messages already stored under the same id are skipped."""

    appended: int
    duplicates: int
    total: int


class MessagePage(BaseModel):
    """One stored message, its content from `offset` for at most `max_chars` characters.

    Why pages: a body may be 2 MB, far more than the model asking for it can read at once;
    `next_offset` is where the next page starts, or null after the last one."""

    message: Message
    offset: int
    total_chars: int
    next_offset: int | None


class LedgerPage(BaseModel):
    """Ledger records `offset` to `offset + len(records) - 1` of `total`, oldest first.

    Why pages: a long session's ledger runs to hundreds of records and megabytes (596 records
    came to 717,000 characters), which would flood the context of the model that asked.
    `next_offset` is where the next page starts, or null after the last one; an object, never
    a bare list, so even an empty ledger reads as something (`total: 0`) in the text result."""

    records: list[CompactionRecord]
    offset: int
    total: int
    next_offset: int | None


class ContextResult(ContextWindow):
    """`context`'s result: the window as recorded (what `replay` rebuilds), the calls in it no
    result answers yet, and, when asked for, the window as one provider's request arguments.

    Why `unanswered_calls`: an agent may ask for the window between appending a call and its
    result. The window holds the call (it was appended), but OpenAI and Anthropic refuse a
    request carrying a call with no result, so a client forwarding `messages` as they are
    must know which to hold back. `request` does that for it, as the Python client's
    renderers do (`memory/render.py`): calls paired with results, ids in the APIs'
    alphabet, Anthropic's system blocks and cache breakpoints."""

    unanswered_calls: list[str]
    request: dict[str, JsonValue] | None = None

    @classmethod
    def of(cls, window: ContextWindow, provider: ProviderFormat) -> ContextResult:
        request: dict[str, JsonValue] | None = None
        if provider == "openai":
            request = {"messages": list(to_openai(window))}
        elif provider == "anthropic":
            system, messages = to_anthropic(window)
            request = {"system": list(system), "messages": list(messages)}
        elif provider == "responses":
            request = {"input": list(to_responses(window))}
        return cls(**dict(window), unanswered_calls=unanswered_calls(window), request=request)


class SearchHit(ScoredMessage):
    """One search result, with its `turn` beside its `seq`.

    Why: `seq` is the message's place in the session from 0, while `why` and `replay` take
    turns, which count the messages stored from 1 (turn N is the N-th message, seq N-1), so a
    model passing `seq` on asked about the message before. `seq` stays, for clients that read
    it already."""

    turn: int | None = None

    @classmethod
    def of(cls, hit: ScoredMessage) -> SearchHit:
        return cls(**dict(hit), turn=None if hit.seq is None else hit.seq + 1)


class SearchResults(BaseModel):
    """`search`'s result: the best matches first, and how many there are.

    An object, never a bare list: the SDK wraps a list as `{"result": [...]}`, unlike every
    other tool's result, and gives an empty one as blank text."""

    query: str
    count: int
    results: list[SearchHit]


class NothingCompacted(BaseModel):
    """A compact that committed nothing, and why (an empty reply told a model nothing)."""

    compacted: Literal[False] = False
    reason: str


class CompactResult(RootModel[CompactionRecord | NothingCompacted]):
    """`compact`'s result: the record, or why there is none.

    A model, not the bare union: the SDK wraps a union's structured output in
    `{"result": ...}`, while every other tool that returns one object returns it as is. The
    schema says `object` at its root, as MCP requires of an output schema."""

    model_config = ConfigDict(json_schema_extra={"type": "object"})


def _problem(error: ErrorDetails) -> str:
    """Pydantic's wording for the constraints the tools declare, as the limit in a few words
    (`must be at least 1`); anything else, pydantic's own message."""
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    match error["type"]:
        case "greater_than_equal":
            return f"must be at least {ctx['ge']}"
        case "greater_than":
            return f"must be more than {ctx['gt']}"
        case "less_than_equal":
            return f"must be at most {ctx['le']}"
        case "less_than":
            return f"must be less than {ctx['lt']}"
        case "too_short":
            n = ctx["min_length"]
            return f"must hold at least {n:,} item{'s' if n != 1 else ''}"
        case "too_long":
            return f"must hold at most {ctx['max_length']:,} items"
        case "string_too_short":
            n = ctx["min_length"]
            return "must not be empty" if n == 1 else f"must be at least {n:,} characters"
        case "string_too_long":
            return f"must be at most {ctx['max_length']:,} characters"
        case "missing":
            return "required"
    msg = error["msg"]
    return "must" + msg[len("Input should"):] if msg.startswith("Input should") else msg


def argument_problems(exc: ValidationError) -> list[str]:
    """One line per problem, `field: problem`: the field path as `invalid_input` names it
    (`messages[0].role`, or the field a model check names), and the limit it broke or, from
    one of the project's checks (`id: must not be blank`), that check's own text."""
    lines = []
    for error in exc.errors():
        one = invalid_input(ValidationError.from_exception_data(
            exc.title, [cast(InitErrorDetails, error)]))  # the same keys, `msg` aside
        cause = (error.get("ctx") or {}).get("error")
        lines.append(f"{one.field}: {one.problem if cause is not None else _problem(error)}")
    return lines


class StrictServer(MCPServer):
    """An `MCPServer` that refuses arguments a tool does not take, and reports bad ones as
    short lines instead of pydantic's text (its error count, input echo and help URL mean
    nothing to a model, and a long error costs it context)."""

    async def list_tools(self) -> list[Tool]:
        """The tools, their schemas closed to other properties: said up front, since a call
        with one is refused (an ignored misspelt argument would silently use the default)."""
        return [t.model_copy(update={"input_schema": {**t.input_schema,
                                                      "additionalProperties": False}})
                for t in await super().list_tools()]

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context[Any, Any] | None = None,
                        ) -> CallToolResult | InputRequiredResult:
        prefix = f"Error executing tool {name}: "  # the SDK's, on every other tool error
        tool = next((t for t in await super().list_tools() if t.name == name), None)
        if tool is not None:
            takes = list(tool.input_schema.get("properties", {}))
            unknown = [key for key in arguments if key not in takes]
            if unknown:
                raise ToolError(prefix + "\n".join(
                    f"{key}: unknown argument ({name} takes {', '.join(takes)})"
                    for key in unknown))
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            # From the cause, so the SDK still logs only the rejected fields' names.
            raise ToolError(prefix + "\n".join(argument_problems(exc.__cause__))
                            ) from exc.__cause__
