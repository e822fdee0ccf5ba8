"""Seeded spans where what matters is rare and the rest is boilerplate, for bench/salience.py.

Written for session 30, from two user-test findings (a pasted job log whose summary quoted 31
"processed batch N ok" lines and none of 18 "ERROR ... refund issued twice" lines; a ticket
whose summary quoted a reply macro's ticket numbers). Not derived from LoCoMo. Every seed
draws its own mix: which routine and which rare line forms, their components, how often rare
lines come, how long each tool result is. Each rare line and each planted fact carries an
identifier no other line has, so "is it in the summary" has an exact answer.

- `log`: an agent tails a service log (tool results); a few lines are errors or warnings.
- `pasted`: the same kind of log, pasted by the user into the chat.
- `ticket`: a support ticket; the agent answers from reply macros with numbers, the customer
  chases with stock phrases, and three times says something that only this ticket holds.
"""
from __future__ import annotations

import random

from memory.models import Message, ToolCall

__all__ = ["FAMILIES", "span"]

FAMILIES = ("log", "pasted", "ticket")
COMPONENTS = ("billing", "ingest", "scheduler", "auth", "search", "export", "mailer", "cache",
              "gateway", "payments", "ledger", "thumbnails")
ROUTINE = (
    "{ts} INFO {c} processed batch {n} ok in {ms} ms",
    "{ts} DEBUG {c} heartbeat worker-{w} queue={q}",
    "{ts} INFO {c} request {hex} served status=200 bytes={n}",
    "{ts} INFO {c} cache hit ratio {p}% over {n} keys",
    "{ts} DEBUG {c} flushed {n} rows to segment {q}",
    "{ts} INFO {c} sync cursor advanced to {n}",
    "{ts} INFO {c} job {n} finished, next run in {q} s",
    "{ts} DEBUG {c} pool size {w}/{q}, idle {p}",
)
RARE = (
    "{ts} ERROR {c} refund issued twice for order {id}",
    "{ts} ERROR {c} payment capture timed out for invoice {id}",
    "{ts} WARN {c} customer {id} exceeded the rate limit",
    "{ts} ERROR {c} signature mismatch on webhook {id}",
    "{ts} FATAL {c} disk quota exceeded on volume {id}",
    "{ts} WARN {c} retry budget exhausted for job {id}",
    "{ts} ERROR {c} duplicate shipping label {id}",
    "{ts} ERROR {c} certificate for host {id} expired",
)
REMARKS = ("I checked the latest output; the workers look busy, I will keep watching.",
           "Nothing stands out at a glance, let me look at the next chunk.",
           "The throughput seems normal for this time of day.",
           "I'll tail the log again in a minute to see if anything changed.")
MACROS = (
    "I've checked order {n} and it is on its way to you.",
    "Your case number is {n}; we will update you within 24 hours.",
    "A refund of {n} EUR has been requested for you.",
    "Tracking shows a scan at hub {n} this morning.",
    "I have escalated this to our logistics team under reference {n}.",
    "Thank you for your patience, I am looking into order {n} now.",
)
CHASERS = ("Any news on order {n}?", "I'm still waiting, it has been {n} days now.",
           "Could you check again please? Order {n}.", "Thanks for the update.",
           "I paid {n} EUR for this and nothing has arrived.")
PLANTED = (
    "Please note the gate code for the courier is {id}, otherwise they cannot get in.",
    "The serial number printed under the device reads {id}.",
    "I will be abroad next month, so please send everything to my colleague {name} instead.",
    "The box arrived with a crushed corner and the seal marked {id} was broken.",
    "My bank says the chargeback reference is {id}, in case you need it.",
    "Please use my work address from now on, building {id} on the third floor.",
)
NAMES = ("Okonkwo", "Lindqvist", "Marchetti", "Tanaka", "Novak", "Haddad", "Ferreira", "Kowalski")


def _ident(rng: random.Random) -> str:
    letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
    return f"{letters}-{rng.randint(10_000, 99_999)}"


