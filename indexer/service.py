"""Indexing as one call, for the CLI and the page: lock, open, run, save, release.

When ``searchapp watch`` holds the library, the work is handed to it (``indexer.handoff``)
and its result returned, so two processes never write at once.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Sequence

from searchapp.activity import WriterInfo, read_writer
from searchapp.config import Settings
from searchapp.embedder import ImageEncoder, LazyEmbedder
from searchapp.errors import DiskFullError, SearchAppError, WriterBusyError
from searchapp.indexer.handoff import submit_request, wait_for_answer, withdraw_request
from searchapp.indexer.lock import WriterLock
from searchapp.indexer.pipeline import IndexStats, ProgressCallback, index_roots
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
    on_handoff: Callable[[WriterInfo], None] | None = None,
) -> IndexStats:
    """Add ``add_roots``, then index every root (or only ``paths``) under the writer lock.

    If a watcher holds the lock, it does the work and ``on_handoff`` is told (``progress``
    is then not called). Raises ``WriterBusyError`` when another writer holds the library
    past ``wait_s``.
    """
    if add_roots:
        store = Store(settings.db_path)
        try:
            for root in add_roots:
                store.add_root(root)  # registering a folder is safe beside any writer
        finally:
            store.close()
    lock = WriterLock(settings, kind)
    try:
        lock.acquire()
    except WriterBusyError:
        stats = _hand_to_watcher(settings, paths, retry_failed, wait_s, on_handoff)
        if stats is not None:
            return stats
        lock.acquire(wait_s, on_wait)
    store = Store(settings.db_path)
    try:
        if retry_failed:
            store.clear_failures(paths)
        embedder = embedder or LazyEmbedder(settings)  # loads only if a file needs it
        index = open_index(settings.index_path, store, embedder.model_id, embedder.dim)

        def save() -> None:
            index.save(settings.index_path, store.generation())

        return index_roots(
            settings, store, embedder, index, save, paths=paths, progress=progress, kind=kind
        )
    except OSError as err:  # a thumbnail or the FAISS file hit a full disk (SQLite maps its own)
        if err.errno != errno.ENOSPC:
            raise
        raise DiskFullError(
            f"the disk holding {settings.data_dir} is full; free some space and run the "
            "command again (everything committed so far is kept)."
        ) from None
    finally:
        store.close()
        lock.release()


def _hand_to_watcher(
    settings: Settings,
    paths: list[str] | None,
    retry_failed: bool,
    wait_s: float,
    on_handoff: Callable[[WriterInfo], None] | None,
) -> IndexStats | None:
    """Let the running watcher index; None when no watcher holds the lock (or it died)."""
    answer = ask_watcher(
        settings, "index", wait_s, on_handoff, paths=paths, retry_failed=retry_failed
    )
    if answer is None:
        return None
    known = IndexStats.__dataclass_fields__
    return IndexStats(**{k: v for k, v in answer.get("stats", {}).items() if k in known})


def ask_watcher(
    settings: Settings,
    action: str,
    wait_s: float,
    on_handoff: Callable[[WriterInfo], None] | None = None,
    **fields: object,
) -> dict | None:
    """Have the running watcher do ``action`` and return its answer.

    None when no watcher holds the lock, or it stopped before answering (the caller then
    does the work itself). Raises the watcher's error, or ``WriterBusyError`` after ``wait_s``.
    """
    holder = _watcher(settings)
    if holder is None:
        return None
    request = submit_request(settings, action, **fields)
    if on_handoff is not None:
        on_handoff(holder)

    def alive() -> bool:
        now = read_writer(settings)
        return now is not None and now.pid == holder.pid

    answer = wait_for_answer(settings, request, alive, max(wait_s, 1.0))
    if answer is None:
        if withdraw_request(settings, request) and not alive():
            return None  # the watcher stopped first: the caller does it itself
        raise WriterBusyError(
            f"the running watcher (pid {holder.pid}) did not finish in {wait_s:.0f} s; "
            "it will still do the work; see: searchapp status"
        )
    if not answer.get("ok"):
        raise SearchAppError(answer.get("error") or "the watcher could not do the work")
    return answer


def _watcher(settings: Settings) -> WriterInfo | None:
    """The watcher holding the lock, allowing for the moment before it names itself."""
    for _ in range(10):
        holder = read_writer(settings)
        if holder is not None:
            return holder if holder.kind == "watch" else None
        time.sleep(0.1)
    return None
