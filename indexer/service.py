"""Indexing as one call, for the CLI and the page: lock, open, run, save, release."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from indexer.lock import WriterInfo, WriterLock
from indexer.pipeline import IndexRun, IndexStats, ProgressCallback
from searchapp.config import Settings
from searchapp.embedder import ImageEncoder, load_embedder
from searchapp.store import Store
from searchapp.vectors import open_index


def index_library(
    settings: Settings,
    *,
    add_roots: Sequence[str] = (),
    paths: list[str] | None = None,
    retry_failed: bool = False,
    progress: ProgressCallback | None = None,
    embedder: ImageEncoder | None = None,
    wait_s: float = 0.0,
    on_wait: Callable[[WriterInfo | None], None] | None = None,
    kind: str = "index",
) -> IndexStats:
    """Add ``add_roots``, then index every root (or only ``paths``) under the writer lock.

    Raises ``WriterBusyError`` when another writer holds the library past ``wait_s``.
    """
    lock = WriterLock(settings, kind).acquire(wait_s, on_wait)
    store = Store(settings.db_path)
    try:
        for root in add_roots:
            store.add_root(root)
        if retry_failed:
            store.clear_failures(paths)
        embedder = embedder or load_embedder(settings)
        index = open_index(settings.index_path, store, embedder.model_id, embedder.dim)
        return IndexRun(settings, store, embedder, index).run(progress, paths)
    finally:
        store.close()
        lock.release()
