"""Which embedder a process uses, from plain settings values.

The worker (indexing) and the client (query embedding) must use the same model, so both
choose here. It takes values, not `Settings`, so `activities/` never imports the client.
"""

from __future__ import annotations

from activities.providers.embedders import (
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    local_embedder,
)
from memory.errors import InvalidInputError

__all__ = ["choose_embedder"]


def choose_embedder(kind: str, dim: int, openai_key: str | None, openai_model: str,
                    openai_base_url: str | None) -> Embedder:
    if kind == "openai":
        if openai_key is None and not openai_base_url:
            raise InvalidInputError("LONGTHREAD_OPENAI_API_KEY",
                                    "is required when openai is configured")
        return OpenAIEmbedder(openai_key or "not-needed", openai_model, dim, openai_base_url)
    if kind == "mpnet":
        from activities.providers.mpnet import MpnetEmbedder  # loads nothing until first use

        if dim != MpnetEmbedder.dim:
            raise InvalidInputError("LONGTHREAD_EMBEDDING_DIM",
                                    f"must be {MpnetEmbedder.dim} for the mpnet embedder")
        return MpnetEmbedder()
    if dim != LocalEmbedder.dim:
        raise InvalidInputError("LONGTHREAD_EMBEDDING_DIM",
                                f"must be {LocalEmbedder.dim} for the local embedder")
    return local_embedder()  # the worker's make_embedder makes the same choice
