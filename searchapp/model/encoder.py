"""The encoder interface, and MobileCLIP behind it: pixels and strings in, unit vectors out."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from searchapp.config import Settings
from searchapp.model.device import device_and_precision, set_torch_threads
from searchapp.model.guard import ForwardGuard
from searchapp.model.network import create_network
from searchapp.model.preprocess import PreprocessConfig, prepare_pixels
from searchapp.model.spec import ModelSpec, resolve_spec, warn_if_meaningless
from searchapp.model.traced import load_cached, save_towers

TEXT_THREADS = 1


class ImageEncoder(Protocol):
    """What the indexer and search need from an encoder."""

    model_id: str
    dim: int
    device: str
    precision: str
    preprocess_config: PreprocessConfig

    def prepare(self, image: Image.Image) -> np.ndarray:
        """An RGB image -> the model's input, float32 [3, H, W] (runs on decode threads)."""
        ...

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """Prepared inputs [N, 3, H, W] -> float32 [N, dim], L2-normalized."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images -> float32 [N, dim], L2-normalized (prepare, then encode)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> float32 [N, dim], L2-normalized, comparable with the images'."""
        ...

    def start_loading(self) -> None:
        """Begin loading the weights, if not loaded yet, without waiting for them."""
        ...


class ClipEmbedder:
    """A loaded MobileCLIP model. Thread-safe: on the CPU image batches may run in
    parallel (the indexer's model lanes); text calls, and every pass off the CPU, are
    serialized. ``device`` and ``precision`` are what it runs in (checked before loading)."""

    def __init__(
        self, settings: Settings, spec: ModelSpec | None = None, *, announce: bool = True
    ) -> None:
        import torch

        self.settings = settings
        self.spec = spec or resolve_spec(settings)
        self.model_id = self.spec.model_id
        self.preprocess_config = self.spec.preprocess
        self.device, self.precision = device_and_precision(settings)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self._lock = threading.Lock()
        self._guard = ForwardGuard(self.device)
        self.images_encoded = 0  # counts model calls, for tests and progress
        cached = load_cached(settings, self.spec, self.device, self.precision)
        self.traced = cached is not None  # the towers came from the cache (model/traced.py)
        if cached is not None:
            self.model, self.tokenizer, self.dim = cached
            if announce:
                warn_if_meaningless(self.spec)
            return
        self.model, self.tokenizer = self._load(announce)
        # measured: an hf-hub:/local-dir: model may differ from its architecture's config
        self.dim = int(self.encode_texts(["a photo"]).shape[1])

    @property
    def random_weights(self) -> bool:
        return self.spec.random_weights

    def keep_traced(self) -> bool:
        """Keep this model's towers in the cache for later processes; True if written now."""
        if self.traced:
            return False
        return save_towers(
            self.model, self.tokenizer, self.settings, self.spec, self.device, self.precision
        )

    def describe(self) -> str:
        weights = self.spec.weights or "random init"
        return f"{self.spec.model} ({weights}) on {self.device}, {self.precision}"

    def _load(self, announce: bool):  # noqa: ANN202 - torch types stay inside this package
        import open_clip
        import torch
        from timm.utils import reparameterize_model

        model = create_network(self.spec, announce=announce)
        # fuse MobileOne/FastViT branches into single convs: same function, faster
        model = reparameterize_model(model, inplace=True)  # no second copy held at load
        model.to(self.device)
        if self.device == "cpu":
            model = model.to(memory_format=torch.channels_last)
            if self.precision == "bf16":
                # bf16 weights beat autocast by ~20% (no per-call casts) and halve memory;
                # both towers stay within 1e-4 cosine of fp32
                model = model.to(torch.bfloat16)
        elif self.precision == "fp16":
            model = model.half()
        return model, open_clip.get_tokenizer(self.spec.open_clip_name)

    # ------------------------------------------------------------ encoding
    def prepare(self, image: Image.Image) -> np.ndarray:
        """Resize/crop one image to uint8 HxWx3; safe to call from any thread."""
        return prepare_pixels(image, self.preprocess_config)

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] from :meth:`prepare` -> float32 [N, dim], L2-normalized.

        A batch the GPU has no memory for is embedded in halves (:class:`ForwardGuard`).
        """
        vectors = self._guard.images(self._encode_batch, pixels)
        with self._lock:  # not inside a pass: texts take this lock, then the pass's
            self.images_encoded += len(pixels)
        return vectors

    def _encode_batch(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        cfg = self.preprocess_config
        # on the CPU no lock: the indexer runs batches in parallel lanes (re-entrant passes)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)
            x = (x - mean) / std
            if self.device == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            feats = self._run(self.model.encode_image, x)
        return unit_rows(feats)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_prepared(np.stack([self.prepare(im) for im in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> float32 [N, dim], L2-normalized.

        On CPU a query runs on one thread: one short sequence gains little from more, and
        OpenMP threads waiting on busy cores (an indexer next door) multiply the latency.
        """
        import torch

        with self._lock, self._guard.serial, torch.inference_mode():
            threads = set_torch_threads(TEXT_THREADS) if self.device == "cpu" else 0
            try:
                tokens = self.tokenizer(list(texts)).to(self.device)
                feats = self.model.encode_text(tokens).float()
            finally:
                if threads:
                    set_torch_threads(threads)
        return unit_rows(feats)

    def start_loading(self) -> None:
        """Nothing to do: this embedder loads its model when it is made."""

    def _run(self, fn, x):  # noqa: ANN001, ANN202
        import torch

        if self.precision == "bf16" and self.device == "cpu":
            return fn(x.to(torch.bfloat16)).float()
        if self.precision == "fp16" and self.device != "cpu":
            return fn(x.half()).float()
        return fn(x).float()


def unit_rows(feats) -> np.ndarray:  # noqa: ANN001 - a torch Tensor or a NumPy array
    """Rows as float32 NumPy vectors of length 1."""
    if not isinstance(feats, np.ndarray):
        feats = feats.detach().cpu().numpy()
    arr = feats.astype(np.float32, copy=False)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)