def _log_lines(rng: random.Random, step: int, count: int, routine: list[tuple[str, str]],
               rare: list[tuple[str, str]], rate: float, planted: list[str]) -> list[str]:
    lines = []
    for k in range(count):
        values = {"ts": f"2026-11-{3 + step // 10:02d}T{9 + step % 10:02d}:{k:02d}:"
                        f"{rng.randint(0, 59):02d}Z",
                  "n": rng.randint(1, 99_999), "ms": rng.randint(2, 900), "w": rng.randint(1, 16),
                  "q": rng.randint(0, 64), "p": rng.randint(50, 99),
                  "hex": f"{rng.getrandbits(48):012x}"}
        if rng.random() < rate:
            form, component = rng.choice(rare)
            ident = _ident(rng)
            planted.append(ident)
            lines.append(form.format(c=component, id=ident, **values))
        else:
            form, component = rng.choice(routine)
            lines.append(form.format(c=component, **values))
    return lines


def _log(rng: random.Random, pasted: bool) -> tuple[list[Message], list[str]]:
    routine = [(f, rng.choice(COMPONENTS)) for f in rng.sample(ROUTINE, rng.randint(3, 5))]
    rare = [(f, rng.choice(COMPONENTS)) for f in rng.sample(RARE, rng.randint(2, 3))]
    rate = rng.uniform(0.03, 0.08)
    planted: list[str] = []
    out = [Message(id="u0", role="user", content="Keep an eye on the service log and tell me "
                   "if anything goes wrong during the nightly run.")]
    for step in range(rng.randint(10, 14)):
        lines = _log_lines(rng, step, rng.randint(18, 32), routine, rare, rate, planted)
        if pasted:
            out.append(Message(id=f"p{step}", role="user",
                               content="Here is the next part of the log:\n" + "\n".join(lines)))
        else:
            out.append(Message(id=f"a{step}", role="assistant", content="", tool_calls=(
                ToolCall(id=f"c{step}", name="tail_log", arguments='{"lines": 30}'),)))
            out.append(Message(id=f"t{step}", role="tool", tool_call_id=f"c{step}",
                               content="\n".join(lines)))
        out.append(Message(id=f"r{step}", role="assistant", content=rng.choice(REMARKS)))
    return out, planted


def _ticket(rng: random.Random) -> tuple[list[Message], list[str]]:
    macros = rng.sample(MACROS, rng.randint(3, 5))
    chasers = rng.sample(CHASERS, 3)
    facts = rng.sample(PLANTED, 3)
    turns = rng.randint(160, 240)
    at = sorted(rng.sample(range(2, turns - 2, 2), 3))  # the customer's turns are even
    orders = [rng.randint(1_000, 99_999) for _ in range(rng.randint(1, 3))]
    planted: list[str] = []
    out: list[Message] = []
    for i in range(turns):
        # A macro's or a chaser's number: one of the ticket's orders, or an amount, a case or
        # hub number, a count of days.
        n = rng.choice(orders) if rng.random() < 0.5 else rng.randint(1, 99_999)
        if i % 2:
            out.append(Message(id=f"m{i}", role="assistant", name="Priya",
                               content=rng.choice(macros).format(n=n)))
            continue
        if i in at:
            ident, name = _ident(rng), rng.choice(NAMES)
            planted.append(name if "{name}" in facts[at.index(i)] else ident)
            text = facts[at.index(i)].format(id=ident, name=name)
        else:
            text = rng.choice(chasers).format(n=n)
        out.append(Message(id=f"m{i}", role="user", name="Ana", content=text))
    return out, planted


def span(family: str, seed: int) -> tuple[list[Message], list[str]]:
    """The conversation of one seed of a family, and the identifiers planted in it."""
    rng = random.Random(f"{family}/{seed}")
    if family == "ticket":
        return _ticket(rng)
    return _log(rng, pasted=family == "pasted")
