"""The audit page (`longthread ui`) in a real headless Chromium, Debian's `chromium` driven by
selenium through Debian's `chromium-driver`, against the real embedded Temporal and Postgres.

The page runs in the test's event loop (beside the worker), so the blocking browser calls run
in a thread: the loop stays free to serve the page and to run the undo's workflow update.
`LONGTHREAD_UI_SCREENSHOT=docs/ui.png pytest tests/e2e/test_ui.py` refreshes the README's
screenshot; by default it goes to the test's temp dir, so a test run leaves the tree clean.
"""

from __future__ import annotations

import asyncio
import getpass
import http.client
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from temporalio.client import Client
from temporalio.worker import Worker

from longthread.client import Longthread
from longthread.ui import start
from memory.errors import InvalidInputError
from memory.store.store import Store
from worker.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# What this machine's closed network needs (see the machine notes): no background fetches.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1440,1000")
TENANT, TOKEN = "acme-corp", "s3cret-audit-token"
LINES = [  # a support ticket (customer, agent, ...): facts, a correction, decisions
    "Order 4711 arrived with a cracked lid on the blender jar.",
    "Sorry about that! Can you send a photo of the damage?",
    "Photo attached <script>document.title='pwned'</script> the crack runs along the rim.",
    "Thanks. Our policy allows a refund or a replacement within 30 days.",
    "A refund, please; I already bought another jar locally.",
    "Refund approved: 24 EUR to the original card.",
    "Shouldn't the 2 EUR shipping be refunded too?",
    "Correction: the refund is 26 EUR, because shipping is included.",
    "Great. When will the courier pick up the broken jar?",
    "Courier pickup is booked for Tuesday between 10:00 and 14:00.",
    "I work Tuesdays; could my neighbour Ana hand it over?",
    "Yes, any adult at the address can hand the parcel over.",
    "Please email me rather than calling; I rarely pick up the phone.",
    "Noted: email only from now on, at the address on the order.",
    "The courier label has not arrived in my inbox yet.",
    "Resent the label; it comes from shipping@example.com.",
    "Got the label, printed and taped to the box.",
    "The courier reports a failed pickup: nobody was home.",
    "Odd, Ana was home all morning. Can we try Thursday?",
    "Rebooked the pickup for Thursday, same time window.",
    "Thursday works; Ana will be there.",
    "Pickup confirmed at 10:42 on Thursday; the warehouse confirmed the crack.",
    "The refund still shows as pending on my card statement.",
    "Escalated to Dana in billing; 26 EUR issued, allow 3 to 5 business days.",
]
SCRIPT = LINES[2]  # hostile HTML in a message: shown as text, never run


@dataclass(frozen=True)
class Audited:
    session: str
    first: str  # the first compaction's record id
    second: str
    turn: int  # the turn a context was served after


async def _session_with_compactions(lt: Longthread) -> Audited:
    """Two manual compactions and one served context, with hostile HTML in a message."""
    session = f"ticket-{uuid.uuid4().hex[:8]}"
    conv = await lt.conversation(session, tenant=TENANT)

    def batch(start: int, n: int) -> list[dict[str, str]]:
        return [{"id": f"m{i}", "role": ("user", "assistant")[i % 2],
                 "content": LINES[i],
                 "created_at": f"2026-03-{1 + i // 10:02d}T09:{i % 60:02d}:00Z"}
                for i in range(start, start + n)]
    await conv.append_many(batch(0, 16))
    first = await conv.compact(preserve_recent=6, focus="refund")
    await conv.append_many(batch(16, 8))
    second = await conv.compact(preserve_recent=4)
    assert first is not None and second is not None
    await conv.context(query="How much is the refund?", max_tokens=600)  # the model's call
    await conv.context(max_tokens=120)  # and someone's later look at the same turn
    await conv.settle()
    return Audited(session, first.id, second.id, len(LINES))


