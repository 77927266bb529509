"""The search service the CLI and UI call: text, image and "more like this" queries.

Queries combine weighted parts, rclip style: ``beach + 2:dog - people``. Filters are
applied inside FAISS (an id selector), so top-k is top-k of the filtered set.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from searchapp.config import Settings
from searchapp.decoder import decode_photo, load_photo
from searchapp.embedder import ClipEmbedder, load_embedder
from searchapp.errors import AccessDeniedError, PhotoNotFoundError, QueryError
from searchapp.paths import is_under
from searchapp.store import PhotoFilter, PhotoRecord, Store
from searchapp.vectors import VectorIndex, open_index

RELOAD_MIN_S = 1.0


@dataclass(frozen=True)
class QueryPart:
    """One weighted term: ``kind`` is text, image (a path or bytes) or photo (an id)."""

    kind: str
    value: str | bytes | int
    weight: float = 1.0


@dataclass(frozen=True)
class SearchResult:
    rank: int
    score: float
    photo_id: int
    path: str
    taken_at: float | None
    size: int
    width: int | None
    height: int | None
    format: str | None
    content_hash: str | None = None  # names the cached thumbnail

    def as_dict(self) -> dict:
        return dict(self.__dict__)


_TERM = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*:)?\s*(.+?)\s*$")


def parse_query(text: str) -> list[QueryPart]:
    """Split ``a + 2:b - c`` into weighted text parts (negative weight for ``-``)."""
    parts: list[QueryPart] = []
    tokens = re.split(r"\s+([+-])\s+", " " + text.strip() + " ")
    sign = 1.0
    for tok in tokens:
        if tok in ("+", "-"):
            sign = 1.0 if tok == "+" else -1.0
            continue
        if not tok.strip():
            continue
        m = _TERM.match(tok)
        weight = float(m.group(1)) if m.group(1) else 1.0
        parts.append(QueryPart("text", m.group(2), sign * weight))
    if not parts:
        raise QueryError("the query is empty; type what to look for, e.g. 'dog on a beach'.")
    return parts


class SearchService:
    """Opens the library read-mostly; safe while another process indexes."""

    def __init__(self, settings: Settings, embedder: ClipEmbedder | None = None) -> None:
        self.settings = settings
        self.store = Store(settings.db_path, readonly=True)
        self.embedder = embedder or load_embedder(settings)
        self._index: VectorIndex | None = None
        self._checked = 0.0

    @property
    def index(self) -> VectorIndex:
        """The freshest index: reloaded from disk or rebuilt when the store has moved on."""
        now = time.monotonic()
        if self._index is None or now - self._checked > RELOAD_MIN_S:
            generation = self.store.generation()
            if self._index is None or self._index.generation != generation:
                self._index = open_index(
                    self.settings.index_path,
                    self.store,
                    self.embedder.model_id,
                    self.embedder.dim,
                    save=False,
                )
            self._checked = now
        return self._index

    # ------------------------------------------------------------ queries
    def search_text(
        self, text: str, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        return self.search(parse_query(text), k, flt)

    def search_image(
        self, image: str | Path | bytes, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        value = image if isinstance(image, bytes) else str(image)
        return self.search([QueryPart("image", value)], k, flt)

    def search_like(
        self, photo: int | str, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """More like an indexed photo (by id or path); the photo itself is left out."""
        pid = self.resolve_photo(photo)
        results = self.search([QueryPart("photo", pid)], k + 1, flt)
        return _rerank([r for r in results if r.photo_id != pid][:k])

    def search(
        self, parts: list[QueryPart], k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """Combined query: weighted sum of part vectors, re-normalized."""
        if not parts:
            raise QueryError("nothing to search for.")
        vec = np.zeros(self.embedder.dim, dtype=np.float32)
        for part in parts:
            vec += part.weight * self._vector(part)
        norm = float(np.linalg.norm(vec))
        if norm < 1e-9:
            raise QueryError("the query parts cancel out; change a weight.")
        allowed = None if flt is None or flt.is_empty() else self.store.filter_ids(flt)
        scores, ids = self.index.search(vec / norm, k, allowed)
        photos = self.store.get_photos(ids.tolist())
        out = []
        for score, pid in zip(scores.tolist(), ids.tolist(), strict=True):
            p = photos.get(pid)
            if p is not None:
                out.append(_result(len(out) + 1, score, p))
        return out

    def _vector(self, part: QueryPart) -> np.ndarray:
        if part.kind == "text":
            return self.embedder.encode_texts([str(part.value)])[0]
        if part.kind == "photo":
            vec = self.store.photo_vector(int(part.value), self.embedder.model_id)
            if vec is None:
                raise PhotoNotFoundError(f"photo {part.value} has no vector; index it first.")
            return vec
        if part.kind == "image":
            size = self.embedder.preprocess_config.image_size
            if isinstance(part.value, bytes):
                photo = decode_photo(part.value, size)
            else:
                photo = load_photo(part.value, size)
            return self.embedder.encode_images([photo.image])[0]
        raise QueryError(f"unknown query part {part.kind!r}")

    def resolve_photo(self, photo: int | str) -> int:
        """A photo id, or the path of an indexed photo, to its id."""
        if isinstance(photo, int) or str(photo).isdigit():
            pid = int(photo)
            if not self.store.get_photos([pid]):
                raise PhotoNotFoundError(f"no photo with id {pid}; see searchapp search --json.")
            return pid
        record = self.store.find_photo_by_path(str(photo))
        if record is None:
            raise PhotoNotFoundError(f"{photo} is not an indexed photo.")
        return record.id

    def photo_file(self, path: str | Path) -> Path:
        """The real file behind ``path`` if it is an indexed photo under an indexed root.

        The page reads originals only through this: ``..``, absolute paths elsewhere and
        symlinks that lead out of a root are refused with ``AccessDeniedError``.
        """
        real = Path(os.path.realpath(path))
        roots = [os.path.realpath(r.path) for r in self.store.list_roots()]
        if not any(is_under(str(real), r) for r in roots):
            raise AccessDeniedError(f"{path} is not inside an indexed folder.")
        if self.store.find_photo_by_path(str(path)) is None and (
            self.store.find_photo_by_path(str(real)) is None
        ):
            raise AccessDeniedError(f"{path} is not an indexed photo.")
        return real

    def get_photo(self, photo_id: int) -> PhotoRecord | None:
        return self.store.get_photos([photo_id]).get(photo_id)

    def close(self) -> None:
        self.store.close()


def _result(rank: int, score: float, p: PhotoRecord) -> SearchResult:
    return SearchResult(
        rank,
        round(float(score), 6),
        p.id,
        p.path,
        p.taken_at,
        p.size,
        p.width,
        p.height,
        p.format,
        p.content_hash,
    )


def _rerank(results: list[SearchResult]) -> list[SearchResult]:
    return [replace(r, rank=i + 1) for i, r in enumerate(results)]
