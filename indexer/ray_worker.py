"""What runs on a Ray worker: decode, thumbnail and embed one batch; one model per worker.

The driver (``ray_executor``) makes one :class:`EmbedWorker` per machine (per GPU where a
machine has GPUs) and sends it batches of :class:`Job`. The worker decodes with the same
code and limits as local indexing, so a bad file gets the same one-line reason; it sends
back the facts, the thumbnail's JPEG bytes and the vectors. It never touches the library.
This module imports no Ray: Ray wraps the class on the driver.
"""

from __future__ import annotations

import os
import platform
import socket
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from searchapp import __version__
from searchapp.config import Settings
from searchapp.decoder import decode_photo, hash_bytes, read_file
from searchapp.errors import ImageDecodeError
from searchapp.indexer.pipeline import decode_workers, model_lanes, model_threads
from searchapp.model import ImageEncoder, ModelSpec, load_embedder, prepare_pixels
from searchapp.model.device import device_and_precision
from searchapp.thumbnails import thumbnail_jpeg

# what must be the same on the driver and every worker: vectors and failure reasons
VERSIONED = ("torch", "open_clip_torch", "pillow", "numpy", "ray")
CHANGED_WHILE_READ = "the file changed while it was being indexed; the next run reads it again"


@dataclass(frozen=True)
class Job:
    """One file for a worker: its bytes, or the path where the worker reads it itself."""

    content_hash: str
    embed: bool  # its pixels go to the model (a new content)
    data: bytes | None = field(default=None, repr=False)
    path: str | None = None  # on the worker's machine (``--ray-shared-root``)


@dataclass(frozen=True)
class Facts:
    """A decoded photo's facts, as a row needs them (``stages.PhotoFacts``)."""

    width: int
    height: int
    format: str
    taken_at: float | None
    camera: str | None


@dataclass(frozen=True)
class Result:
    """One job done: ``reason`` when it failed; else its facts, thumbnail and vector row."""

    reason: str | None = None
    facts: Facts | None = None
    thumbnail: bytes = field(default=b"", repr=False)
    vector: int = -1  # row in the batch's vectors, -1 when not embedded


def software_versions() -> dict[str, str]:
    """The versions a worker must share with the driver (Python as major.minor)."""
    found = {"python": ".".join(platform.python_version_tuple()[:2]), "searchapp": __version__}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def version_mismatches(driver: dict[str, str], worker: dict[str, str]) -> list[str]:
    """``name X here, Y there`` for each version that differs."""
    return [
        f"{name} {driver[name]} here, {worker.get(name, 'not installed')} there"
        for name in driver
        if worker.get(name) != driver[name]
    ]


# what the driver ships: a checkpoint's bytes, a model folder's {file name: bytes}, or None
Weights = bytes | dict[str, bytes] | None


class EmbedWorker:
    """A Ray actor: one model, its lanes and decode threads on ``cpus`` cores (or a GPU)."""

    def __init__(self, settings: Settings, spec: ModelSpec, cpus: int) -> None:
        self.settings = settings
        self.spec = spec
        self.cpus = max(1, cpus)
        self.device, self.precision = device_and_precision(settings)
        self.lanes = model_lanes(settings, self.device, self.cpus)
        self._decoders = ThreadPoolExecutor(decode_workers(settings, self.cpus), "decode")
        self._lock = threading.Lock()
        self._encoder: ImageEncoder | None = None

    def facts(self, shared_roots: list[str]) -> dict:
        """Who this worker is, its versions, and the shared roots it cannot see."""
        return {
            "host": socket.gethostname(),
            "versions": software_versions(),
            "device": self.device,
            "precision": self.precision,
            "lanes": self.lanes,
            "missing_roots": [r for r in shared_roots if not os.path.isdir(r)],
        }

    def load(self, weights: Weights) -> str:
        """Build the model once, from the weights the driver shipped (if any)."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._build(weights)
        return f"{self.spec.model_id} on {self.device} in {self.precision}"

    def _build(self, weights: Weights) -> ImageEncoder:
        spec = self.spec
        settings = self.settings.with_overrides(
            torch_threads=model_threads(self.settings, self.cpus)
        )
        if weights is None:  # random or pixels: nothing to read
            return load_embedder(settings, announce=False, spec=spec)
        # the spec keeps its model id (the tag's, the file's digest, the schema); only the
        # source moves: a file, or the model's folder rebuilt here
        with tempfile.TemporaryDirectory(prefix="searchapp-weights-") as folder:
            if isinstance(weights, dict):
                for name, data in weights.items():
                    (Path(folder) / Path(name).name).write_bytes(data)
                here = f"local-dir:{folder}"
                local = replace(spec, weights=here, open_clip_name=here)
            else:
                path = Path(folder) / "checkpoint.safetensors"
                path.write_bytes(weights)
                local = replace(spec, weights_kind="file", weights=str(path))
            return load_embedder(settings, announce=False, spec=local)

    def process(self, jobs: list[Job]) -> tuple[list[Result], np.ndarray | None]:
        """Decode every job, make its thumbnail, embed the new contents in one batch."""
        decoded = list(self._decoders.map(self._decode, jobs))
        pixels = [p for _, p in decoded if p is not None]
        if not pixels:
            return [r for r, _ in decoded], None
        if self._encoder is None:
            raise RuntimeError("EmbedWorker.load() must run before process()")
        vectors = self._encoder.encode_prepared(np.stack(pixels))
        results, row = [], 0
        for result, p in decoded:
            if p is not None:
                result = replace(result, vector=row)
                row += 1
            results.append(result)
        return results, vectors

    def _decode(self, job: Job) -> tuple[Result, np.ndarray | None]:
        try:
            data = job.data if job.data is not None else read_file(job.path or "")
            if job.data is None and hash_bytes(data) != job.content_hash:
                return Result(reason=CHANGED_WHILE_READ), None
            photo = decode_photo(data, self.spec.preprocess.image_size, job.content_hash)
            thumb = thumbnail_jpeg(photo.image)
            pixels = prepare_pixels(photo.image, self.spec.preprocess) if job.embed else None
        except ImageDecodeError as err:
            return Result(reason=str(err)), None
        facts = Facts(photo.width, photo.height, photo.format, photo.taken_at, photo.camera)
        return Result(facts=facts, thumbnail=thumb), pixels
