"""Context assembly: the window for one model call, always within budget and provider-valid.

Sections, in the order the model sees them: system messages (always kept), summaries,
retrieved archived messages (one fenced block of quoted data, oldest first) and the recent
conversation. A tool call and its results are one unit: both are shown or neither is.

With `shares=None` (the default) the budget goes where the evidence is. With a query that
retrieval answered, the candidates are reranked (`memory.retrieval.rerank`) and get everything
except a floor for the newest exchange (from the last user message on, at most a tenth of the
budget) and a cap for the summaries (the top summary level is built to fit a tenth of a
budget); whatever retrieval does not fill flows back to the recent conversation, then to older
summaries. With no query (version 4) summaries get the same tenth before recent, plus what recent
does not need, so the hierarchy's top level is always there and displaces few verbatim turns
(version 3 gave them 2/7). Version 4 also fills the retrieved block's second half with the
top hits' dialogue neighbourhood (`memory.packing.reach`). Version 7 shows the window's turns
that retrieval quoted as turns when that pushes no line out, so a short chat asked with a query
comes back as the chat, not as quoted data. Fixed `Shares` still work; earlier versions rebuild
their windows exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import ParamSpec

from memory.cutting import NEWEST_CUT_SHARE, cut_unit
from memory.delta import delta_contents
from memory.errors import BudgetTooSmallError, InvalidInputError
from memory.facts import summary_rules
from memory.hierarchy import _condensed_cache as _condensed_cache
from memory.hierarchy import condense as condense
from memory.models import (
    ContextMessage,
    ContextWindow,
    Message,
    ScoredMessage,
    Section,
    SectionUsage,
    Summary,
)
from memory.packing import (
    INTRO,
    SHORT_INTRO,
    fenced_summary,
    legacy_block,
    pack_block,
    reach,
)
from memory.retrieval import CONTEXT_WEIGHT, has_content, ranked
from memory.shares import DEFAULT_POLICY, DEFAULT_SHARES, QUERY_SHARES, AssemblyPolicy, Shares
from memory.spending import allocate, greedy, newest_run, unflatten
from memory.text import text_rules
from memory.thinking import TurnThinking, turn_thinking
from memory.tokens import HeuristicCounter, ScriptCounter, TokenCounter, message_cost
from memory.units import tool_units, turn_start

__all__ = ["ASSEMBLY_VERSION", "DEFAULT_POLICY", "DEFAULT_SHARES", "QUERY_SHARES",
           "AssemblyPolicy", "Shares", "assemble_context", "tool_units"]

ASSEMBLY_VERSION = 19  # 1: fixed shares, date-grouped block, fused order (before issue 12);
# 2: adaptive shares, reranked, dated lines; 3: summaries that do not all fit their share are
# condensed into one that does, so every window of 500 tokens or more carries the hierarchy;
# 4: turns two away count in the packing order (`reach`); idle summaries get the summary cap;
# a shorter intro to the retrieved block; 5: a long id (a UUID) is shown on its retrieved line
# by its tail (`memory.packing.shown_ids`); 6: so is one on a summary's line (`short_line_ids`),
# and an idle window's condensed summary fills its share (`memory.hierarchy.condense`);
# 7: turns of the window that retrieval quoted are shown as turns instead when that costs no
# retrieved line (`memory.spending.unflatten`); 6 could quote a whole short chat and leave a
# tool result out; a second result to an answered tool call is left out of the turns;
# 8: parallel calls of one message that share an id (some local models number calls per turn)
# keep a result each (7 kept the first only); 9: bodies the window holds as previews are
# shown whole, newest first, while together they cost at most half the budget
# (`memory.window.WholeBodies`); 10: a retrieved message with no text (an assistant turn that
# only made tool calls, found as a hit's neighbour) is not quoted: its line said nothing;
# 11: a message costs its tool calls too (ids, names, arguments) and a result its call id
# (`memory.tokens.message_cost`): 10 counted the text alone, and a window of file-writing
# calls went out dozens of times over its budget; 12: a newest turn larger than the budget is
# shown cut to fit (`memory.cutting.cut_unit`), not left out for older material; 13: a tool
# result that repeats a newer one of the same tool with a few lines changed is shown as a diff
# against it (`memory.delta.delta_contents`), and is not among `source_ids`; 14: a retrieved
# message's continuation line that could pass for a line of the block is indented, and the
# fence's tags are escaped in any case (`memory.packing.guard`): such a message is not among
# `source_ids` (its text is not there verbatim); 15: the running turn's tool steps carry the
# Anthropic thinking blocks stored with them, counted (`memory.thinking.turn_thinking`); a
# newest step too large with them is cut to leave them room (`_cut_newest`); 16: the user's
# message that opened the running turn is shown when the recent turns do not reach back to it
# and it fits (`memory.units.turn_start`): an autonomous agent's task; 17: tokens are counted
# by script (`memory.tokens.ScriptCounter`): 16 counted a CJK character as a quarter of a
# token, and windows in Japanese, Chinese, Hindi or Greek went out 2-4x over budget; and words
# and sentences are read in every script (`memory.text.text_rules`): a query in Russian or
# Chinese had no terms, so 16 left out every retrieved turn; a turn cut to fit is cut between
# characters a reader sees as one (`memory.cutting.grapheme_start`). ASCII text counts and
# reads as before, except that a few abbreviations ("z. B.", "ca." before a number) and a
# day's ordinal before a month ("15. April") no longer end a sentence; 18: condensing the
# hierarchy weighs a number said only in boilerplate (a log line's or a reply macro's form,
# said three times or more) as a slot of its form, not as a rare fact (`memory.facts.
# term_weights`, engine 13's rule for summaries); 19: a condensed hierarchy that retrieval and
# the recent turns left a tenth of the budget or more beside is condensed again into that room,
# on a grid of tenths, if it quotes every message it did (`_condensed_into`; 18 left 83% of
# a window with a query empty: the summary held to its tenth, and the recent run stopped at a
# tool result too large for what was left); and condensing follows engine 14's rules (a
# tool's recurring short field is boilerplate; no clause of numbers and dates alone is quoted;
# `memory.facts.engine14_on`).
P = ParamSpec("P")
CONDENSE_MIN_BUDGET = 500  # below this a window is the newest exchange and what answers it
# Version 16: the most the user's message before an agent's steps may take of the budget (a
# task of 3,400 tokens in a 4,000-token window left three steps and no summary).
OPENED_SHARE = 0.25


def assembly_counter(version: int) -> TokenCounter:
    """What a version counts with when the caller names no counter: serving and replay both
    ask here, so a window served under an older version replays with its own counts."""
    return ScriptCounter() if version >= 17 else HeuristicCounter()


def _summary_message(summary: Summary, counter: TokenCounter, short_ids: bool,
                     any_case: bool) -> ContextMessage:
    content = fenced_summary(summary, short_ids, any_case)
    return ContextMessage(
        role="system", content=content, source_ids=summary.quoted_ids, section="summary",
        tokens=counter.count_message("system", content),
    )


def _plain(message: Message, section: Section, counter: TokenCounter, tools: bool = True,
           shown: str | None = None) -> ContextMessage:
    """The message as it is, or as `shown` (a diff, version 13), which quotes nothing."""
    content = message.content if shown is None else shown
    return ContextMessage(
        role=message.role, content=content, source_ids=(message.id,) if shown is None else (),
        section=section,
        name=message.name, tool_call_id=message.tool_call_id, tool_calls=message.tool_calls,
        tokens=message_cost(counter, message if shown is None
                            else message.model_copy(update={"content": shown}), tools),
    )


def _cut_newest(unit: Sequence[Message], share: int,
                thinking: TurnThinking,
                counter: TokenCounter) -> list[ContextMessage] | None:
    """The newest turn cut to fit `share` (version 12). From version 15 a tool step is cut
    to leave room for its thinking, which goes with it: the API refuses the step without
    it, and a little less of a long result costs the model less (a user test: 193 of 196
    refused requests were steps cut to fit). Only thinking too large for the share itself
    is left out."""
    blocks = sum(thinking[m.id][1] for m in unit if m.id in thinking)
    if blocks and share > blocks:
        cut = cut_unit(unit, share - blocks, counter)
        if cut is not None:
            return [_with_thinking(shown, m.id, thinking)
                    for m, shown in zip(unit, cut, strict=True)]
    return cut_unit(unit, share, counter)


def _with_thinking(shown: ContextMessage, message_id: str,
                   thinking: TurnThinking) -> ContextMessage:
    """`shown` carrying the blocks stored with its message, counted (version 15)."""
    if message_id not in thinking:
        return shown
    blocks, cost = thinking[message_id]
    return shown.model_copy(update={"thinking": blocks, "tokens": shown.tokens + cost})


def _condensed_into(summaries: Sequence[Summary], condensed: ContextMessage, left: int,
                    step: int, counter: TokenCounter) -> tuple[ContextMessage, int]:
    """Version 19: the hierarchy condensed again into the room retrieval and the recent turns
    left, when that still quotes every message the smaller one did; with what is then left.

    The room is taken down to a multiple of `step` (a tenth of the budget), so a session's
    contexts share a few cached merges instead of paying one each (a review measured 165-267
    ms a context on a hierarchy of 8,000 tokens; now about 100 ms the first time, 2 ms after).
    A merge at a larger budget may choose other lines (58 of 405 did in a review's random
    trial), and a message the model saw a moment ago should not go for the sake of filling
    (a line may: the fuller summary can quote it by another clause)."""
    room = (left + condensed.tokens) // step * step
    fuller = condense(summaries, room, counter, short_ids=True, any_case=True) \
        if room > condensed.tokens else None
    if fuller is None or fuller.tokens <= condensed.tokens \
            or not set(condensed.source_ids) <= set(fuller.source_ids):
        return condensed, left
    return fuller, left - (fuller.tokens - condensed.tokens)


def _read_as_served(assemble: Callable[P, ContextWindow]) -> Callable[P, ContextWindow]:
    """Words and sentences read by the rules of the version assembled (`memory.text.
    text_rules`): every script from 17 on, ASCII before; and boilerplate's numbers weighed as
    slots (`memory.facts.summary_rules`) when the hierarchy is condensed from 18 on, and by
    engine 14's rules from 19 on. So an older window replays exactly."""
    @wraps(assemble)
    def read(*args: P.args, **kwargs: P.kwargs) -> ContextWindow:
        version = kwargs.get("version", ASSEMBLY_VERSION)
        served = version if isinstance(version, int) else 0
        with text_rules(scripts=served >= 17), summary_rules(engine13=served >= 18,
                                                             engine14=served >= 19):
            return assemble(*args, **kwargs)
    return read


