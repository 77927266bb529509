"""An encoder whose model loads only once something needs it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image

from searchapp.config import Settings
from searchapp.model.device import device_and_precision
from searchapp.model.encoder import ImageEncoder
from searchapp.model.hub import check_weights
from searchapp.model.loader import load_embedder
from searchapp.model.preprocess import prepare_pixels
from searchapp.model.spec import ModelSpec, resolve_spec, warn_if_meaningless


class LazyEmbedder:
    """Stands in for :func:`load_embedder`'s encoder until an image or a text needs it.

    Its identity, dimension and preprocessing come from the spec, so a run can scan, diff
    and decode before any weights load. ``start_loading()`` (the indexer calls it when a
    run has files to read) loads them in a background thread while the first batches
    decode; a run over an unchanged library never loads them at all. (The watcher's model
    lives in a child process instead, :class:`~searchapp.model.host.ModelHost`, which
    gives its memory back when idle.)
    """

    def __init__(
        self, settings: Settings, *, embeds_here: bool = True, spec: ModelSpec | None = None
    ) -> None:
        """``embeds_here=False``: a Ray run's driver, whose workers pick their own device
        and precision; it skips that choice here, and so the 3-4 s import of torch.
        ``spec``: the caller's resolution of ``settings``, not done again."""
        self.settings = settings
        self.spec = spec or resolve_spec(settings)  # the one resolution; the load reuses it
        self.model_id = self.spec.model_id
        self.dim = self.spec.dim
        self.preprocess_config = self.spec.preprocess
        if embeds_here:  # a device or precision that cannot run fails now, before a scan
            self.device, self.precision = device_and_precision(settings)
        else:
            self.device = "cpu"
            self.precision = "fp32" if settings.precision == "auto" else settings.precision
        warn_if_meaningless(self.spec)  # said now, even when nothing gets embedded
        check_weights(settings, self.spec, self.device, self.precision)
        self._lock = threading.Lock()
        self._future: Future[ImageEncoder] | None = None

    @property
    def load_started(self) -> bool:
        return self._future is not None

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory (its load finished without an error)."""
        future = self._future
        return future is not None and future.done() and future.exception() is None

    def start_loading(self) -> None:
        """Begin loading the model in the background (once)."""
        with self._lock:
            if self._future is None:
                pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
                self._future = pool.submit(
                    load_embedder, self.settings, announce=False, spec=self.spec
                )
                pool.submit(self._keep_traced, self._future)  # after the load, same thread
                pool.shutdown(wait=False)

    @staticmethod
    def _keep_traced(future: Future[ImageEncoder]) -> None:
        """A model built from its checkpoint is traced for the next process (once)."""
        if future.exception() is None:
            keep = getattr(future.result(), "keep_traced", None)  # the pixel encoder has none
            if keep is not None:
                keep()

    def loaded(self) -> ImageEncoder:
        """The encoder, waiting for it; a load error (missing weights) is raised here."""
        self.start_loading()
        future = self._future
        assert future is not None
        return future.result()

    def prepare(self, image: Image.Image) -> np.ndarray:
        return prepare_pixels(image, self.preprocess_config)

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        return self.loaded().encode_prepared(pixels)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.loaded().encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded().encode_texts(texts)
