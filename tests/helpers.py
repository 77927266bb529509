"""Small helpers for building a library in tests."""

from __future__ import annotations

from indexer.pipeline import IndexRun, IndexStats
from searchapp.config import Settings
from searchapp.embedder import ClipEmbedder
from searchapp.search import SearchService
from searchapp.store import Store
from searchapp.vectors import open_index


def index_once(settings: Settings, embedder: ClipEmbedder, *roots) -> IndexStats:  # noqa: ANN002
    store = Store(settings.db_path)
    for r in roots:
        store.add_root(r)
    index = open_index(settings.index_path, store, embedder.model_id, embedder.dim)
    try:
        return IndexRun(settings, store, embedder, index).run()
    finally:
        store.close()


def service(settings: Settings, embedder: ClipEmbedder) -> SearchService:
    return SearchService(settings, embedder)
