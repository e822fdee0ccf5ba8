"""The opt-in mpnet embedder: assembled from its five PyPI parts, int8 on onnxruntime, and
served end to end by a worker and a client whose archive was created for 768 dimensions."""

from __future__ import annotations

import importlib.metadata
import math
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from activities.conversation import ConversationActivities
from activities.providers import mpnet
from activities.providers.choose import choose_embedder
from activities.providers.mpnet import MpnetEmbedder
from longthread.client import Longthread
from memory.errors import InvalidInputError
from memory.store.db import open_pool
from memory.store.migrations import MIGRATIONS, setup
from memory.store.roles import ensure_schema
from memory.store.store import Store
from tests.store.old_schema import database_at
from worker.main import build_worker
from worker.settings import Settings

QUERIES = {  # a question, and the one text of DOCS that answers it in other words
    "Who got a new dog?": "Caroline adopted a puppy from the shelter last week.",
    "When is the pottery class?": "Melanie signed up for ceramics lessons on Thursday evenings.",
    "Is my refund coming?": "We will pay back the 10 euro difference to your card.",
    "Where is the parcel stuck?": "The delivery is held at the Leeds depot.",
}
DOCS = [*QUERIES.values(), "The stock market fell sharply today.",
        "def f(x):\n    return x + 1", "東京で新しい仕事を始めました。", "", "ok"]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def mp() -> MpnetEmbedder:
    embedder = MpnetEmbedder()
    embedder.model()
    return embedder


def test_vectors_are_unit_768_and_rank_by_meaning(mp: MpnetEmbedder) -> None:
    docs = mp.embed_sync(DOCS)
    assert len(docs) == len(DOCS) and all(len(v) == mp.dim == 768 for v in docs)
    assert all(math.isclose(math.sqrt(_cos(v, v)), 1.0, abs_tol=1e-5) for v in docs)
    for question, answer in QUERIES.items():
        query = mp.embed_query_sync(question)
        best = max(range(len(DOCS)), key=lambda i: _cos(query, docs[i]))
        assert DOCS[best] == answer, question


def test_the_int8_model_ranks_as_the_published_float_model_does(mp: MpnetEmbedder) -> None:
    """int8 moves mpnet's vectors more than MiniLM's (cosine ~0.87 to float32), so what
    must hold is the ranking: the same best document for every question."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(mpnet.model_folder()), device="cpu")
    floats = reference.encode(DOCS + list(QUERIES), normalize_embeddings=True).tolist()
    int8 = mp.embed_sync(DOCS + list(QUERIES))
    for q in range(len(DOCS), len(DOCS) + len(QUERIES)):
        def best(vectors: list[list[float]], q: int = q) -> int:
            return max(range(len(DOCS)), key=lambda i: _cos(vectors[q], vectors[i]))
        assert best(int8) == best(floats)
    mean = sum(_cos(a, b) for a, b in zip(int8, floats, strict=True)) / len(int8)
    assert mean >= 0.8


def test_a_text_gets_the_same_vector_alone_or_in_any_batch(mp: MpnetEmbedder) -> None:
    batched = mp.embed_sync(DOCS)
    reverse = mp.embed_sync(DOCS[::-1])[::-1]
    for text, in_batch, in_reverse in zip(DOCS, batched, reverse, strict=True):
        assert _cos(mp.embed_query_sync(text), in_batch) > 0.9999, text
        assert _cos(in_reverse, in_batch) > 0.9999, text


def test_unpacked_and_built_once(mp: MpnetEmbedder) -> None:
    folder = mpnet.model_folder()
    built = mpnet.int8_file(folder)
    assert mp.model().file == built and mpnet.RECIPE in built.name
    stamps = (folder.stat().st_mtime_ns, built.stat().st_mtime_ns)
    assert mpnet.model_folder() == folder and mpnet.int8_file(folder) == built
    assert (folder.stat().st_mtime_ns, built.stat().st_mtime_ns) == stamps
    assert not [p for p in built.parent.iterdir() if p.name.startswith("tmp")]


def test_a_build_waits_for_another_process_building_and_then_uses_its_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers starting together: the one holding the build lock builds, the others wait
    and then find the model built. The build itself is a stub here: the lock is the subject."""
    from filelock import FileLock

    monkeypatch.setenv("LONGTHREAD_MODEL_CACHE", str(tmp_path))
    builds: list[Path] = []

    def build(folder: Path, target: Path) -> None:
        builds.append(target)
        target.write_bytes(b"built here")

    monkeypatch.setattr(mpnet, "build_int8", build)
    folder = tmp_path / "all-mpnet-base-v2-test"
    with ThreadPoolExecutor(1) as pool:
        with FileLock(tmp_path / "mpnet.lock", timeout=10):  # another process is building
            waiting = pool.submit(mpnet.int8_file, folder)
            time.sleep(0.5)
            assert not waiting.done()
            target = mpnet.int8_path(folder)
            target.write_bytes(b"built by the other")  # ... and finishes
        assert waiting.result(timeout=60) == target
    assert builds == [] and target.read_bytes() == b"built by the other"
    # With nothing built and nobody else building, it builds, once.
    other = tmp_path / "all-mpnet-base-v2-other"
    built = mpnet.int8_file(other)
    assert builds == [built] and mpnet.int8_file(other) == built and len(builds) == 1


