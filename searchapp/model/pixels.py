"""A deterministic test encoder: vectors from the pixels themselves; no model, no torch.

For tests where the model's numbers do not matter (pipeline, watcher, crash trials,
concurrency). An image's prepared crop is averaged to a smoothed 16x16 grid; the grid's
horizontal and vertical steps (shape), its centred values (layout) and a soft colour
histogram (so flat images of different colours differ) are projected to 512 dimensions by
a fixed seeded Gaussian matrix. Identical, resized and re-encoded copies stay above cosine
0.99; the sample photos stay below 0.5 of each other. A text's vector is drawn from a
generator seeded by its bytes. Selected by ``SEARCHAPP_ENCODER=pixels``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import cache

import numpy as np
from PIL import Image

from searchapp.model.encoder import unit_rows
from searchapp.model.preprocess import prepare_pixels
from searchapp.model.spec import ModelSpec, pixel_spec

GRID = 16
PROJECTION_SEED = 20240611
_COLOUR_LEVELS = np.linspace(0.0, 1.0, 8, dtype=np.float32)
_COLOUR_WIDTH = 0.07
_COLOUR_WEIGHT = 0.5


class PixelEncoder:
    """The :class:`~searchapp.model.encoder.ImageEncoder` of tests. Thread-safe."""

    device = "cpu"
    precision = "fp32"
    random_weights = False

    def __init__(self, spec: ModelSpec | None = None) -> None:
        self.spec = spec or pixel_spec()
        self.model_id = self.spec.model_id
        self.dim = self.spec.dim
        self.preprocess_config = self.spec.preprocess
        self._lock = threading.Lock()
        self.images_encoded = 0  # counts encoder calls, like the real model's

    def describe(self) -> str:
        return f"pixel test encoder ({self.model_id}): no model, results carry no meaning"

    def prepare(self, image: Image.Image) -> np.ndarray:
        """Resize/crop one image to uint8 HxWx3, as the real model's input."""
        return prepare_pixels(image, self.preprocess_config)

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] from :meth:`prepare` -> float32 [N, dim], L2-normalized."""
        # one row at a time: a photo's vector never depends on the batch it came in
        rows = [_project(pixel_features(p), self.dim) for p in pixels]
        with self._lock:
            self.images_encoded += len(pixels)
        return unit_rows(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_prepared(np.stack([self.prepare(im) for im in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> float32 [N, dim]: the same text always gets the same vector."""
        rows = [_text_generator(t).standard_normal(self.dim, dtype=np.float32) for t in texts]
        return unit_rows(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)

    def start_loading(self) -> None:
        """Nothing to load."""


def pixel_features(pixels: np.ndarray) -> np.ndarray:
    """One prepared crop (uint8 HxWx3) -> its shape, layout and colour features."""
    grid = _smoothed_grid(pixels.astype(np.float32) / 255.0)
    steps_x = np.diff(grid, axis=1).ravel()
    steps_y = np.diff(grid, axis=0).ravel()
    layout = 0.5 * (grid - grid.mean()).ravel()
    cells = grid.reshape(-1, 3, 1)
    colours = np.exp(-((cells - _COLOUR_LEVELS) ** 2) / (2 * _COLOUR_WIDTH**2)).mean(axis=0)
    colours = colours.ravel() / max(float(np.linalg.norm(colours)), 1e-9)
    return np.concatenate([steps_x, steps_y, layout, _COLOUR_WEIGHT * colours])


def _smoothed_grid(x: np.ndarray) -> np.ndarray:
    """Block means on a 2*GRID grid, a [1, 2, 1] tent filter, every second cell: GRID x GRID.

    The overlapping tent keeps an edge that a resize shifts across a cell border from
    moving all its weight to the next cell.
    """
    fine = 2 * GRID
    cell = x.shape[0] // fine
    blocks = x[: cell * fine, : cell * fine].reshape(fine, cell, fine, cell, 3).mean(axis=(1, 3))
    p = np.pad(blocks, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4
    both = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
    return both[::2, ::2]


def _project(features: np.ndarray, dim: int) -> np.ndarray:
    return features @ _projection(len(features), dim)


@cache
def _projection(features: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(PROJECTION_SEED)
    return rng.standard_normal((features, dim), dtype=np.float32)


def _text_generator(text: str) -> np.random.Generator:
    seed = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(seed, "little"))
