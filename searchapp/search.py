"""The search service the CLI and UI call: text, image and "more like this" queries.

Queries combine weighted parts, rclip style: ``beach + 2:dog - people``; a term can also
be ``photo:ID`` (an indexed photo) or ``image:PATH`` (an image file), so text and images
mix. Filters are applied inside FAISS (an id selector), so top-k is top-k of the filtered
set. :meth:`SearchService.query` adds the page's needs: a per-query relevance cutoff,
sorting by date among the relevant results, and paging.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from searchapp.config import Settings
from searchapp.decoder import decode_photo, hash_bytes, load_photo
from searchapp.errors import AccessDeniedError, PhotoNotFoundError, QueryError
from searchapp.model import ClipEmbedder, load_embedder
from searchapp.paths import is_under
from searchapp.store import PhotoFilter, PhotoRecord, RootRecord, RunRecord, Store
from searchapp.vectors import LiveIndex, VectorIndex

RELOAD_MIN_S = 1.0
SORTS = ("relevance", "newest", "oldest")
# The cutoff statistics come from at most this many best candidates of a query.
CUTOFF_POOL = 2000
# A result is relevant when its score is at least mean + CUTOFF_Z * std of the pool ...
CUTOFF_Z = 1.0
# ... and the best few are always shown, however flat the distribution.
MIN_KEEP = 3
VECTOR_CACHE = 64
PREVIEW_SIDE = 1600


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


@dataclass(frozen=True)
class SearchPage:
    """One page of a query: ``total`` results in the (cut or full) list, ``hidden`` below it."""

    results: list[SearchResult]
    total: int
    hidden: int
    threshold: float | None  # the lowest score kept by the cutoff; None when showing all
    offset: int
    sort: str

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.results) < self.total


@dataclass(frozen=True)
class LibraryStatus:
    """What the status page shows; read from the store and the loaded index."""

    roots: list[RootRecord]
    indexed: int
    failed: int
    model: str
    weights: str
    model_id: str
    random_weights: bool
    index_type: str
    index_vectors: int
    index_bytes: int
    last_run: RunRecord | None
    failures: list[PhotoRecord]


def relevant_count(scores: np.ndarray, z: float = CUTOFF_Z, min_keep: int = MIN_KEEP) -> int:
    """How many of these descending scores stand out from this query's own distribution.

    Keeps scores >= mean + z * std of ``scores`` (so the line moves with each query: a
    query with a few clear matches keeps those, a flat one keeps its upper tail), and
    never fewer than ``min_keep``. Equal scores are never split.
    """
    n = len(scores)
    if n <= min_keep:
        return n
    mean, std = float(np.mean(scores)), float(np.std(scores))
    if std < 1e-9:
        return n  # nothing stands out, so nothing is hidden
    keep = max(int(np.count_nonzero(scores >= mean + z * std)), min_keep)
    while keep < n and scores[keep] >= scores[keep - 1]:
        keep += 1
    return keep


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
        parts.append(_term_part(m.group(2), sign * weight))
    if not parts:
        raise QueryError("the query is empty; type what to look for, e.g. 'dog on a beach'.")
    return parts


def _term_part(term: str, weight: float) -> QueryPart:
    """``photo:ID`` and ``image:PATH`` terms name images; anything else is text."""
    kind, _, value = term.partition(":")
    if kind == "photo" and value.strip():
        if not value.strip().isdigit():
            raise QueryError(f"'{term}': photo: takes a photo id, e.g. photo:42.")
        return QueryPart("photo", int(value), weight)
    if kind == "image" and value.strip():
        return QueryPart("image", value.strip(), weight)
    return QueryPart("text", term, weight)


def describe_parts(parts: list[QueryPart], names: dict[int, str] | None = None) -> str:
    """``beach + 2 × photo cat.png - people``: a query as one line for people."""
    out = []
    for i, p in enumerate(parts):
        sign = "-" if p.weight < 0 else "+"
        weight = abs(p.weight)
        if p.kind == "photo":
            label = f"photo {(names or {}).get(int(p.value), p.value)}"
        elif p.kind == "image":
            label = "uploaded image" if isinstance(p.value, bytes) else f"image {p.value}"
        else:
            label = str(p.value)
        term = label if weight == 1 else f"{weight:g} × {label}"
        out.append(term if i == 0 and sign == "+" else f"{sign} {term}")
    return " ".join(out)


class SearchService:
    """Opens the library read-mostly; safe while another process indexes."""

    def __init__(self, settings: Settings, embedder: ClipEmbedder | None = None) -> None:
        self.settings = settings
        self.store = Store(settings.db_path, readonly=True)
        self.embedder = embedder or load_embedder(settings)
        self._live = LiveIndex(
            settings.index_path,
            self.store,
            self.embedder.model_id,
            self.embedder.dim,
            check_every=RELOAD_MIN_S,
        )
        self._vectors: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._vectors_lock = threading.Lock()

    @property
    def index(self) -> VectorIndex:
        """The freshest index: reloaded when the store moves on (large ones in the background)."""
        return self._live.get()

    def warm_up(self) -> None:
        """Load the index and run the text tower once, so the first query pays neither."""
        _ = self.index
        self.embedder.encode_texts(["a photo"])

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
        parts = [QueryPart("photo", self.resolve_photo(photo))]
        return self.query(parts, k=k, flt=flt, cutoff=False, skip_query_photos=True).results

    def search(
        self, parts: list[QueryPart], k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """Combined query: weighted sum of part vectors, re-normalized; top-k by score."""
        return self.query(parts, k=k, flt=flt, cutoff=False, skip_query_photos=False).results

    def query(
        self,
        parts: list[QueryPart],
        *,
        k: int = 20,
        offset: int = 0,
        flt: PhotoFilter | None = None,
        cutoff: bool = True,
        sort: str = "relevance",
        skip_query_photos: bool = True,
    ) -> SearchPage:
        """One page of a combined query, for the page's grid.

        With ``cutoff`` only results that stand out in this query's score distribution
        count (see :func:`relevant_count`); without it every photo that passes ``flt``
        does. ``sort`` (relevance, newest, oldest) orders that list; photos without a
        date go last. Pages are ``[offset, offset + k)`` of it. Photos that are positive
        parts of the query are left out (they would match themselves first).
        """
        if sort not in SORTS:
            raise QueryError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}.")
        vec = self._query_vector(parts)
        skip = {int(p.value) for p in parts if p.kind == "photo" and p.weight > 0}
        skip = skip if skip_query_photos else set()
        allowed = None if flt is None or flt.is_empty() else self.store.filter_ids(flt)
        available = self.index.ntotal if allowed is None else len(allowed)
        want = offset + k
        if cutoff or sort != "relevance":
            want = max(want, CUTOFF_POOL)
        scores, ids = self.index.search(vec, min(want, available) + len(skip), allowed)
        mask = ~np.isin(ids, np.fromiter(skip, dtype=np.int64, count=len(skip)))
        scores, ids = scores[mask], ids[mask]
        candidates = available - int(np.count_nonzero(~mask))
        threshold = None
        if cutoff:
            keep = relevant_count(scores)
            scores, ids = scores[:keep], ids[:keep]
            total, hidden = keep, max(candidates - keep, 0)
            threshold = float(scores[-1]) if keep else None
        else:
            total, hidden = max(candidates, len(ids)), 0
        order = list(zip(ids.tolist(), scores.tolist(), strict=True))
        records: dict[int, PhotoRecord] = {}
        if sort != "relevance":
            records = self.store.get_photos([pid for pid, _ in order])
            order = _by_date(order, records, newest=sort == "newest")
        page = order[offset : offset + k]
        missing = [pid for pid, _ in page if pid not in records]
        records.update(self.store.get_photos(missing) if missing else {})
        results = [
            _result(offset + i + 1, score, records[pid])
            for i, (pid, score) in enumerate(page)
            if pid in records
        ]
        return SearchPage(results, total, hidden, threshold, offset, sort)

    def guard_parts(self, parts: list[QueryPart]) -> list[QueryPart]:
        """Parts safe to run for the page: image paths must be indexed photos under a root.

        ``image:PATH`` from the page's query box becomes a ``photo`` part (its stored
        vector); a path outside the indexed folders raises ``AccessDeniedError``.
        """
        out = []
        for part in parts:
            if part.kind == "image" and not isinstance(part.value, bytes):
                real = self.photo_file(str(part.value))
                part = QueryPart("photo", self.resolve_photo(str(real)), part.weight)
            elif part.kind == "photo":
                part = QueryPart("photo", self.resolve_photo(int(part.value)), part.weight)
            out.append(part)
        return out

    def _query_vector(self, parts: list[QueryPart]) -> np.ndarray:
        if not parts:
            raise QueryError("nothing to search for.")
        vec = np.zeros(self.embedder.dim, dtype=np.float32)
        for part in parts:
            vec += part.weight * self._cached_vector(part)
        norm = float(np.linalg.norm(vec))
        if norm < 1e-9:
            raise QueryError("the query parts cancel out; change a weight.")
        return vec / norm

    def _cached_vector(self, part: QueryPart) -> np.ndarray:
        """Text and uploaded-image vectors are kept: the page re-runs a query on every click."""
        if part.kind == "text":
            key: tuple | None = ("text", str(part.value))
        elif part.kind == "image" and isinstance(part.value, bytes):
            key = ("image", hash_bytes(part.value))
        else:
            key = None
        with self._vectors_lock:
            if key is not None and key in self._vectors:
                self._vectors.move_to_end(key)
                return self._vectors[key]
        vec = self._vector(part)
        if key is not None:
            with self._vectors_lock:
                self._vectors[key] = vec
                while len(self._vectors) > VECTOR_CACHE:
                    self._vectors.popitem(last=False)
        return vec

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
                if len(part.value) > self.settings.max_upload_mb * 2**20:
                    raise QueryError(
                        f"the image is over {self.settings.max_upload_mb} MB; use a smaller copy "
                        "or raise SEARCHAPP_MAX_UPLOAD_MB."
                    )
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

    def preview_jpeg(self, path: str | Path, max_side: int = PREVIEW_SIDE) -> bytes:
        """A JPEG of an indexed photo, EXIF-oriented, long side <= ``max_side``.

        Reads the original only through :meth:`photo_file`, so only indexed photos under
        an indexed root can be shown.
        """
        real = self.photo_file(path)
        image = load_photo(real, max_side).image
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=88)
        return out.getvalue()

    def get_photo(self, photo_id: int) -> PhotoRecord | None:
        return self.store.get_photos([photo_id]).get(photo_id)

    def library_status(self, failures: int = 200) -> LibraryStatus:
        """Roots, counts, model, index and last run, and the first ``failures`` failed files."""
        import faiss  # only here: the rest of the service goes through searchapp.vectors

        counts = self.store.counts()
        index = self.index
        outer = faiss.downcast_index(index.index)
        inner = getattr(outer, "index", None)
        kind = type(outer).__name__
        if inner is not None:
            kind += f"({type(faiss.downcast_index(inner)).__name__})"
        if getattr(index, "nprobe", 0):
            kind += f", nprobe {index.nprobe}"
        path = self.settings.index_path
        runs = self.store.recent_runs(1)
        return LibraryStatus(
            roots=self.store.list_roots(),
            indexed=counts["photos"],
            failed=counts["failed"],
            model=self.settings.model,
            weights=self.settings.weights or "default",
            model_id=self.embedder.model_id,
            random_weights=self.settings.random_weights,
            index_type=f"FAISS {kind}",
            index_vectors=index.ntotal,
            index_bytes=path.stat().st_size if path.exists() else 0,
            last_run=runs[0] if runs else None,
            failures=self.store.failures(limit=failures),
        )

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


def _by_date(
    order: list[tuple[int, float]], records: dict[int, PhotoRecord], *, newest: bool
) -> list[tuple[int, float]]:
    """Stable sort by date taken; undated photos last, ties keep relevance order."""

    def key(item: tuple[int, float]) -> tuple[bool, float]:
        rec = records.get(item[0])
        taken = rec.taken_at if rec is not None else None
        if taken is None:
            return (True, 0.0)
        return (False, -taken if newest else taken)

    return sorted(order, key=key)
