"""The read API: a photo library opened for searching, browsing and status.

Front-ends (the CLI and the page) read only through :class:`Library`; the store and the
vector index stay inside the core. A ``Library`` never writes the store: it is safe to hold
open while another process indexes, and it follows the writer's saves. The model loads on
the first query that needs it. This module holds what a library owns (its store, its live
vector index, its model and the engine that may stand in for it); its reads come from
mixins: :mod:`searchapp.library_search` (queries), :mod:`searchapp.library_browse` (the
timeline and the grid's tiles) and :mod:`searchapp.library_status`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from searchapp.access import PREVIEW_SIDE, guarded_original, preview_jpeg, upload_preview
from searchapp.activity import WriterInfo
from searchapp.browse import FolderOption, PhotoInfo, Tile, TimelinePage
from searchapp.config import Settings
from searchapp.library_browse import BrowseReads
from searchapp.library_search import SearchReads
from searchapp.library_status import StatusReads
from searchapp.live_index import LiveIndex
from searchapp.plan import PendingFiles, live_roots
from searchapp.query import QueryPart, describe_parts, parse_query
from searchapp.query_encoder import QueryEncoder
from searchapp.results import SORTS, Facets, SearchPage, SearchResult
from searchapp.status import StatusReport
from searchapp.store import PhotoFilter, PhotoRecord, RootRecord, RunRecord, Store
from searchapp.thumbnails import thumbnail_path
from searchapp.vectors import VectorIndex

if TYPE_CHECKING:
    from searchapp.engine_client import EngineClient, EngineStatus
    from searchapp.model import ClipEmbedder, ModelSpec

RELOAD_MIN_S = 1.0


class Library(SearchReads, StatusReads, BrowseReads):
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
