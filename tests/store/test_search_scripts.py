"""Search in every script (migration 16, `longthread_search_text`): a CJK word inside a run of
CJK, an order id glued to CJK, to a Korean particle or to a right-to-left mark, NFD text by an
NFC query and the reverse, and a class inside a dotted path are found, by the session's BM25
leg (before and after the inverted index holds them, ranked alike) and by the tenant-wide
search; and ASCII text without dotted identifiers gets the vector it always had."""

from __future__ import annotations

import random
import re
import unicodedata
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import DictRow, dict_row

from longthread.locomo import default_path, load_samples
from memory.models import Message
from memory.store.indexing import INDEX_TERMS
from memory.store.migrations import MIGRATIONS, setup
from memory.store.store import Store
from tests.store.old_schema import database_at


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


PLANTED = [
    Message(id="zh", role="user", content="我们的订单RF-77310在上周三发货,但是还没有到。"),
    Message(id="ja", role="user", content="注文番号RF-77312の処理中です。よろしくお願いします。"),
    Message(id="ko", role="user", content="주문번호 RF-77314가 아직 도착하지 않았어요."),
    Message(id="he", role="user", content="ההזמנה RF-77318\u200f נשלחה אתמול לכתובת החדשה."),
    Message(id="de_nfd", role="user", content=nfd("Zoë Müller hat die Rechnung bezahlt.")),
    Message(id="de_nfc", role="user", content="Jürgen Weiß wartet noch auf die Lieferung."),
    Message(id="tb", role="user", content=(
        "Traceback (most recent call last):\n"
        '  File "/srv/app/store.py", line 212, in append\n'
        "    await cur.execute(query, params)\n"
        "psycopg.errors.DeadlockDetected: deadlock detected\n"
        "DETAIL:  Process 4242 waits for ShareLock on transaction 981.")),
    Message(id="tb2", role="user", content=(
        "Traceback (most recent call last):\n"
        '  File "/srv/app/fetch.py", line 88, in pull\n'
        "asyncio.exceptions.TimeoutError")),
]

# Messages that share characters, scripts and words with the planted ones, so a search that
# matched anything in the script, or every order id alike, would not put the right one first.
FILLER = [
    "订购单已经取消了,退款会在三天内到账。", "上周的发票已经发给您了。",
    "注文はキャンセルされました。番号をご確認ください。", "処方箋の番号を教えてください。",
    "배송 주소를 바꾸고 싶어요.", "번호를 다시 확인해 주세요.",
    "החשבונית נשלחה לכתובת הישנה.", "Die Rechnung für Herrn Weiss ist unterwegs.",
    "Muller and Zoe asked about the refund of order RF-10000 last week.",
    "Refunds RF-10001, RF-10002 and RF-10003 are closed.", "RF-10004 RF-10005",
    "The deadlock in the billing job was fixed on Monday; a timeout remains.",
    "Please resend the invoice for the parcel to Leeds.",
    "psycopg raised an error about a lock again, see the errors page.",
]

# (query, the message it must find first); each query in the other form than the text. Before
# migration 16, 12 of these 14 did not find their message first, in either path or across the
# tenant (주문번호, a word between spaces, and the whole dotted path did; they stay, so that
# nothing breaks them).
CASES = [
    ("订单", "zh"), ("发货", "zh"), ("処理", "ja"), ("注文番号", "ja"), ("주문번호", "ko"),
    ("RF-77310", "zh"), ("RF-77312", "ja"), ("RF-77314", "ko"), ("RF-77318", "he"),
    ("Zoë Müller", "de_nfd"), (nfd("Jürgen"), "de_nfc"),
    ("DeadlockDetected", "tb"), ("TimeoutError", "tb2"),
    ("psycopg.errors.DeadlockDetected", "tb"),
]


def _messages() -> list[Message]:
    filler = [Message(id=f"f{i}", role="assistant", content=text)
              for i, text in enumerate(FILLER)]
    # planted and filler interleaved, so no fact is first or last by position
    return [m for pair in zip(filler, PLANTED, strict=False) for m in pair] + filler[8:]


async def _ranks(store: Store, tenant: str, session: str) -> list[list[str]]:
    return [await store.lexical(tenant, session, query, k=10) for query, _ in CASES]


