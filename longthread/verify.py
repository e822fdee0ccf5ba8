"""`verify`: does a session's archive still say what was stored, compacted and served?

An auditor's user test (session 30) edited an archived message as the database's owner: `show`,
`why` and `export` printed the new text, and only a `replay` of a window that quoted it said
DIFFERS, without naming the message. Yet the store keeps what proves each part: a message's
digest, written when it was appended; a ledger record's covered hash, over the exact messages
it took out of the window; a served context's window digest. `verify` checks all three, from
the archive alone, and names what no longer matches:

- a message whose content (any field) no longer gives the digest stored with it;
- a ledger record whose covered messages, as the ledger rebuilds the window it was applied to,
  no longer give its covered hash, or are not there; an undo whose hash is not its target's;
- a served context whose window, rebuilt as `replay` rebuilds it, no longer has its digest.

What it cannot see: someone who rewrites a message and its digest and the records covering it
(the ledger is append-only to the application's role; its owner can drop that trigger). The
checks find damage and casual edits, not an owner who forges all of them consistently.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from longthread.audit import Archived, fold_ledger, rebuild
from memory.audit import CoveredHashes, ServedContext, window_digest
from memory.compaction import WindowState
from memory.errors import InvalidInputError
from memory.messages import message_digest
from memory.models import CompactionRecord, Message
from memory.store.store import Store
from memory.window import by_reference

__all__ = ["Finding", "VerifyReport", "ledger_findings", "verify_session"]


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["message", "record", "served"]
    ident: str  # the message id, the record id, or the served context's number
    problem: str


class VerifyReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str
    session: str
    messages: int  # how many of each were checked
    records: int
    served: int
    undigested: int = 0  # messages stored before digests were kept: not checkable
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings


async def verify_session(store: Store, tenant: str, session: str, *, served: bool = True,
                         progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check every message, ledger record and (with `served`) served context of one session;
    `progress(done, total)` follows the served contexts, the long part (each is rebuilt)."""
    # Read in the order things are made: served contexts, then the ledger, then messages.
    # All only grow, so what a context was built from, or a record covers, is in the reads
    # after it. Read last, a context served meanwhile was rebuilt from an archive read before
    # its turn, and reported as differing (review of session 31).
    contexts = [ServedContext.model_validate(doc) for doc in await store.served(
        tenant, session)] if served else []
    records = await store.ledger(tenant, session)
    rows = await store.digests(tenant, session)  # before the messages: a later append
    archived = await store.all_with_seq(tenant, session)  # then shows in these alone
    messages = [m for _, m in archived]
    if not messages:
        raise await store.missing(tenant, session)
    by_id = {m.id: m for m in messages}
    findings: list[Finding] = []
    changed: set[str] = set()
    undigested, expected = 0, 0
    for seq, ident, digest in rows:
        if seq != expected:  # rows deleted behind the application's back
            missing = f"turn {expected + 1}" + (f" to {seq}" if seq > expected + 1 else "")
            findings.append(Finding(kind="message", ident=ident, problem=(
                f"turn {seq + 1}: the archive holds no message at {missing} before it")))
        expected = seq + 1
        if digest is None:  # stored before digests were kept (migration 6)
            undigested += 1
        elif ident in by_id and digest not in _digests(by_id[ident]):
            changed.add(ident)
            findings.append(Finding(kind="message", ident=ident, problem=(
                f"turn {seq + 1}: its content no longer gives the digest stored when it was "
                "appended")))
    findings += ledger_findings([by_reference(m) for m in messages], records, changed)
    read = Archived(archived, records)  # every context rebuilt from these, not read again
    for done, context in enumerate(contexts, start=1):
        try:
            rebuilt = window_digest(await rebuild(store, tenant, session, context, read))
        except InvalidInputError as exc:  # reported: the archive lacks what it needs
            rebuilt = f"cannot be rebuilt: {exc}"
        if rebuilt != context.digest:
            why = rebuilt if rebuilt.startswith("cannot") else (
                "rebuilds to another window than the one recorded (its digest differs)")
            findings.append(Finding(kind="served", ident=str(context.seq), problem=(
                f"the context served after turn {context.turn} {why}")))
        if progress is not None:
            progress(done, len(contexts))
    return VerifyReport(tenant=tenant, session=session, messages=len(messages),
                        records=len(records), served=len(contexts), undigested=undigested,
                        findings=tuple(findings))


def _digests(message: Message) -> set[str]:
    """The digests a stored message may have been appended with. Postgres's jsonb writes a
    float of 1e16 or more in metadata as an integer (1.7e18 comes back 1700000000000000000),
    so such a message is also read with those integers as the floats they were sent as."""
    read = {message_digest(message)}
    if message.metadata:
        sent = message.model_copy(update={"metadata": _floats(message.metadata)})
        read.add(message_digest(sent))
    return read


def _floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**16:
        return float(value)
    return value


def ledger_findings(window_messages: Sequence[Message], records: Sequence[CompactionRecord],
                    changed: Collection[str] = ()) -> list[Finding]:
    """Fold the ledger over a session's messages (as its window holds them) as replay does,
    checking each record against the window it is applied to; `changed` names messages
    known to differ from their digests. `import` runs it on a file before storing anything.

    A covered hash is over the messages as the worker read them, with times in its database
    session's time zone, which need not be the reader's (PGTZ, a login's setting, a changed
    default, an export read elsewhere): a record matches if its messages give its hash as read
    here or with their times in some one zone (`memory.audit.CoveredHashes`)."""
    findings: list[Finding] = []
    hashes: dict[str, str] = {}
    zones = CoveredHashes()
    applying: list[CompactionRecord] = []  # the record being applied, for a fold that fails

    def check(state: WindowState, record: CompactionRecord) -> None:
        applying[:] = [record]
        hashes[record.id] = record.covered_hash
        if record.trigger == "undo":
            if record.undoes is not None and hashes.get(record.undoes) != record.covered_hash:
                findings.append(Finding(kind="record", ident=record.id, problem=(
                    f"its covered hash is not that of {record.undoes}, the record it undoes")))
            return
        covered = set(record.covered_ids)
        present = [m for m in state.messages if m.id in covered]
        if len(present) != len(covered):
            missing = sorted(covered - {m.id for m in present})
            findings.append(Finding(kind="record", ident=record.id, problem=(
                f"covers {missing[0]!r}, which is not in the window the ledger rebuilds")))
        elif not zones.match(present, record.covered_hash):
            named = sorted(covered.intersection(changed))
            because = f" (changed: {', '.join(named[:5])})" if named else ""
            findings.append(Finding(kind="record", ident=record.id, problem=(
                "the messages it covered do not give its covered hash" + because)))

    for n, record in enumerate(records):
        if record.seq != n:
            findings.append(Finding(kind="record", ident=record.id, problem=(
                f"its seq is {record.seq} at position {n} of the ledger")))
    try:
        fold_ledger(window_messages, records, before=check)
    except InvalidInputError as exc:  # reported, with the record it stopped at
        findings.append(Finding(kind="record", ident=applying[0].id, problem=(
            f"the ledger cannot be applied from this record on: {exc}")))
    return findings
