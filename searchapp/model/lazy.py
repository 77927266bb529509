"""An encoder for indexing whose model loads only once some image needs it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image

from searchapp.config import Settings
from searchapp.model.device import device_and_precision
from searchapp.model.encoder import ImageEncoder
from searchapp.model.hub import fetch_checkpoint
from searchapp.model.loader import load_embedder
from searchapp.model.preprocess import prepare_pixels
from searchapp.model.spec import resolve_spec, warn_if_meaningless


class LazyEmbedder:
    """Stands in for :func:`load_embedder`'s encoder until an image needs it.

    Its identity, dimension and preprocessing come from the spec, so a run can scan, diff
    and decode before any weights load. ``start_loading()`` (the indexer calls it when a
    run has files to read) loads them in a background thread while the first batches
    decode; a run over an unchanged library never loads them at all.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spec = resolve_spec(settings)  # the one resolution; the load reuses it
        self.model_id = self.spec.model_id
        self.dim = self.spec.dim
        self.preprocess_config = self.spec.preprocess
        # a device or precision that cannot run fails now, before a long scan
        self.device, self.precision = device_and_precision(settings)
        warn_if_meaningless(self.spec)  # said now, even when nothing gets embedded
        if self.spec.weights_kind == "tag":
            # missing weights fail now, with their one-line fix, not after a long scan
            fetch_checkpoint(self.spec.model, self.spec.weights)
        self._lock = threading.Lock()
        self._future: Future[ImageEncoder] | None = None

    @property
    def load_started(self) -> bool:
        return self._future is not None

    def start_loading(self) -> None:
        """Begin loading the model in the background (once)."""
        with self._lock:
            if self._future is None:
                pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
                self._future = pool.submit(
                    load_embedder, self.settings, announce=False, spec=self.spec
                )
                pool.shutdown(wait=False)

    def loaded(self) -> ImageEncoder:
        """The encoder, waiting for it; a load error (missing weights) is raised here."""
        self.start_loading()
        assert self._future is not None
        return self._future.result()

    def prepare(self, image: Image.Image) -> np.ndarray:
        return prepare_pixels(image, self.preprocess_config)

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        return self.loaded().encode_prepared(pixels)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.loaded().encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded().encode_texts(texts)
