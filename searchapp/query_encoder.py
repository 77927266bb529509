"""Query parts to one query vector: the model for text and images, the store for photos.

Text and uploaded-image vectors are kept in a small LRU cache, because the page runs
the whole query again on every click. ``photo:ID`` parts use the stored vector, so a
"more like this" query never needs the model.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from searchapp.decoder import decode_photo, hash_bytes, load_photo
from searchapp.errors import ImageDecodeError, QueryError
from searchapp.query import QueryPart

if TYPE_CHECKING:
    from searchapp.model import ClipEmbedder

VECTOR_CACHE = 64


class QueryEncoder:
    """Combines weighted parts into one L2-normalized vector; thread-safe."""

    def __init__(
        self,
        embedder: Callable[[], ClipEmbedder],
        photo_vector: Callable[[int], np.ndarray],
        max_upload_mb: int,
        remote: Callable[[QueryPart], np.ndarray | None] | None = None,
    ) -> None:
        self._embedder = embedder  # called only for parts that need the model
        self._remote = remote  # the watcher's model, tried first; None when none answers
        self._photo_vector = photo_vector
        self._max_upload_mb = max_upload_mb
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, parts: list[QueryPart]) -> np.ndarray:
        """The weighted sum of the parts' vectors, re-normalized."""
        if not parts:
            raise QueryError("nothing to search for.")
        vec: np.ndarray | None = None
        for part in parts:
            term = part.weight * self._cached(part)
            vec = term if vec is None else vec + term
        assert vec is not None
        norm = float(np.linalg.norm(vec))
        if norm < 1e-9:
            raise QueryError("the query parts cancel out; change a weight.")
        return (vec / norm).astype(np.float32)

    def _cached(self, part: QueryPart) -> np.ndarray:
        if part.kind == "text":
            key: tuple | None = ("text", str(part.value))
        elif part.kind == "image" and isinstance(part.value, bytes):
            key = ("image", hash_bytes(part.value))
        else:
            key = None  # stored photo vectors are one lookup; image files may change
        with self._lock:
            if key is not None and key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        vec = self._vector(part)
        if key is not None:
            with self._lock:
                self._cache[key] = vec
                while len(self._cache) > VECTOR_CACHE:
                    self._cache.popitem(last=False)
        return vec

    def _vector(self, part: QueryPart) -> np.ndarray:
        if part.kind == "image" and isinstance(part.value, bytes):
            self._check_upload(part.value)
        if self._remote is not None and part.kind in ("text", "image"):
            vec = self._remote(part)
            if vec is not None:
                return vec
        if part.kind == "text":
            return self._embedder().encode_texts([str(part.value)])[0]
        if part.kind == "photo":
            return self._photo_vector(int(part.value))  # raises when it has none, saying why
        if part.kind == "image":
            return self._image_vector(part.value)
        raise QueryError(f"unknown query part {part.kind!r}")

    def _check_upload(self, value: bytes) -> None:
        if len(value) > self._max_upload_mb * 2**20:
            raise QueryError(
                f"the image is over {self._max_upload_mb} MB; use a smaller copy "
                "or raise SEARCHAPP_MAX_UPLOAD_MB."
            )

    def _image_vector(self, value: str | bytes | int) -> np.ndarray:
        embedder = self._embedder()
        size = embedder.preprocess_config.image_size
        if isinstance(value, bytes):
            photo = decode_photo(value, size)
        else:
            photo = _load_query_image(str(value), size)
        return embedder.encode_images([photo.image])[0]


def _load_query_image(path: str, size: int):  # noqa: ANN202 - a decoded Photo
    """An image file to search by; its problem named with its path (the indexer's words,
    "vanished before it could be read", do not fit a path just typed)."""
    if not os.path.lexists(path):
        raise QueryError(f"no such file: {path}; give the path of an image to search by.")
    try:
        return load_photo(path, size)
    except ImageDecodeError as err:
        raise ImageDecodeError(f"cannot search by {path}: {err}") from None


__all__ = ["VECTOR_CACHE", "QueryEncoder"]
