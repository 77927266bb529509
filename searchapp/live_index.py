"""A reader's view of the vector index file that follows the writer without blocking."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from searchapp.store import Store
from searchapp.vectors import DEFAULT_APPROX_THRESHOLD, KIND_FLAT, VectorIndex, open_index

log = logging.getLogger(__name__)
# A running writer saves its index every minute while it indexes (indexer/pipeline.py
# SAVE_EVERY_S): a file behind the library for twice that is one it will not save.
CATCH_UP_AFTER_S = 120.0


class LiveIndex:
    """A reader's view of the index file that follows the writer without blocking searches.

    Checks the store generation at most every ``check_every`` seconds. An exact index is
    small and reloads at once (results stay current); a large approximate one is loaded
    in a background thread while searches keep using the index already held, and is
    swapped in whole when ready. A file behind the library is brought up to date on load
    (an approximate one with the photos changed since, not retrained). A held approximate
    index is reloaded when the writer saves a newer file (every minute while indexing, and
    at the end), or, when the file has stayed behind the library for ``catch_up_after``
    seconds (a writer killed before its save), reloaded and caught up from the store.
    """

    def __init__(
        self,
        path: Path,
        store: Store,
        model_id: str,
        dim: int,
        check_every: float = 1.0,
        threshold: int = DEFAULT_APPROX_THRESHOLD,
        catch_up_after: float = CATCH_UP_AFTER_S,
    ) -> None:
        self.path, self.store, self.model_id, self.dim = path, store, model_id, dim
        self.check_every = check_every
        self.threshold = threshold
        self.catch_up_after = catch_up_after
        self._behind_since: float | None = None  # when the held index fell behind the store
        self._current: VectorIndex | None = None
        self._checked = 0.0
        self._file_sig: tuple[int, int, int] | None = None
        self._loading: threading.Thread | None = None
        self._lock = threading.Lock()

    def get(self) -> VectorIndex:
        """The index to search now; never waits for a large reload."""
        now = time.monotonic()
        if self._current is None:
            self._swap(self._open())
            self._checked = now
        elif now - self._checked > self.check_every:
            self._checked = now
            self._maybe_refresh()
        assert self._current is not None
        return self._current

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background reload (tests and benchmarks)."""
        thread = self._loading
        if thread is not None:
            thread.join(timeout)

    def _maybe_refresh(self) -> None:
        current = self._current
        if current is None or current.generation == self.store.generation():
            self._behind_since = None
            return
        if current.kind == KIND_FLAT and current.ntotal < self.threshold:
            self._swap(self._open())
            return
        if self._signature() == self._file_sig and not self._writer_overdue():
            return  # the writer has not saved a newer file yet; keep the one we have
        self._behind_since = None  # at most one catch-up of our own per catch_up_after
        with self._lock:
            if self._loading is None or not self._loading.is_alive():
                self._loading = threading.Thread(
                    target=self._load_in_background, name="index-reload", daemon=True
                )
                self._loading.start()

    def _writer_overdue(self) -> bool:
        """Whether the file has stayed behind the library longer than a running writer
        lets it (a killed one never saves again)."""
        now = time.monotonic()
        if self._behind_since is None:
            self._behind_since = now
        return now - self._behind_since >= self.catch_up_after

    def _load_in_background(self) -> None:
        try:
            self._swap(self._open())
        except Exception:  # noqa: BLE001 - keep serving the old index; retried next check
            log.exception("reloading the vector index failed; still using the previous one")

    def _open(self) -> VectorIndex:
        sig = self._signature()
        index = open_index(self.path, self.store, self.model_id, self.dim, save=False)
        self._file_sig = sig
        return index

    def _swap(self, index: VectorIndex) -> None:
        self._current = index  # one reference assignment: searches see old or new, whole

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        # the inode too: each save is a rename of a new file, and two saves within the
        # clock's tick with the same size would otherwise look like one
        return st.st_ino, st.st_mtime_ns, st.st_size