def test_a_missing_part_names_the_setting_and_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGTHREAD_MODEL_CACHE", str(tmp_path))
    real = importlib.metadata.distribution

    def without_part_3(name: str) -> importlib.metadata.Distribution:
        if name == mpnet.PARTS[2]:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_part_3)
    with pytest.raises(InvalidInputError, match=r"^LONGTHREAD_EMBEDDER: .*longthread\[mpnet\]"):
        mpnet.model_folder()
    assert list(tmp_path.iterdir()) == []


def test_settings_pick_768_dimensions_and_refuse_others() -> None:
    assert Settings(embedder="mpnet").dimensions == 768
    assert Settings().dimensions == 384 and Settings(embedding_dim=256).dimensions == 256
    assert isinstance(choose_embedder("mpnet", 768, None, "", None), MpnetEmbedder)
    with pytest.raises(InvalidInputError, match=r"^LONGTHREAD_EMBEDDING_DIM: must be 768"):
        choose_embedder("mpnet", 384, None, "", None)
    with pytest.raises(InvalidInputError, match=r"^LONGTHREAD_EMBEDDING_DIM: must be 384"):
        choose_embedder("local", 768, None, "", None)


@pytest.fixture
async def store_768(pg_url: str) -> AsyncIterator[tuple[Store, str]]:
    """A fresh archive created for mpnet's 768 dimensions (the suite's own is 384)."""
    async with database_at(pg_url, len(MIGRATIONS), dim=768) as url:
        pool = await open_pool(url)
        try:
            yield Store(pool), url
        finally:
            await pool.close()


async def test_a_worker_and_client_on_mpnet_find_a_message_by_meaning(
        client: Client, store_768: tuple[Store, str], mp: MpnetEmbedder) -> None:
    store, url = store_768
    queue = f"test-{uuid.uuid4()}"
    lt = Longthread(client, Settings(task_queue=queue, embedder="mpnet"), store=store,
                    embedder=mp)
    async with build_worker(client, queue, ConversationActivities(store, mp).all()):
        conv = await lt.conversation("mpnet", tenant="acme")
        await conv.append_many([{"id": f"d{i}", "role": "user", "content": text}
                                for i, text in enumerate(DOCS) if text])
        await conv.settle()
        for question, answer in QUERIES.items():
            # No word of the question is in its answer: only the vector leg can find it.
            (top, *_) = await conv.search(question, k=3)
            assert top.message.content == answer, question
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
        assert await setup(db, 768) == len(MIGRATIONS)
        with pytest.raises(InvalidInputError, match="768-dimensional"):
            await setup(db, 384)  # a MiniLM worker is refused this archive
        cur = await db.execute("SELECT count(*) FILTER (WHERE embedding IS NULL),"
                               " min(vector_dims(embedding)) FROM messages")
        assert await cur.fetchone() == (0, 768)
    # ... also when the schema is current and nothing migrates (a worker's start) ...
    assert await ensure_schema(url, 768) == len(MIGRATIONS)
    with pytest.raises(InvalidInputError, match=r"^embedding_dim: .*768-dimensional"):
        await ensure_schema(url, 384)
    # ... and a client whose settings make other vectors is refused before its first query.
    minilm = Longthread(client, Settings(task_queue=queue, database_url=url))
    try:
        await minilm.store()
        with pytest.raises(InvalidInputError, match=r"^embedding_dim: the archive was created "
                           r"for 768-dimensional embeddings, not 384 \(LONGTHREAD_EMBEDDER"):
            minilm.embedder()
    finally:
        await minilm.close()
