"""`verify` reads the archive once, in the order things are made (served contexts, the ledger,
messages), so a session in use while it runs is not reported as tampered with."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from longthread.audit import rebuild
from longthread.verify import verify_session
from memory.audit import ServedContext, window_digest
from memory.models import Message
from memory.store.store import Store


async def _serve(store: Store, session: str, turn: int) -> None:
    context = ServedContext(seq=0, turn=turn, query=None, max_tokens=500, tokens=0,
                            source_ids=(), digest="", ledger_seq=0, shares=None,
                            assembly_version=18)
    window = await rebuild(store, "acme", session, context)
    await store.record_served("acme", session, context.model_copy(
        update={"digest": window_digest(window), "tokens": window.tokens}))


async def test_a_context_served_while_verify_runs_is_not_a_finding(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of session 31: a message appended and a context served between verify's read of
    the messages and its read of the served contexts was rebuilt from the shorter archive and
    reported as differing; a second run on the quiet session said OK."""
    session = f"verify-{uuid.uuid4()}"
    await store.append_messages("acme", session, [
        Message(id=f"m{i}", role=("user", "assistant")[i % 2], content=f"Step {i} is done.")
        for i in range(40)])
    await _serve(store, session, 40)
    ledger = store.ledger
    meanwhile: list[bool] = []

    async def in_use(*args: Any, **kwargs: Any) -> Any:
        if not meanwhile:  # the session goes on while verify reads it
            meanwhile.append(True)
            await store.append_messages("acme", session, [
                Message(id="m40", role="user", content="One more step.")])
            await _serve(store, session, 41)
        return await ledger(*args, **kwargs)

    monkeypatch.setattr(store, "ledger", in_use)
    report = await verify_session(store, "acme", session)
    assert meanwhile and report.ok, report.findings
    monkeypatch.undo()
    again = await verify_session(store, "acme", session)  # both contexts, quiet: both match
    assert again.ok and again.served == 2 and again.messages == 41
