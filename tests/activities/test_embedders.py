"""The ONNX MiniLM embedder gives the sentence-transformers MiniLM's vectors, only faster.

Stored vectors and query vectors may come from different builds of the model (a worker with
the ONNX wheels, a client without), so the two must agree closely on any text, not just on
average: short and long, truncated, code, other scripts, empty.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from activities.providers.embedders import (
    LocalEmbedder,
    OnnxMiniLMEmbedder,
    local_embedder,
)

pytestmark = pytest.mark.skipif(not OnnxMiniLMEmbedder.available(),
                                reason="the ONNX MiniLM wheels are not installed")

SAMPLE = [
    "Hi there. My order 4711 has not arrived yet.",
    "Sorry to hear that. The parcel is stuck in Leeds.",
    "We decided to resend by express on 2023-05-09. Tracking is ZX-99.",
    "I paid 39.99 but the invoice says 49.99. Please refund the difference.",
    "Wow, Caroline!",
    "ok",
    "",
    "Caroline went to the LGBTQ support group on 7 May 2023 and said it was powerful.",
    "Melanie is planning a camping trip with her kids to the mountains next month.",
    "def f(x):\n    return {k: v for k, v in x.items() if v is not None}",
    "SELECT id, content FROM messages WHERE session = $1 ORDER BY seq DESC LIMIT 20;",
    "Traceback (most recent call last): File \"app.py\", line 3, in <module> KeyError: 'id'",
    "Die Lieferung kommt morgen früh, sagt der Kundendienst.",
    "東京で新しい仕事を始めました。",
    "émojis 🎉🎉 and accents: naïve café résumé",
    "   leading and trailing spaces   ",
    "A" * 50,
    # Longer than 256 word pieces: both builds must truncate at the same place.
    " ".join(f"The meeting about budget item {i} moved to Friday afternoon." for i in range(60)),
    "What did Caroline research after the adoption agency interview?",
    "When is Melanie going to the pottery class?",
]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def onnx() -> OnnxMiniLMEmbedder:
    embedder = OnnxMiniLMEmbedder()
    embedder.model()
    return embedder


def test_vectors_agree_with_sentence_transformers(onnx: OnnxMiniLMEmbedder) -> None:
    # Built here, not taken from conftest's `embedder`: that one is whatever the product picks.
    torch_minilm = LocalEmbedder()
    assert type(torch_minilm.model()).__name__ == "SentenceTransformer"
    new = onnx.embed_sync(SAMPLE)
    old = torch_minilm.embed_sync(SAMPLE)
    assert len(new) == len(SAMPLE) and all(len(v) == onnx.dim == 384 for v in new)
    for text, a, b in zip(SAMPLE, new, old, strict=True):
        assert math.isclose(math.sqrt(_cos(a, a)), 1.0, abs_tol=1e-5)
        assert _cos(a, b) >= 0.99, text


def test_a_text_gets_the_same_vector_alone_or_in_any_batch(onnx: OnnxMiniLMEmbedder) -> None:
    """Sorting and per-batch padding are invisible: order is kept, padding is masked out."""
    batched = onnx.embed_sync(SAMPLE)
    reversed_batch = onnx.embed_sync(SAMPLE[::-1])[::-1]
    for text, in_batch, in_reverse in zip(SAMPLE, batched, reversed_batch, strict=True):
        (alone,) = onnx.embed_sync([text])
        assert _cos(alone, in_batch) > 0.9999, text
        assert _cos(in_reverse, in_batch) > 0.9999, text


async def test_async_paths_match_and_empty_input_is_empty(onnx: OnnxMiniLMEmbedder) -> None:
    assert await onnx.embed([]) == []
    vectors, query = await asyncio.gather(onnx.embed(SAMPLE[:3]), onnx.embed_query(SAMPLE[0]))
    assert _cos(query, vectors[0]) > 0.9999
    assert vectors == onnx.embed_sync(SAMPLE[:3])


def test_local_embedder_prefers_onnx_when_it_is_installed() -> None:
    chosen = local_embedder()
    assert isinstance(chosen, OnnxMiniLMEmbedder)
    assert chosen.dim == LocalEmbedder.dim