def _get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
         body: str | None = None) -> tuple[int, dict[str, str], str]:
    """One raw request, redirects not followed, so status codes are what the server said."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, \
            response.read().decode()
    finally:
        conn.close()


async def get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
              body: str | None = None) -> tuple[int, dict[str, str], str]:
    return await asyncio.to_thread(_get, port, path, headers, method, body)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()


def _card_ids(driver: WebDriver) -> list[str]:
    return [c.find_element(By.CSS_SELECTOR, ".rid").text
            for c in driver.find_elements(By.CSS_SELECTOR, "ol.timeline .card")]


def _beside(left: WebElement, right: WebElement) -> bool:
    """Side by side: the left column ends before the right one starts, and they share a top."""
    return bool(left.location["x"] + left.size["width"] <= right.location["x"]
                and abs(left.location["y"] - right.location["y"]) < 5)


def _audit(driver: WebDriver, base: str, a: Audited, summary: str, shot: Path) -> None:
    """What an auditor does: sessions, ledger, a record, the window at a turn, then asks to
    undo the second compaction, stopping at the confirmation."""
    driver.get(f"{base}?token={TOKEN}")  # the first visit with the token leaves a cookie
    assert "token=" not in driver.current_url
    driver.find_element(By.LINK_TEXT, a.session).click()

    assert _card_ids(driver) == [a.first, a.second]
    card = driver.find_element(By.ID, f"rec-{a.first}")
    for shown in ("manual", "→", "extractive", "strategy", "prompt", "tokens"):
        assert shown in card.text, shown
    card.find_element(By.CSS_SELECTOR, "a.rid").click()

    covered = driver.find_element(By.CSS_SELECTOR, "section.covered")
    replaced = driver.find_element(By.CSS_SELECTOR, "section.replaced")
    assert SCRIPT in covered.text  # shown as text, never run
    assert "pwned" not in driver.title
    assert "m0" in covered.text and "m9" in covered.text
    # Hebrew or Arabic text lays out right to left, each message in its own direction
    texts = covered.find_elements(By.CSS_SELECTOR, "div.text")
    assert texts and all(t.get_attribute("dir") == "auto" for t in texts)
    assert " ".join(summary.split())[:60] in " ".join(replaced.text.split())
    assert _beside(covered, replaced)
    driver.save_screenshot(str(shot))

    driver.find_element(By.LINK_TEXT, a.session).click()
    driver.find_element(By.LINK_TEXT, str(a.turn)).click()
    assert f"Window at turn {a.turn}" in driver.find_element(By.TAG_NAME, "h1").text
    verdict = driver.find_element(By.ID, "verdict").text
    assert verdict.startswith("matches"), verdict
    assert len(driver.find_elements(By.CSS_SELECTOR, "ol.window li")) > 0
    # The newer look does not hide the model's call: its row, and this page, link to it.
    driver.find_element(By.CSS_SELECTOR, "#others a").click()
    assert "How much is the refund?" in driver.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert driver.find_element(By.ID, "verdict").text.startswith("matches")

    driver.find_element(By.LINK_TEXT, a.session).click()
    driver.find_element(By.CSS_SELECTOR, f"#rec-{a.second} a.undo").click()
    assert f"Undo {a.second}?" in driver.find_element(By.TAG_NAME, "h1").text


def _confirm_undo(driver: WebDriver, a: Audited) -> None:
    driver.find_element(By.ID, "confirm-undo").click()

    flash = driver.find_element(By.ID, "flash").text
    ids = _card_ids(driver)
    assert len(ids) == 3 and ids[-1] in flash
    undo = driver.find_element(By.ID, f"rec-{ids[-1]}")
    assert "undo" in undo.text and f"undo of {a.second}" in undo.text
    assert f"asked by\nui:{getpass.getuser()}" in undo.text, undo.text  # the page's process user
    assert f"undone by {ids[-1]}" in driver.find_element(By.ID, f"rec-{a.second}").text


async def test_audit_page_in_a_real_browser(lt: Longthread, worker: Worker, store: Store,
                                            browser: WebDriver, tmp_path: Path) -> None:
    audited = await _session_with_compactions(lt)
    first = (await store.ledger(TENANT, audited.session))[0]
    assert first.summary is not None
    shot = Path(os.environ.get("LONGTHREAD_UI_SCREENSHOT", tmp_path / "ui.png"))
    async with await start(port=free_port(), token=TOKEN, tenant=TENANT, lt=lt) as ui:
        await asyncio.to_thread(_audit, browser, ui.url, audited, first.summary.content,
                                shot)
        assert len(await store.ledger(TENANT, audited.session)) == 2  # asked, not yet confirmed
        await asyncio.to_thread(_confirm_undo, browser, audited)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    ledger = await store.ledger(TENANT, audited.session)
    assert [r.trigger for r in ledger] == ["manual", "manual", "undo"]
    assert ledger[-1].undoes == audited.second
    assert ledger[-1].actor == f"ui:{getpass.getuser()}"


async def test_beyond_loopback_needs_token_and_tenant(lt: Longthread) -> None:
    for token, tenant, missing in ((None, None, "--token, --tenant"), (TOKEN, None, "--tenant"),
                                   (None, TENANT, "--token")):
        with pytest.raises(InvalidInputError, match=f"missing: {missing}$"):
            await start(host="0.0.0.0", port=free_port(), token=token, tenant=tenant, lt=lt)
    env = {k: v for k, v in os.environ.items() if k != "LONGTHREAD_UI_TOKEN"}
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "longthread", "ui", "--host", "0.0.0.0",
                         "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--token" in proc.stderr and "--tenant" in proc.stderr


async def test_every_request_needs_the_token(lt: Longthread, worker: Worker,
                                             store: Store) -> None:
    audited = await _session_with_compactions(lt)
    page = f"/record?tenant={TENANT}&session={audited.session}&id={audited.first}"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with await start(host="0.0.0.0", port=free_port(), token=TOKEN, tenant=TENANT,
                           lt=lt) as ui:
        port = int(ui.url.rstrip("/").rpartition(":")[2])
        for path in ("/", page, "/static/ui.css", f"/?token=wrong-{TOKEN}"):
            status, _, _ = await get(port, path)
            assert status == 401, path
        status, _, body = await get(port, "/", headers={"Cookie": "longthread_ui_1=forged"})
        assert status == 401

        status, headers, _ = await get(port, f"/?token={TOKEN}&tenant={TENANT}")
        assert status == 303 and headers["location"] == f"/?tenant={TENANT}"
        cookie = headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        status, _, body = await get(port, "/", headers={"Cookie": cookie.partition(";")[0]})
        assert status == 200 and audited.session in body

        status, headers, body = await get(port, page, headers=bearer)
        assert status == 200
        assert "&lt;script&gt;document.title" in body and "<script" not in body
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none'
        status, _, _ = await get(port, "/?tenant=other-tenant", headers=bearer)
        assert status == 403

        # "Why was turn N summarized away?": the record that took it, and where it is now.
        why = f"/why?tenant={TENANT}&session={audited.session}&turn="
        status, _, body = await get(port, why + "3", headers=bearer)
        assert status == 200 and f">{audited.first}</a>" in body, body
        assert "out of the window since" in body and "Why: " in body
        assert "&lt;script&gt;document.title" in body and "<script" not in body  # m2 is hostile
        status, _, body = await get(port, why + "24", headers=bearer)
        assert status == 200 and "in the window verbatim; no compaction covered it" in body
        status, _, body = await get(port, why + "25", headers=bearer)
        assert status == 404 and "turns are 1 to 24" in body, (status, body)
        status, _, body = await get(port, why + "0", headers=bearer)
        assert status == 400 and "turn: must be from 1" in body, (status, body)
        # The same question by message id: turn 3 is m2.
        by_id = f"/why?tenant={TENANT}&session={audited.session}&id="
        status, _, again = await get(port, by_id + "m2", headers=bearer)
        _, _, third = await get(port, why + "3", headers=bearer)
        assert status == 200 and again == third
        status, _, body = await get(port, by_id + "m99", headers=bearer)
        assert status == 404 and "id: no message &#39;m99&#39;" in body, (status, body)
        status, _, body = await get(port, by_id + "a%0Ab", headers=bearer)
        assert status == 400 and "id: must not contain control characters" in body, body

        form = f"tenant={TENANT}&session={audited.session}&id={audited.second}"
        posted = {**bearer, "Content-Type": "application/x-www-form-urlencoded"}
        status, _, _ = await get(port, "/undo", method="POST", body=f"{form}&csrf=guess",
                                 headers=posted)
        assert status == 403
        assert len(await store.ledger(TENANT, audited.session)) == 2

        _, _, confirm = await get(port, f"/undo?{form}", headers=bearer)
        found = re.search(r'name="csrf" value="([^"]+)"', confirm)
        assert found is not None
        status, headers, _ = await get(port, "/undo", method="POST",
                                       body=f"{form}&csrf={found[1]}", headers=posted)
        assert status == 303 and "done=u3" in headers["location"]
        status, _, body = await get(port, "/undo", method="POST",
                                    body=f"{form}&csrf={found[1]}", headers=posted)
        assert status == 409 and "already undone" in body  # a stale second submit
    assert [r.trigger for r in await store.ledger(TENANT, audited.session)] == [
        "manual", "manual", "undo"]


async def test_an_undo_that_would_be_refused_is_explained_not_offered(
        lt: Longthread, worker: Worker, store: Store) -> None:
    """A compaction whose summary a later one merged cannot be undone first: the confirmation
    page says which undo comes first instead of a form the worker would refuse."""
    session = f"ticket-{uuid.uuid4().hex[:8]}"
    conv = await lt.conversation(session, tenant=TENANT)
    merging = None
    for n in range(10):  # the hierarchy folds level-1 summaries past its fanout (4)
        await conv.append_many([{"id": f"m{n}-{k}", "role": ("user", "assistant")[k % 2],
                                 "content": LINES[(6 * n + k) % len(LINES)]}
                                for k in range(6)])
        assert await conv.compact(preserve_recent=2) is not None
        ledger = await store.ledger(TENANT, session)
        merging = next((r for r in ledger if r.merged_summary is not None), None)
        if merging is not None:
            break
    assert merging is not None, "no compaction merged summaries in 10 rounds"
    folded = next(r for r in ledger if r.summary is not None
                  and r.summary.id in merging.removed_summary_ids)
    async with await start(port=free_port(), lt=lt) as ui:
        port = int(ui.url.rstrip("/").rpartition(":")[2])
        query = f"tenant={TENANT}&session={session}&id="
        status, _, body = await get(port, f"/undo?{query}{folded.id}")
        assert status == 200 and 'id="undo-refused"' in body, body
        assert f"undo {merging.id} first" in body and 'name="csrf"' not in body
        status, _, body = await get(port, f"/undo?{query}{merging.id}")  # the newest: offered
        assert status == 200 and 'name="csrf"' in body and "undo-refused" not in body
    with pytest.raises(InvalidInputError, match=f"undo {merging.id} first"):
        await conv.uncompact(folded.id)  # what the page would have run into
    assert len(await store.ledger(TENANT, session)) == len(ledger)


async def test_loopback_without_token_serves_only_loopback_hosts(lt: Longthread) -> None:
    async with await start(port=free_port(), lt=lt) as ui:
        port = int(ui.url.rstrip("/").rpartition(":")[2])
        status, _, body = await get(port, f"/?tenant={TENANT}")
        assert status == 200 and "Sessions of acme-corp" in body
        status, _, _ = await get(port, "/", headers={"Host": f"rebound.example:{port}"})
        assert status == 400
        status, _, body = await get(port, "/session?tenant=acme-corp&session=no-such-session")
        assert status == 404 and "no-such-session" in body


async def test_cli_serves_the_page_until_interrupted(
    worker: Worker, task_queue: str, migrated_url: str, client: Client, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "LONGTHREAD_TEMPORAL_ADDRESS": client.service_client.config.target_host,
           "LONGTHREAD_DATABASE_URL": migrated_url, "LONGTHREAD_TASK_QUEUE": task_queue,
           "LONGTHREAD_DATA_DIR": str(tmp_path / "nodata")}
    env.pop("LONGTHREAD_UI_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longthread", "ui", "--port", str(port), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        assert f"audit page on http://127.0.0.1:{port}/" in line
        status, _, body = await get(port, f"/?tenant={TENANT}")
        assert status == 200 and "Sessions of acme-corp" in body
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 120)  # a loaded 2-core box is slow
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()


def test_the_ui_token_comes_from_dot_env_and_the_environment_wins(tmp_path: Path) -> None:
    """LONGTHREAD_UI_TOKEN is read by `ui` itself, not by Settings; a .env in the working
    directory supplies it too (and other keys in it stay out of the process)."""
    (tmp_path / ".env").write_text("LONGTHREAD_UI_TOKEN=from-dot-env-123\n")
    env = {k: v for k, v in os.environ.items() if k != "LONGTHREAD_UI_TOKEN"}
    command = [sys.executable, "-m", "longthread", "ui", "--host", "0.0.0.0", "--port", "9"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "missing: --tenant" in done.stderr and "--token," not in done.stderr, done.stderr
    done = subprocess.run(command, cwd=tmp_path, env={**env, "LONGTHREAD_UI_TOKEN": "short"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--token: must be at least 8 characters" in done.stderr
    (tmp_path / ".env").unlink()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "missing: --token, --tenant" in done.stderr, done.stderr
