"""The hybrid search in two statements (lexical ranks, then fused) returns exactly what the
single statement that joined them returned: same ids, seqs, scores and order, with and
without neighbours and time bounds. The single statement is taken as it was, with its `idf`
CTE left to the planner (which inlined it, computing numeric ln once per posting): the
materialized `idf` of today's BM25 leg must give the same floats, hence the same ranks."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pgvector import Vector

from memory.errors import InvalidInputError
from memory.models import Message
from memory.store.rows import row_to_message
from memory.store.search import (
    FUSED_AROUND,
    LEXICAL_CTES,
    RRF_K,
    VECTOR_AND_FUSED,
    lexical_params,
    neighbour_scores,
)
from memory.store.store import Store

assert "idf AS MATERIALIZED (" in LEXICAL_CTES
ONE_STATEMENT = ("WITH " + LEXICAL_CTES.replace("idf AS MATERIALIZED (", "idf AS (") + ", "
                 + VECTOR_AND_FUSED)
ONE_STATEMENT_AROUND = FUSED_AROUND.replace(
    FUSED_AROUND[FUSED_AROUND.index("WITH lex AS") : FUSED_AROUND.index("), near AS")],
    ONE_STATEMENT)

WORDS = ("parcel depot zeppelin refund invoice painting sunrise lake camping museum pottery "
         "violin support group adoption").split()


async def _one_statement(store: Store, session: str, text: str, vector: list[float], k: int,
                         neighbours: int, since: datetime | None, until: datetime | None
                         ) -> list[tuple[str, int | None, float]]:
    params = lexical_params("acme", session, text, k, since, until)
    params.update(rrf=RRF_K, q=Vector(np.asarray(vector, dtype=np.float32)), around=neighbours,
                  near_hits=None)
    sql = ONE_STATEMENT_AROUND if neighbours else ONE_STATEMENT
    async with store.scoped("acme") as conn:
        rows = await (await conn.execute(sql, params, prepare=False)).fetchall()
    hits = [(row, float(row["score"])) for row in rows if not row.get("extra")]
    if neighbours and hits:
        extras = [row for row in rows if row.get("extra")]
        hits.extend(zip(extras, neighbour_scores(
            [(int(r["seq"]), s) for r, s in hits], [int(r["seq"]) for r in extras],
            neighbours), strict=True))
    return [(row_to_message(row).id, row["seq"], score) for row, score in hits]


@pytest.mark.parametrize("neighbours", [0, 1, 2])
async def test_two_statements_return_what_one_did(store: Store, neighbours: int) -> None:
    rng = random.Random(neighbours)
    session = f"split-{uuid.uuid4()}"
    start = datetime(2024, 5, 1, tzinfo=UTC)
    messages = [Message(id=f"m{i}", role="user" if i % 2 else "assistant",
                        content=" ".join(rng.choices(WORDS, k=rng.randint(2, 9))),
                        created_at=start + timedelta(hours=i)) for i in range(300)]
    await store.append_messages("acme", session, messages)
    vectors = np.random.default_rng(neighbours).normal(size=(300, 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    await store.set_embeddings("acme", session, [(m.id, v.tolist()) for m, v in
                                                 zip(messages[:250], vectors, strict=False)])
    for text, k, since, until in [("parcel zeppelin refund", 20, None, None),
                                  ("painting sunrise at the lake", 40, None, None),
                                  ("support group", 10, start + timedelta(hours=50),
                                   start + timedelta(hours=200)),
                                  ("nothing matches this", 15, None, None)]:
        q = vectors[rng.randrange(300)].tolist()
        want = await _one_statement(store, session, text, q, k, neighbours, since, until)
        got = await store.search("acme", session, text, q, k, neighbours=neighbours,
                                 since=since, until=until)
        assert [(c.message.id, c.seq, c.score) for c in got] == want
        assert len(want) >= k


@pytest.mark.parametrize("neighbours", [1, 2])
async def test_only_the_best_hits_bring_neighbours(store: Store, neighbours: int) -> None:
    """With `neighbour_hits`, the hits are the same and the neighbours are those of the best
    that many hits alone, each at half the score of the hit nearest to it (of all hits)."""
    rng = random.Random(10 + neighbours)
    session = f"near-{uuid.uuid4()}"
    messages = [Message(id=f"m{i}", role="user",
                        content=" ".join(rng.choices(WORDS, k=rng.randint(2, 9))))
                for i in range(200)]
    await store.append_messages("acme", session, messages)
    vectors = np.random.default_rng(neighbours).normal(size=(200, 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    await store.set_embeddings("acme", session, [(m.id, v.tolist()) for m, v in
                                                 zip(messages, vectors, strict=True)])
    q = vectors[7].tolist()
    hits = await store.search("acme", session, "parcel zeppelin refund", q, 30)
    seqs = [(int(h.seq or 0), h.score) for h in hits]
    for best in (1, 5, 30):
        got = await store.search("acme", session, "parcel zeppelin refund", q, 30,
                                 neighbours=neighbours, neighbour_hits=best)
        assert [(c.message.id, c.score) for c in got[:len(hits)]] == \
            [(c.message.id, c.score) for c in hits]
        taken = {seq for seq, _ in seqs}
        near = sorted({seq + d for seq, _ in seqs[:best]
                       for d in range(-neighbours, neighbours + 1) if d} - taken)
        near = [n for n in near if 0 <= n < 200]
        want = {n: min(seqs, key=lambda hs: abs(hs[0] - n))[1] / 2 for n in near}
        extra = {int(c.seq or 0): c.score for c in got[len(hits):]}
        assert extra == pytest.approx(want)  # of two equally near, the better hit
        assert len(extra) <= 2 * neighbours * best
    every = await store.search("acme", session, "parcel zeppelin refund", q, 30,
                               neighbours=neighbours, neighbour_hits=None)
    assert [(c.message.id, c.score) for c in every] == [(c.message.id, c.score) for c in got]
    with pytest.raises(InvalidInputError, match="neighbour_hits"):
        await store.search("acme", session, "parcel", q, 30, neighbours=1, neighbour_hits=-1)
