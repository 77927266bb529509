"""Folder watcher: keep the index in step with the photo folders while it runs.

``run_watch`` holds the writer lock for its whole life, does one full reconcile, then
turns filesystem events (watchdog) into small ``IndexRun.run(paths=...)`` runs. A path is
processed only once its size and mtime have stayed the same for ``DEBOUNCE_S``, so files
still being copied are not read half-way. Vanished paths (deletes, the old side of a move)
wait until the other pending paths are settled, so a move's old and new path land in the
same run and the photo keeps its id and vector. A full reconcile also runs every
``settings.reconcile_interval_s`` to catch anything the events missed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from indexer.lock import WriterLock
from indexer.pipeline import IndexRun
from searchapp.config import Settings
from searchapp.decoder import is_photo_name
from searchapp.embedder import ImageEncoder, load_embedder
from searchapp.errors import StoreError, WriterBusyError
from searchapp.paths import is_under
from searchapp.store import Store
from searchapp.vectors import open_index

log = logging.getLogger(__name__)

DEBOUNCE_S = 1.0  # size and mtime must stay unchanged this long before a file is read
POLL_S = 0.2  # how often pending paths are checked
MAX_GONE_HOLD_S = 10.0  # longest a vanished path waits for other pending paths to settle
TEMP_SUFFIXES = (".part", ".tmp", "~", ".swp", ".crdownload")

_GONE = ("gone",)
_DIR = ("dir",)


@dataclass
class _Pending:
    signature: tuple | None  # last seen (size, mtime_ns), _DIR or _GONE; None: not yet seen
    stable_since: float
    first_gone: float | None = None


class _Collector(FileSystemEventHandler):
    """Collects the photo files and folders events touched; thread-safe."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = list(roots)
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def set_roots(self, roots: list[str]) -> None:
        with self._lock:
            self.roots = list(roots)

    # watchdog calls this from its own thread
    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind not in ("created", "modified", "deleted", "moved"):
            return
        if event.is_directory and kind == "modified":
            return  # a folder's mtime changes with its content; the files report themselves
        paths = [_text(event.src_path)]
        if kind == "moved":
            paths.append(_text(event.dest_path))
        for path in paths:
            if self._wanted(path, event.is_directory):
                self.add(path)

    def add(self, path: str) -> None:
        with self._lock:
            # every event restarts the quiet period
            self._pending[path] = _Pending(None, time.monotonic())

    def _wanted(self, path: str, is_dir: bool) -> bool:
        with self._lock:
            roots = list(self.roots)
        root = next((r for r in roots if is_under(path, r)), None)
        if root is None or path == root:
            return False
        parts = os.path.relpath(path, root).split(os.sep)
        if any(p.startswith(".") for p in parts):
            return False  # hidden files and anything in hidden folders: the scanner skips them
        name = parts[-1]
        if name.endswith(TEMP_SUFFIXES):
            return False
        return is_dir or is_photo_name(name)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def take_ready(self, now: float | None = None) -> list[str]:
        """Remove and return the paths that are ready to index (may be empty)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            items = list(self._pending.items())
        settled: list[str] = []
        gone: list[str] = []
        unsettled: list[str] = []
        for path, p in items:
            sig = _signature(path)
            if sig != p.signature:
                p.signature = sig
                p.stable_since = now
            if sig == _GONE:
                p.first_gone = p.first_gone or now
            else:
                p.first_gone = None
            if now - p.stable_since < DEBOUNCE_S:
                unsettled.append(path)
            elif sig == _GONE:
                gone.append(path)
            else:
                settled.append(path)
        # a folder is ready only when nothing pending below it is still changing
        signatures = {path: p.signature for path, p in items}
        settled = [
            s
            for s in settled
            if signatures[s] != _DIR or not any(is_under(u, s) for u in unsettled)
        ]
        if gone and unsettled:
            # hold everything so a move's old and new side land in one run (keeps the id)
            oldest = min(p.first_gone or now for path, p in items if path in gone)
            if now - oldest < MAX_GONE_HOLD_S:
                return []
        ready = settled + gone
        if not ready:
            return []
        with self._lock:
            for path in ready:
                cur = self._pending.get(path)
                # a newer event since we looked keeps the path pending
                if cur is not None and cur.stable_since <= now - DEBOUNCE_S:
                    del self._pending[path]
        return sorted(ready)


def _text(path: str | bytes) -> str:
    return os.fsdecode(path)


def _signature(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return _GONE
    if os.path.isdir(path):
        return _DIR
    return (st.st_size, st.st_mtime_ns)


class _Watches:
    """One recursive watchdog watch per online root."""

    def __init__(self, observer: Observer, handler: _Collector) -> None:
        self.observer = observer
        self.handler = handler
        self.watches: dict[str, object] = {}

    def sync(self, roots: list[str]) -> None:
        self.handler.set_roots(roots)
        for path in roots:
            if path in self.watches or not os.path.isdir(path):
                continue
            try:
                self.watches[path] = self.observer.schedule(self.handler, path, recursive=True)
            except OSError as err:
                log.warning("cannot watch %s: %s", path, err)


def run_watch(
    settings: Settings,
    stop_event: threading.Event | None = None,
    embedder: ImageEncoder | None = None,
) -> int:
    """Watch every root until ``stop_event`` is set; returns the number of batch runs.

    Raises ``WriterBusyError`` at once when another process holds the writer lock.
    """
    stop_event = stop_event or threading.Event()
    lock = WriterLock(settings, "watch").acquire()
    store = None
    index = None
    observer = None
    runs = 0
    try:
        embedder = embedder or load_embedder(settings)
        store = Store(settings.db_path)
        index = open_index(settings.index_path, store, embedder.model_id, embedder.dim)
        collector = _Collector([r.path for r in store.list_roots()])
        observer = Observer()
        watches = _Watches(observer, collector)
        # watch first, then reconcile: changes during the reconcile are queued, not lost
        watches.sync([r.path for r in store.list_roots()])
        observer.start()

        def index_run(paths: list[str] | None) -> None:
            nonlocal runs
            stats = IndexRun(settings, store, embedder, index).run(paths=paths)
            runs += 1
            lock.touch()
            what = "full reconcile" if paths is None else f"{len(paths)} changed path(s)"
            log.info("watch: %s: %s (%.1f s)", what, stats.summary(), stats.seconds)

        index_run(None)
        next_reconcile = time.monotonic() + settings.reconcile_interval_s
        while not stop_event.wait(POLL_S):
            if time.monotonic() >= next_reconcile:
                watches.sync([r.path for r in store.list_roots()])
                _guarded(index_run, None)
                next_reconcile = time.monotonic() + settings.reconcile_interval_s
                continue
            ready = collector.take_ready()
            if ready:
                _guarded(index_run, ready)
        return runs
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        if store is not None and index is not None:
            try:
                index.save(settings.index_path, store.generation())
            except Exception:  # noqa: BLE001 - stale index files are rebuilt on open
                log.warning("could not save the index on exit; it is rebuilt next time")
        if store is not None:
            store.close()
        lock.release()


def _guarded(fn, paths: list[str] | None) -> None:  # noqa: ANN001
    """One failed batch must not end the daemon; the next reconcile retries it."""
    try:
        fn(paths)
    except (WriterBusyError, StoreError):
        raise  # the library itself is unusable (disk full, locked): stop the daemon
    except Exception:  # noqa: BLE001
        log.exception("watch: indexing %s failed", "all roots" if paths is None else paths)