@_read_as_served
def assemble_context(
    *,
    max_tokens: int,
    system: Sequence[Message] = (),
    summaries: Sequence[Summary] = (),
    recent: Sequence[Message] = (),
    retrieved: Sequence[ScoredMessage] = (),
    counter: TokenCounter | None = None,
    shares: Shares | None = None,
    query: str | None = None,
    policy: AssemblyPolicy = DEFAULT_POLICY,
    version: int = ASSEMBLY_VERSION,
) -> ContextWindow:
    """The window for one call. `retrieved` are the store's fused candidates as recorded;
    `query` (when given) reranks them and tells the adaptive shares whether to search.
    Deterministic: the same arguments always give the same window."""
    if max_tokens < 1:
        raise InvalidInputError("max_tokens", "must be at least 1")
    if version not in range(1, ASSEMBLY_VERSION + 1):
        raise InvalidInputError("version", f"must be 1 to {ASSEMBLY_VERSION}")
    counter = counter or assembly_counter(version)
    system_msgs = [_plain(m, "system", counter) for m in system]
    system_tokens = sum(m.tokens for m in system_msgs)
    if system_tokens > max_tokens:
        raise BudgetTooSmallError(max_tokens, system_tokens)
    remaining = max_tokens - system_tokens

    units = tool_units([m for m in recent if m.role != "system"], once=version >= 7,
                       per_call=version >= 8)
    # Costs only: the context messages are built for the units taken, at the end (a slice
    # offers several times more recent messages than a window shows).
    tools = version >= 11  # tool calls count toward the budget
    diffs = delta_contents(units, counter) if version >= 13 else {}

    def costs(upto: int) -> list[int]:
        return [sum(_plain(m, "recent", counter, tools, diffs.get(m.id)).tokens
                    if m.id in diffs else message_cost(counter, m, tools) for m in unit)
                for unit in units[:upto]]
    unit_cost = costs(len(units))
    thinking = turn_thinking(units, counter) if version >= 15 else {}
    extra = [sum(thinking[m.id][1] for m in unit if m.id in thinking) for unit in units]
    unit_cost = [cost + more for cost, more in zip(unit_cost, extra, strict=True)]
    summary_msgs = [_summary_message(s, counter, version >= 6, version >= 14)
                    for s in summaries]
    system_ids = {m.id for m in system}
    candidates = [c for c in retrieved if c.message.id not in system_ids
                  and (version < 10 or c.message.content.strip())]
    legacy = version == 1
    pairs: list[tuple[ScoredMessage, float]] = []
    if legacy or policy.rerank is None or not query:
        order = sorted(candidates, key=lambda c: -c.score)
    else:
        pairs = ranked(query, candidates, policy.rerank)
        order = [c for c, _ in pairs]
    searching = bool(order) and (legacy or query is None or has_content(query))
    order, pairs = (order, pairs) if searching else ([], [])

    needs = {"summary": sum(m.tokens for m in summary_msgs), "recent": sum(unit_cost)}
    idle = DEFAULT_SHARES if version < 4 else Shares(
        summary=policy.summary_cap, retrieved=0.0, recent=1.0 - policy.summary_cap)
    fixed = shares or (DEFAULT_SHARES if legacy else idle if not searching else None)
    if fixed is not None:
        needs["retrieved"] = 0 if not order else legacy_block(order, counter).tokens \
            if legacy else sum(counter.count(c.message.content) for c in order)
        alloc = allocate(needs, {"summary": fixed.summary, "retrieved": fixed.retrieved,
                                  "recent": fixed.recent}, remaining)
    else:  # adaptive, answering a query: retrieval takes all but a floor and a cap
        starts = [i for i, unit in enumerate(units) if unit[0].role == "user"]
        exchange = sum(unit_cost[starts[-1] if starts else max(len(units) - 1, 0):])
        alloc = {"summary": min(needs["summary"], int(remaining * policy.summary_cap)),
                 "recent": min(exchange, int(remaining * policy.recent_floor))}
        alloc["retrieved"] = remaining - alloc["summary"] - alloc["recent"]

    # Recent: a contiguous run of whole units, newest first; the newest unit is kept whenever it
    # fits at all, since it is usually the turn being answered.
    taken = newest_run(unit_cost, len(units), alloc["recent"], first_limit=remaining)
    used = sum(unit_cost[i] for i in taken)
    # Version 12: a newest turn that alone outgrew the budget is shown cut to fit, or, when
    # even that cannot be, left out while the turns before it may still be shown.
    outgrown = version >= 12 and bool(units) and not taken
    cut = _cut_newest(units[-1], int(remaining * NEWEST_CUT_SHARE), thinking, counter) \
        if outgrown else None
    newest = len(units) - 1 if outgrown else len(units)  # where a run of whole turns may start
    used += sum(m.tokens for m in cut or ())
    if outgrown and diffs:  # a cut turn is no base for diffs: against what is shown whole
        diffs = delta_contents(units[:newest], counter)
        unit_cost = [cost + more for cost, more in zip(costs(newest), extra, strict=False)] \
            + unit_cost[newest:]
    if outgrown:  # and the turns that asked for it, back to the user's, as far as they fit
        asked = max((i for i in range(newest) if units[i][0].role == "user"), default=newest)
        taken = newest_run(unit_cost, newest, remaining - used, remaining - used,
                           stop=lambda i: i < asked)
        used += sum(unit_cost[i] for i in taken)
    # Version 16: the user's message that opened the running turn, when the turns shown do not
    # reach back to it, in place of the oldest of them as far as it needs: an autonomous
    # agent's task, many steps back, was in 1% of its requests (a user test). Taken again by
    # a later refill, it costs nothing twice.
    opened = turn_start(units) if version >= 16 else None
    if opened is not None and (opened in taken or opened >= newest
                               or unit_cost[opened] > remaining * OPENED_SHARE):
        opened = None
    while opened is not None and unit_cost[opened] > remaining - used and len(taken) > 1:
        oldest = min(taken)  # the task before the oldest step shown; never the newest turn
        taken.remove(oldest)
        used -= unit_cost[oldest]
    pinned: tuple[int, ...] = ()
    if opened is not None and unit_cost[opened] <= remaining - used:
        used += unit_cost[opened]
        unit_cost = [0 if i == opened else cost for i, cost in enumerate(unit_cost)]
        pinned = (opened,)
    left = remaining - used

    # Summaries: newest first within their share (plus what recent left over), shown in order.
    summary_budget = min(left, alloc["summary"] + max(alloc["recent"] - used, 0))
    picked = greedy(list(reversed(range(len(summary_msgs)))), summary_budget,
                     lambda idx: sum(summary_msgs[i].tokens for i in idx))
    condensed: ContextMessage | None = None
    if version >= 3 and len(picked) < len(summary_msgs) and max_tokens >= CONDENSE_MIN_BUDGET:
        # Not every summary fits: one condensed summary of all of them does, so the window
        # carries the whole older conversation at the coarsest grain instead of its newest part.
        condensed = condense(summaries, summary_budget, counter, short_ids=version >= 6,
                             fill=version >= 6 and not searching, any_case=version >= 14)
        if condensed is not None:
            picked = []
    left -= sum(summary_msgs[i].tokens for i in picked) + (condensed.tokens if condensed else 0)

    # Retrieved: best first into one fenced block; messages already shown are skipped.
    shown_ids = {m.id for i in (*taken, *pinned) for m in units[i]}
    if cut:  # the cut turn's messages are shown (in part): retrieval does not quote them again
        shown_ids |= {m.id for m in units[-1]}
    fresh = [c for c in order if c.message.id not in shown_ids]
    if version >= 4 and pairs and policy.rerank is not None and policy.reach:
        fresh = reach([(c, s) for c, s in pairs if c.message.id not in shown_ids], candidates,
                      policy.reach, CONTEXT_WEIGHT if policy.rerank.context else 0.0,
                      int(left * policy.head), counter)
    def repack(items: list[ScoredMessage], budget: int
               ) -> tuple[ContextMessage | None, list[ScoredMessage]]:
        return pack_block(items, budget, counter, dated_lines=policy.dated_lines,
                          intro=SHORT_INTRO if version >= 4 else INTRO, short_ids=version >= 5,
                          guarded=version >= 14)

    if legacy:
        chosen = greedy(fresh, left, lambda items: legacy_block(items, counter).tokens)
        block = legacy_block(chosen, counter) if chosen else None
    else:
        block, chosen = repack(fresh, left)
    left -= block.tokens if block else 0

    if not legacy and shares is None:  # what retrieval left flows back: recent, then summaries
        def refill(start: int, budget: int) -> list[int]:
            """Recent turns from `start` back, until one retrieval quoted or `budget` is spent."""
            quoted = {c.message.id for c in chosen}
            return newest_run(unit_cost, start, budget, budget,
                              stop=lambda i: any(m.id in quoted for m in units[i]))

        more = refill(min(taken, default=newest), left)
        taken += more
        left -= sum(unit_cost[i] for i in more)
        space = left + (block.tokens if block else 0)
        better = None if version < 7 or block is None else unflatten(
            units, unit_cost, min(taken, default=newest), fresh, chosen, space, repack)
        if better is not None:
            more, block, chosen = better
            taken += more
            left = space - sum(unit_cost[i] for i in more) - (block.tokens if block else 0)
            more = refill(min(taken), left)  # and on back, as far as what is left pays
            taken += more
            left -= sum(unit_cost[i] for i in more)
        if condensed is not None:  # whole after all, if what is left pays for them
            if needs["summary"] <= left + condensed.tokens:
                left += condensed.tokens - needs["summary"]
                condensed, picked = None, list(range(len(summary_msgs)))
            elif version >= 19 and left >= remaining * policy.summary_cap:
                condensed, left = _condensed_into(summaries, condensed, left,
                                                  max(int(remaining * policy.summary_cap), 1),
                                                  counter)
        else:
            rest = [i for i in reversed(range(len(summary_msgs))) if i not in picked]
            extra = greedy(rest, left, lambda idx: sum(summary_msgs[i].tokens for i in idx))
            picked += extra
            left -= sum(summary_msgs[i].tokens for i in extra)

    recent_out = [_with_thinking(_plain(m, "recent", counter, tools, diffs.get(m.id)), m.id,
                                 thinking)
                  for index in sorted({*taken, *pinned}) for m in units[index]] + (cut or [])
    summary_out = [summary_msgs[i] for i in sorted(picked)] + ([condensed] if condensed else [])
    messages = (*system_msgs, *summary_out, *([block] if block else []), *recent_out)
    tokens = sum(m.tokens for m in messages)
    assert tokens <= max_tokens, "context assembly exceeded its budget"  # invariant 4
    usage = (
        SectionUsage(name="system", budget=system_tokens, tokens=system_tokens,
                     items=len(system_msgs)),
        SectionUsage(name="summary", budget=alloc["summary"],
                     tokens=sum(m.tokens for m in summary_out), items=len(summary_out)),
        SectionUsage(name="retrieved", budget=alloc["retrieved"],
                     tokens=block.tokens if block else 0, items=len(chosen)),
        SectionUsage(name="recent", budget=alloc["recent"],
                     tokens=sum(m.tokens for m in recent_out), items=len(recent_out)),
    )
    return ContextWindow(messages=messages, tokens=tokens, budget=max_tokens, sections=usage)
