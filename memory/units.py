"""Tool units: an assistant's tool call and the results that answer it, kept together.

Apart from `memory.assembly` (which re-exports `tool_units`) because compaction and the
window's readers group by the same rule: a call and its results leave the window, or are
shown, together or not at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # memory.thinking, which memory.messages imports, imports this module
    from memory.models import Message

__all__ = ["JOINS_NEXT", "MAX_AWAITING_UNITS", "awaiting_units", "awaits_result", "tool_units",
           "turn_over", "turn_start"]

# An assistant message whose metadata sets this key (to true) forms one unit with the next
# non-tool message when that is the assistant's too: an Agents SDK reasoning item with the
# call it led to (the Responses API refuses a `function_call` sent without its `reasoning`
# item), or a response's calls with each other. Read by compaction and pop (`joins=True`),
# whose records name what they cover, never by assembly, so no served window changes with it.
JOINS_NEXT = "longthread_joins_next"


def tool_units(messages: Sequence[Message], once: bool = False,
               per_call: bool = False, joins: bool = False) -> list[list[Message]]:
    """Group an assistant tool call with the tool results that answer it; others stand alone,
    but (with `joins`) for an assistant message marked JOINS_NEXT, which shares its unit with
    the next non-tool message when that is an assistant message too.

    A tool result whose call is not in `messages` cannot be sent to a provider on its own, so it
    is left out of the units (it remains in the archive and can be retrieved as quoted data).
    With `once` (assembly version 7) so is a second result to a call already answered: the
    append path accepts it, and Anthropic refuses a tool_use with two results. With `per_call`
    (version 8) a message's calls that share one id take a result each; version 7 counted them
    as one call, so the results after the first were left out.
    """
    units: list[list[Message]] = []
    open_unit: dict[str, list[Message]] = {}
    unanswered: dict[str, int] = {}  # call id → results its latest message still awaits
    joined = False  # the previous non-tool message asked to share its unit with this one
    for message in messages:
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            unit = open_unit.get(call_id)
            if unit is not None:
                unit.append(message)
                unanswered[call_id] -= 1
                if once and unanswered[call_id] <= 0:
                    del open_unit[call_id]
            continue
        if joined and units and message.role == "assistant":
            unit = units[-1]
            unit.append(message)
        else:
            unit = [message]
            units.append(unit)
        joined = (joins and message.role == "assistant"
                  and message.metadata.get(JOINS_NEXT) is True)
        calls = Counter(call.id for call in message.tool_calls)
        for call_id, count in calls.items():
            open_unit[call_id] = unit
            unanswered[call_id] = count if per_call else 1
    return units


def turn_over(units: Sequence[Sequence[Message]]) -> bool:
    """Whether no turn is running: the newest unit is the assistant's reply without calls (a
    unit a reasoning item joins counts its call too), or there is none."""
    return not units or (units[-1][0].role == "assistant"
                         and not any(m.tool_calls for m in units[-1]))


def turn_start(units: Sequence[Sequence[Message]]) -> int | None:
    """The index of the unit whose user message opened the running turn: the user's last
    message, but one written right after a tool result goes to the API with that result and
    does not open a turn (a tool-use loop is one assistant turn). None when no user message
    opens one in `units`."""
    for index in range(len(units) - 1, -1, -1):
        if units[index][0].role == "user" and not (index and units[index - 1][-1].role == "tool"):
            return index
    return None


def awaits_result(unit: Sequence[Message]) -> bool:
    """Whether a call in `unit` has no result yet."""
    answered = {m.tool_call_id for m in unit if m.role == "tool"}
    return any(call.id not in answered for m in unit for call in m.tool_calls)


MAX_AWAITING_UNITS = 16  # at most this many calls awaiting results stay for them


def awaiting_units(units: Sequence[Sequence[Message]], cost: Callable[[Message], int],
                   budget: int) -> set[int]:
    """The indexes of the units compaction must leave in the window: the assistant's calls
    that await their results in its latest turn, newest first, while together they cost at
    most `budget` tokens, and at most MAX_AWAITING_UNITS of them. Such a result may still
    come (a slow tool, users writing while it runs), and a result whose call has left the
    window is one no provider accepts.

    The latest turn runs back from the assistant's newest unit (past users writing since)
    to the last user message or the last tool exchange before it that got a result: a call
    from before either is taken as never to be answered (a chain that saves calls but not
    results; an agent that went on past a call that timed out). Freezing every unanswered
    call let a window grow without bound; the budget bounds the rest (a newest turn of huge
    calls)."""
    kept: set[int] = set()
    spent = 0
    index = len(units) - 1
    while index >= 0 and not any(m.role == "assistant" for m in units[index]):
        index -= 1  # users writing since (or while) the assistant's last turn
    first = index
    while index >= 0 and len(kept) < MAX_AWAITING_UNITS:
        unit = units[index]
        if any(m.role == "user" for m in unit) or (
                index != first and any(m.role == "tool" for m in unit)):
            break  # the user spoke, or a tool answered and the model went on: an older turn
        if awaits_result(unit):
            spent += sum(cost(m) for m in unit)
            if spent > budget:
                break
            kept.add(index)
        index -= 1
    return kept
