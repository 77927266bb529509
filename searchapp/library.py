"""The read API: a photo library opened for searching, browsing and status.

Front-ends (the CLI and the page) read only through :class:`Library`; the store and the
vector index stay inside the core. A ``Library`` never writes the store: it is safe to hold
open while another process indexes, and it follows the writer's saves. The model loads on
the first query that needs it. Filters are applied inside FAISS (an id selector), so top-k
is top-k of the filtered set; :meth:`Library.query` adds the relevance cutoff, date sorts,
paging and "show all"; :mod:`searchapp.browse` the timeline and the grid's tiles.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from searchapp import browse
from searchapp.access import PREVIEW_SIDE, guarded_original, preview_jpeg, upload_preview
from searchapp.activity import WriterInfo
from searchapp.browse import FolderOption, PhotoInfo, Tile, TimelinePage
from searchapp.config import Settings, command_for
from searchapp.errors import PhotoNotFoundError, QueryError
from searchapp.library_browse import BrowseReads
from searchapp.library_status import StatusReads
from searchapp.live_index import LiveIndex
from searchapp.plan import PendingFiles, live_roots
from searchapp.query import QueryPart, describe_parts, parse_query
from searchapp.query_encoder import QueryEncoder
from searchapp.relevance import CUTOFF_POOL, relevant_count, sort_by_date
from searchapp.results import SORTS, Facets, SearchPage, SearchResult
from searchapp.status import StatusReport
from searchapp.store import PhotoFilter, PhotoRecord, RootRecord, RunRecord, Store
from searchapp.thumbnails import thumbnail_path
from searchapp.vectors import VectorIndex

if TYPE_CHECKING:
    from searchapp.engine_client import EngineClient, EngineStatus
    from searchapp.model import ClipEmbedder, ModelSpec

RELOAD_MIN_S = 1.0


class Library(StatusReads, BrowseReads):
    """One library, read-only; thread-safe for concurrent searches."""

    def __init__(
        self,
        settings: Settings,
        embedder: ClipEmbedder | None = None,
        engine: EngineClient | None = None,
        index_source: Callable[[], VectorIndex] | None = None,
    ) -> None:
        """``engine``: encode text and uploaded images with the running watcher's model
        when one answers, and load this process's own model only when none does.
        ``index_source``: the writer's own index (the watcher's engine searches it, never
        behind the writer and without a second copy) instead of following the file."""
        self.settings = settings
        self._index_source = index_source
        self._embedder = embedder
        self._engine = engine
        self._model_id = embedder.model_id if embedder is not None else None
        self._store: Store | None = None
        self._live: LiveIndex | None = None
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()  # one load, even when a warm-up thread races
        self._totals: dict[tuple, int] = {}  # timeline sizes by (generation, filter)
        self._count: tuple[int, int] = (-1, 0)  # (generation, indexed photos)
        self._file: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._encoder = QueryEncoder(
            lambda: self.embedder,
            self._photo_vector,
            settings.max_upload_mb,
            remote=self._engine_vector if engine is not None else None,
        )

    # ------------------------------------------------------------ what it is made of
    @property
    def store(self) -> Store:
        """The open store (core only; front-ends use the methods below)."""
        with self._lock:
            return self._open_store()

    @property
    def exists(self) -> bool:
        """Whether the library has been created (something was indexed or added)."""
        return self._store is not None or self.settings.db_path.exists()

    @property
    def model_id(self) -> str:
        """The identity vectors are stored under; known without loading the model."""
        if self._model_id is None:
            self._model_id = self._spec().model_id
        return self._model_id

    @property
    def embedder(self) -> ClipEmbedder:
        """The model, loaded (once per process and configuration) on first use."""
        with self._model_lock:
            if self._embedder is None:
                from searchapp.model import load_embedder

                # front-ends say "random weights" their own way (stderr line, page banner)
                self._embedder = load_embedder(self.settings, announce=False)
        return self._embedder

    def keep_model_cache(self) -> bool:
        """Keep a model this process built in the traced-model cache, so the next cold
        process loads in a fraction of the time (a few seconds, once per model)."""
        keep = getattr(self._embedder, "keep_traced", None)
        return bool(keep and keep())

    @property
    def index(self) -> VectorIndex:
        """The freshest vector index: reloaded when the store moves on (large ones in the
        background). For tests and benchmarks; front-ends search through :meth:`query`."""
        if self._index_source is not None:
            return self._index_source()
        with self._lock:
            if self._live is None:
                dim = self._dim()
                self._live = LiveIndex(
                    self.settings.index_path, self._open_store(), self.model_id, dim,
                    check_every=RELOAD_MIN_S, threshold=self.settings.ann_threshold,
                )  # fmt: skip
            live = self._live  # a reopen or close may clear it once the lock is let go
        return live.get()

    def _open_store(self) -> Store:
        # under self._lock; read-only: a missing library raises StoreError ("index first")
        if self._store is None:
            self._store = Store(self.settings.db_path, readonly=True)
            self._file = _file_identity(self.settings.db_path)
        return self._store

    def reopen_if_replaced(self) -> bool:
        """Let go of the library file if it was deleted or replaced since it was opened
        (the next read opens what is there now, or finds no library): a long-lived reader,
        the page, kept showing a deleted library while a new one was written. True when
        it let go."""
        with self._lock:
            if self._store is None or _file_identity(self.settings.db_path) == self._file:
                return False
            # not closed: a search in another session may still hold it (it goes with them)
            self._store, self._live, self._file = None, None, None
            self._totals.clear()
            self._count = (-1, 0)
            return True

    def _dim(self) -> int:
        # used only to build an empty index; stored vectors carry their own length
        if self._embedder is not None:
            return self._embedder.dim
        return self._spec().dim

    def _spec(self) -> ModelSpec:
        from searchapp.model import resolve_spec

        return resolve_spec(self.settings)

    def warm_up(self) -> None:
        """Load the index and run the text tower once, so the first query pays neither
        (the watcher's, when it answers: then this process loads no model)."""
        _ = self.index
        self.encode([QueryPart("text", "a photo")])

    def encode(self, parts: list[QueryPart]) -> np.ndarray:
        """The query vector of ``parts`` (weighted, normalized), as searches use it."""
        return self._encoder.encode(parts)

    def engine_status(self) -> EngineStatus | None:
        """The watcher whose model this library uses, or None: it uses its own."""
        return self._engine.status() if self._engine is not None else None

    def model_source(self) -> str:
        """Whose model encodes this library's queries, as one line for people."""
        engine = self.engine_status()
        if engine is not None:
            return f"Queries are encoded by the watcher's model: {engine.describe()}."
        loaded = "loaded" if self._embedder is not None else "loaded on the first query"
        return f"Queries are encoded by this process's own model ({loaded}); no watcher answers."

    def _engine_vector(self, part: QueryPart) -> np.ndarray | None:
        assert self._engine is not None
        if part.kind == "text":
            vector = self._engine.encode_text(str(part.value))
        elif part.kind == "image" and isinstance(part.value, bytes):
            vector = self._engine.encode_image(part.value)
        else:
            return None
        return None if vector is None else np.asarray(vector, dtype=np.float32)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._store, self._live = None, None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ searching
    def search_text(
        self, text: str, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """Photos matching a query in the query language (``beach + 2:dog - people``)."""
        return self.search(parse_query(text), k, flt)

    def search_image(
        self, image: str | Path | bytes, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """Photos like an image file (a path) or an uploaded image (its bytes)."""
        value = image if isinstance(image, bytes) else str(image)
        return self.search([QueryPart("image", value)], k, flt)

    def search_like(
        self, photo: int | str, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """More like an indexed photo (by id or path); it and its copies are left out."""
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
        count_contents: bool = False,
    ) -> SearchPage:
        """One page of a combined query, for the page's grid.

        With ``cutoff`` only results that stand out in this query's score distribution
        count (see :func:`relevant_count`); without it ("show all") every photo that
        passes ``flt`` does. ``sort`` (relevance, newest, oldest) orders that list; photos
        without a date go last. Pages are ``[offset, offset + k)`` of it. Photos that are
        positive parts of the query, and their byte-identical copies, are left out (they would
        match themselves first). ``count_contents``: count them with copies once too, as the
        page's tiles show them (a count over the library: not for every CLI query).
        """
        if sort not in SORTS:
            raise QueryError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}.")
        if self.index.ntotal == 0:
            self._check_model_matches()
        vec = self._encoder.encode(parts)
        skip = {int(p.value) for p in parts if p.kind == "photo" and p.weight > 0}
        skip = browse.with_copies(self.store, skip) if skip_query_photos else set()
        scores, ids, candidates = self._ranked(
            vec, flt, skip, offset + k, cutoff or sort != "relevance"
        )
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
            taken = {pid: rec.taken_at for pid, rec in records.items()}
            order = sort_by_date(order, taken.get, newest=sort == "newest")
        page = order[offset : offset + k]
        missing = [pid for pid, _ in page if pid not in records]
        records.update(self.store.get_photos(missing) if missing else {})
        results = [
            SearchResult.of(offset + i + 1, score, records[pid])
            for i, (pid, score) in enumerate(page)
            if pid in records
        ]
        counts = self._content_counts(ids, flt, skip, cutoff) if count_contents else ()
        return SearchPage(results, total, hidden, threshold, offset, sort, *counts)

    def _ranked(
        self, vec: np.ndarray, flt: PhotoFilter | None, skip: set[int], want: int, pool: bool
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Scores and ids, best first, of the filtered photos; and how many there are."""
        allowed = None if flt is None or flt.is_empty() else self.store.filter_ids(flt)
        index = self.index
        available = index.ntotal if allowed is None else len(allowed)
        if pool:  # the cutoff and date sorts look at a whole pool, not just one page
            want = max(want, CUTOFF_POOL)
        scores, ids = index.search(vec, min(want, available) + len(skip), allowed)
        mask = ~np.isin(ids, np.fromiter(skip, dtype=np.int64, count=len(skip)))
        return scores[mask], ids[mask], available - int(np.count_nonzero(~mask))

    def _check_model_matches(self) -> None:
        """Photos embedded by another model only: say so (it was "no results")."""
        others = [m for m in self.store.embedding_models() if m != self.model_id]
        if others:
            from searchapp.model import model_flags

            raise QueryError(
                f"this library's photos were embedded by {others[0]}, not {self.model_id}; "
                f"search with that model ({model_flags(others[0])}), or embed them again with "
                f"this one: {self._index_command()}"
            )

    def _no_photo(self, pid: int) -> str:
        command = command_for(self.settings.data_dir)
        return f"no photo with id {pid}; ids are in: {command} search TEXT --json"

    def _index_command(self) -> str:
        """The command that embeds this library with this library's model."""
        from searchapp.model import PIXELS_MODEL_ID, model_flags

        command = command_for(self.settings.data_dir)
        if self.model_id == PIXELS_MODEL_ID:
            return f"SEARCHAPP_ENCODER=pixels {command} index"
        spec = self._spec()  # a checkpoint file's path is known here, resolved
        checkpoint = spec.weights if spec.weights_kind == "file" else None
        return f"{command} {model_flags(self.model_id, checkpoint)} index"

    def guard_parts(self, parts: list[QueryPart]) -> list[QueryPart]:
        """Parts safe to run for the page: image paths must be indexed photos under a root.

        ``image:PATH`` typed into the page becomes a ``photo`` part (its stored vector); a
        path outside the indexed folders raises ``AccessDeniedError``.
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

    def _photo_vector(self, pid: int) -> np.ndarray:
        """A photo's stored vector; one that has none says why (no such photo, failed)."""
        vec = self.store.photo_vector(pid, self.model_id)
        if vec is not None:
            return vec
        record = self.store.get_photos([pid]).get(pid)
        if record is None:
            raise PhotoNotFoundError(self._no_photo(pid))
        if record.failure_reason:
            raise PhotoNotFoundError(
                f"{record.path} could not be indexed ({record.failure_reason}), so it has "
                "nothing to search by."
            )
        raise PhotoNotFoundError(f"photo {pid} has no vector yet; index it first.")

    def resolve_photo(self, photo: int | str) -> int:
        """A photo id, or the path of an indexed photo, to its id."""
        if isinstance(photo, int) or str(photo).isdigit():
            pid = int(photo)
            if not self.store.get_photos([pid]):
                raise PhotoNotFoundError(self._no_photo(pid))
            return pid
        record = self.store.find_photo_by_path(str(photo))
        if record is None:
            raise PhotoNotFoundError(f"{photo} is not an indexed photo.")
        return record.id

    # ------------------------------------------------------------ browsing
    def roots(self, *, live: bool = False) -> list[RootRecord]:
        """The photo folders, online as the last run saw them, or (``live``) as they are
        now (a stat and a look inside each: a hung network mount hangs it)."""
        if not self.exists:
            return []
        return live_roots(self.store) if live else self.store.list_roots()

    def photo_count(self) -> int:
        """Indexed photos (failed files not counted); 0 before anything was indexed.

        Counted again only when the generation moved: the page asks on every rerun, and
        counting 100,000 rows took 20-40 ms of each query's time."""
        if not self.exists:
            return 0
        generation = self.generation()
        if self._count[0] != generation:
            self._count = (generation, self.store.counts()["photos"])
        return self._count[1]

    def failed_count(self) -> int:
        """Files that could not be read (their reasons are in :meth:`status`)."""
        return self.store.counts()["failed"] if self.exists else 0

    def facets(self, root: str | None = None) -> Facets:
        """The values the filters offer; folders only under ``root`` when it is given."""
        from searchapp.paths import is_under

        store = self.store
        folders = store.folders()
        if root is not None:
            folders = [f for f in folders if is_under(f, root)]
        first, last = store.taken_range()
        roots = [r.path for r in store.list_roots()]
        return Facets(roots, folders, store.formats(), first, last)

    def photo(self, photo_id: int) -> PhotoRecord | None:
        """One photo's details (path, size, dimensions, date, camera), or None."""
        return self.store.get_photos([photo_id]).get(photo_id)

    def thumbnail(self, content_hash: str | None) -> Path | None:
        """The cached thumbnail of a photo's content, if there is one on disk."""
        if not content_hash:
            return None
        path = thumbnail_path(self.settings.thumbs_dir, content_hash)
        return path if path.exists() else None

    def photo_file(self, path: str | Path) -> Path:
        """The real file behind ``path`` if it is an indexed photo under an indexed root.

        Originals are read only through this: ``..``, absolute paths elsewhere and symlinks
        that lead out of a root are refused with ``AccessDeniedError``.
        """
        return guarded_original(self.store, path)

    def preview_jpeg(self, path: str | Path, max_side: int = PREVIEW_SIDE) -> bytes:
        """A JPEG of an indexed photo (through :meth:`photo_file`), long side <= max_side."""
        return preview_jpeg(self.photo_file(path), max_side)

    def upload_preview(self, data: bytes, max_side: int = 144) -> bytes:
        """A small JPEG of an uploaded image, decoded as a search by it would be: an
        upload that is no image raises ``ImageDecodeError`` before any search."""
        return upload_preview(data, max_side)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


__all__ = [
    "Facets", "FolderOption", "PhotoInfo", "Tile", "TimelinePage", "Library", "PendingFiles",
    "PhotoFilter", "PhotoRecord", "QueryPart", "RootRecord", "RunRecord", "SORTS", "SearchPage",
    "SearchResult", "StatusReport", "WriterInfo", "describe_parts", "parse_query",
]  # fmt: skip