async def test_a_session_finds_each_fact_across_scripts_before_and_after_indexing(
    store: Store,
) -> None:
    tenant, session = f"scripts-{uuid.uuid4().hex[:8]}", "ticket-1"
    await store.append_messages(tenant, session, _messages())
    tail = await _ranks(store, tenant, session)  # nothing indexed: read from the vectors
    assert [(q, r[:1]) for (q, _), r in zip(CASES, tail, strict=True)] == [
        (q, [want]) for q, want in CASES]
    assert await store.index_terms(tenant, session) == len(_messages())
    indexed = await _ranks(store, tenant, session)
    assert indexed == tail
    # the hybrid search's BM25 leg is this one (no message has a vector yet, so the fused
    # ranks are the lexical ones)
    for query, want in CASES:
        hits = await store.search(tenant, session, query, [1.0] * 384, k=3)
        assert [h.message.id for h in hits][:1] == [want], query


async def test_the_tenant_search_finds_each_fact_across_scripts(store: Store) -> None:
    tenant = f"scripts-{uuid.uuid4().hex[:8]}"
    await store.append_messages(tenant, "ticket-1", _messages()[:10])
    await store.append_messages(tenant, "ticket-2", _messages()[10:])
    for session in ("ticket-1", "ticket-2"):
        await store.index_terms(tenant, session)
    where = {m.id: "ticket-1" for m in _messages()[:10]} | {
        m.id: "ticket-2" for m in _messages()[10:]}
    for query, want in CASES:
        hits = await store.search_tenant(tenant, query, 5)
        assert [(h.session, h.message.id) for h in hits][:1] == [(where[want], want)], query


async def test_cjk_runs_are_bigrams_and_ids_stand_alone(
    db: psycopg.AsyncConnection[DictRow],
) -> None:
    cases = {
        "我们的订单RF-77310在上周三发货": "我们 们的 的订 订单 RF-77310 在上 上周 周三 三发 发货",
        "注文番号ＲＦ－７７３１０の件": "注文 文番 番号 RF-77310 の件",
        "주문번호 RF-77314가": "주문 문번 번호 RF-77314 가",
        "RF-77318\u200f ok\u200bthen": "RF-77318 ok then",
        nfd("Zoë Müller"): "Zoë Müller",  # NFC, and Latin letters stay in their words
        "see os.path.join and e.g. a.m.": "see os.path.join and e.g. a.m. os path join",
    }
    for text, want in cases.items():
        cur = await db.execute("SELECT longthread_search_text(%s) AS t", (text,))
        assert await cur.fetchone() == {"t": want}, text


DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _dotted(text: str) -> bool:
    """Whether `text` holds a dotted identifier with a part of 3 or more characters."""
    return any(re.search(r"[A-Za-z0-9_]{3}", m.group()) for m in DOTTED.finditer(text))


ASCII_SENTENCES = [
    "I'll send the refund for order #4711 on Friday, 8 May 2023 -- at 10:30 a.m., okay?",
    "The parcel (tracking: AB-1234-XY) didn't arrive; e.g. the courier lost it.",
    "Email me at ana.k@example.net or call +44 20 7946 0958.",  # an email, not an identifier
    "Version v1.2.3 costs $3.14 and 50% off, i.e. half; U.S. customers pay VAT.",
    "we're running/walking ~ 12km/h -- don't @ me #blessed :)",
    "SELECT * FROM t WHERE x >= 10 AND y <> 'a'; rm -rf /tmp/x_y",
    "CamelCaseWord snake_case_word kebab-case-word ALLCAPS 42nd 3rd",
    "",
]


def _ascii_corpus() -> list[str]:
    rng = random.Random(16)
    alphabet = "abcdefghijkXYZ0123456789 .,;:-_'\"!?@#/()\n\t"
    texts = list(ASCII_SENTENCES)
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
              for _ in range(3000)]
    path: Path = default_path()
    if path.exists():  # LoCoMo, the English benchmark's conversations and questions
        for sample in load_samples(path):
            texts += [m["content"] for m in sample.messages if m["content"].isascii()]
            texts += [q["question"] for q in sample.questions if q["question"].isascii()]
    return texts


async def test_ascii_text_without_dotted_identifiers_keeps_its_vector(
    db: psycopg.AsyncConnection[DictRow],
) -> None:
    texts = _ascii_corpus()
    cur = await db.execute(
        "SELECT t, longthread_search_text(t) = t AS same,"
        " to_tsvector('english', longthread_search_text(t)) = to_tsvector('english', t)"
        " AS same_vector FROM unnest(%s::text[]) AS t", (texts,))
    rows = await cur.fetchall()
    plain = [r for r in rows if not _dotted(r["t"])]
    dotted = [r for r in rows if _dotted(r["t"])]
    assert len(plain) > 1000 and len(dotted) > 100  # both kinds were generated
    assert [r["t"] for r in plain if not (r["same"] and r["same_vector"])] == []
    # and a dotted identifier's parts are added: the text is not left as it was
    assert [r["t"] for r in dotted if r["same"]] == []


async def _one(conn: psycopg.AsyncConnection[DictRow], query: str,
               params: dict[str, object] | None = None) -> DictRow:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return row


_FRESH_POSTINGS = """
SELECT m.id, u.lexeme, coalesce(cardinality(u.positions), 1) AS tf, length(d.doc) AS doc_len
FROM messages m, LATERAL (SELECT longthread_indexed(m.tsv, m.created_at) AS doc) d,
     unnest(d.doc) AS u
WHERE m.seq < 3 ORDER BY 1, 2"""


async def test_the_migration_rewrites_stored_vectors_and_their_postings(pg_url: str) -> None:
    """An archive at version 15 with indexed messages in three scripts and one not indexed
    yet: after the migration each vector is the new one, the indexed messages' postings are
    what indexing them now writes, and the English message's postings did not change."""
    async with database_at(pg_url, 15, dim=3) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                         row_factory=dict_row) as conn:
            texts = ["我们的订单RF-77310在上周三发货", "psycopg.errors.DeadlockDetected: boom",
                     "The parcel for order 4711 is in Leeds.", "注文番号RF-77312の処理中です"]
            for seq, text in enumerate(texts):
                await conn.execute(
                    "INSERT INTO messages (tenant, session, id, seq, role, content, created_at)"
                    " VALUES ('acme', 's', %s, %s, 'user', %s, '2023-05-08T10:00:00Z')",
                    (f"m{seq}", seq, text))
            await conn.execute("INSERT INTO sessions (tenant, session, next_seq)"
                               " VALUES ('acme', 's', 3)")  # m3 is stored after the step
            indexed = await _one(conn, INDEX_TERMS, {
                "tenant": "acme", "session": "s", "limit": 10, "bytes": 1_000_000})
            assert indexed["n"] == 3
            await conn.execute("UPDATE sessions SET next_seq = 4")
            cur = await conn.execute("SELECT lexeme FROM message_terms WHERE id = 'm0'")
            assert "订单" not in {r["lexeme"] for r in await cur.fetchall()}  # the old way
            cur = await conn.execute("SELECT lexeme, tf, doc_len FROM message_terms"
                                     " WHERE id = 'm2' ORDER BY lexeme")
            english = await cur.fetchall()

            assert await setup(conn, 3) == len(MIGRATIONS)

            cur = await conn.execute("SELECT id, lexeme, tf, doc_len FROM message_terms"
                                     " ORDER BY 1, 2")
            postings = await cur.fetchall()
            cur = await conn.execute(_FRESH_POSTINGS)
            assert postings == await cur.fetchall()
            lexemes = {(r["id"], r["lexeme"]) for r in postings}
            assert {("m0", "订单"), ("m0", "-77310"), ("m1", "deadlockdetect")} <= lexemes
            assert not any(r["id"] == "m3" for r in postings)  # past the cursor: not yet
            cur = await conn.execute("SELECT lexeme, tf, doc_len FROM message_terms"
                                     " WHERE id = 'm2' ORDER BY lexeme")
            assert await cur.fetchall() == english
            tail = await _one(conn, "SELECT tsv @@ to_tsquery('english', '処理') AS hit"
                                    " FROM messages WHERE id = 'm3'")
            assert tail == {"hit": True}
            # and a message stored from now on gets the new vector
            await conn.execute(
                "INSERT INTO messages (tenant, session, id, seq, role, content)"
                " VALUES ('acme', 's', 'm4', 4, 'user', '주문번호 RF-77314가')")
            new = await _one(conn, "SELECT tsv::text AS v FROM messages WHERE id = 'm4'")
            assert "'번호'" in new["v"] and "'-77314'" in new["v"]


@pytest.mark.parametrize("length", [100_000, 300_000])
async def test_a_long_message_in_any_script_fits_a_text_vector(
    store: Store, length: int,
) -> None:
    """Bigrams make CJK text up to three times longer; the rewrite is capped, so a message
    of random ideographs (the most distinct lexemes a text can make) is still stored."""
    rng = random.Random(length)
    text = "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(length))
    dotted = " ".join(f"pkg{i}.module{i}.Class{i}" for i in range(length // 20))
    tenant = f"scripts-{uuid.uuid4().hex[:8]}"
    await store.append_messages(tenant, "long", [
        Message(id="cjk", role="user", content=text),
        Message(id="dotted", role="user", content=dotted)])
    assert await store.lexical(tenant, "long", text[:2], k=5) == ["cjk"]
    assert await store.lexical(tenant, "long", "Class1", k=5) == ["dotted"]
