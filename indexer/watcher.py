"""Folder watcher: keep the index in step with the photo folders while it runs.

``run_watch`` holds the writer lock for its whole life, does one full reconcile, then
turns filesystem events (watchdog) into small ``index_roots(paths=...)`` runs.

- A file is read only once it is complete: where the OS reports closes (inotify) it waits
  for the writer's close and then a short quiet period; elsewhere its size and mtime must
  stay the same for ``DEBOUNCE_S``.
- Vanished paths (deletes, the old side of a move) wait until the other pending paths are
  settled, so a move's old and new path land in one run and keep the photo's id and vector.
- Roots are re-read from the store every ``ROOTS_POLL_S``: new roots are watched and
  indexed, removed ones dropped, a root whose folder disappeared (unmounted drive) is
  marked offline with its photos kept, and reconciled when it comes back.
- If the OS runs out of watches, the root is polled instead (one warning names the fix).
- Requests from other commands (``indexer.handoff``) are done here, by the one writer.
- A full reconcile runs every ``settings.reconcile_interval_s`` and after the kernel
  reports lost events, to catch anything the events missed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from searchapp.activity import read_writer
from searchapp.config import Settings
from searchapp.decoder import is_photo_name
from searchapp.embedder import ImageEncoder, LazyEmbedder
from searchapp.errors import SearchAppError, StoreError, WriterBusyError
from searchapp.indexer.handoff import (
    Request,
    answer_request,
    has_requests,
    remove_stale_answers,
    take_requests,
)
from searchapp.indexer.lock import WriterLock
from searchapp.indexer.pipeline import IndexStats, Progress, index_roots
from searchapp.paths import is_under
from searchapp.store import RootRecord, Store
from searchapp.vectors import open_index

log = logging.getLogger(__name__)

DEBOUNCE_S = 1.0  # quiet time before reading a file when the OS does not report closes
CLOSED_QUIET_S = 0.3  # quiet time after the writer closed the file (inotify)
OPEN_MAX_WAIT_S = 60.0  # a file left open for writing is read after this much quiet
POLL_S = 0.2  # how often pending paths are checked
ROOTS_POLL_S = 2.0  # how often the store's roots (and their folders) are checked
POLLING_INTERVAL_S = 5.0  # tree snapshot interval for roots watched by polling
MAX_GONE_HOLD_S = 10.0  # longest a vanished path waits for other pending paths to settle
BURST_MIN = 32  # while more changes are arriving, wait to hand over at least this many...
BURST_WAIT_S = 1.0  # ...but no longer than this past the point they were ready
MAX_PATHS_PER_RUN = 50  # more ready files than this are handed over as their folders
TEMP_SUFFIXES = (".part", ".tmp", "~", ".swp", ".swx", ".crdownload", ".download", ".partial")
WATCH_LIMIT_FIX = (
    "raise it with: sudo sysctl fs.inotify.max_user_watches=524288 (to keep it, add "
    "'fs.inotify.max_user_watches=524288' to /etc/sysctl.d/90-searchapp.conf)"
)
INSTANCE_LIMIT_FIX = (
    "raise it with: sudo sysctl fs.inotify.max_user_instances=1024 (to keep it, add "
    "'fs.inotify.max_user_instances=1024' to /etc/sysctl.d/90-searchapp.conf)"
)

_GONE = ("gone",)
_DIR = ("dir",)

ObserverFactory = Callable[[], BaseObserver]


class _StopRequested(KeyboardInterrupt):
    """Raised between batches to stop a long run; a KeyboardInterrupt, so the run's
    record says 'interrupted' and the index is saved as for Ctrl-C."""


# ---------------------------------------------------------------- collecting events
@dataclass
class _Pending:
    signature: tuple | None  # last seen (size, mtime_ns), _DIR or _GONE; None: not yet seen
    stable_since: float
    closes: bool = False  # the OS reports when this file's writer closes it
    writing: bool = False  # a writer has it open (seen written, not yet closed)
    first_gone: float | None = None

    def quiet_needed(self) -> float:
        if self.signature == _DIR or not self.closes:
            # files copied into a new folder before its watch existed report nothing
            return DEBOUNCE_S
        if self.signature == _GONE:
            return CLOSED_QUIET_S
        return OPEN_MAX_WAIT_S if self.writing else CLOSED_QUIET_S


class _Collector:
    """The photo files and folders events touched, until they are ready; thread-safe."""

    def __init__(self, ignore_below: str | None = None) -> None:
        self.roots: list[str] = []
        self.ignore_below = ignore_below  # the data dir, should it sit inside a root
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self.overflowed = threading.Event()

    def set_roots(self, roots: list[str]) -> None:
        with self._lock:
            self.roots = list(roots)

    def wanted(self, path: str, is_dir: bool) -> bool:
        with self._lock:
            roots = list(self.roots)
        root = next((r for r in roots if is_under(path, r)), None)
        if root is None or path == root:
            return False
        if self.ignore_below and is_under(path, self.ignore_below):
            return False
        parts = os.path.relpath(path, root).split(os.sep)
        if any(p.startswith(".") for p in parts):
            return False  # hidden files and anything in hidden folders: the scanner skips them
        name = parts[-1]
        if name.endswith(TEMP_SUFFIXES) or name.startswith("~$"):
            return False
        return is_dir or is_photo_name(name)

    def add(self, path: str, *, closes: bool = False, writing: bool | None = None) -> None:
        """Note a change at ``path``; every change restarts its quiet period."""
        with self._lock:
            old = self._pending.get(path)
            p = _Pending(None, time.monotonic(), closes)
            p.writing = old.writing if (old and writing is None) else bool(writing)
            self._pending[path] = p

    def drop_below(self, folder: str) -> int:
        """Forget pending paths below ``folder`` (its drive went away)."""
        with self._lock:
            gone = [p for p in self._pending if is_under(p, folder)]
            for p in gone:
                del self._pending[p]
        return len(gone)

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
            p.first_gone = (p.first_gone or now) if sig == _GONE else None
            if now - p.stable_since < p.quiet_needed():
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
        if unsettled and len(ready) < BURST_MIN:
            # a burst is still arriving: fewer, fuller runs (model batches, one scan each)
            pending = {path: p for path, p in items}
            oldest = min(pending[r].stable_since + pending[r].quiet_needed() for r in ready)
            if now - oldest < BURST_WAIT_S:
                return []
        with self._lock:
            for path in ready:
                cur = self._pending.get(path)
                # a newer event since we looked keeps the path pending
                if cur is not None and cur.stable_since <= now - cur.quiet_needed():
                    del self._pending[path]
        return _collapse(sorted(ready), unsettled)


class _Handler(FileSystemEventHandler):
    """Feeds one observer's events into the collector (watchdog calls it on its thread)."""

    def __init__(self, collector: _Collector, closes: bool) -> None:
        self.collector = collector
        self.closes = closes  # this observer reports IN_CLOSE_WRITE ("closed")

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write") or (event.is_directory and kind == "modified"):
            return  # readers (ourselves included) and folder mtimes say nothing new
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if kind == "moved" else ""
        log.debug("event: %s %s%s", kind, src, f" -> {dest}" if dest else "")
        if kind not in ("created", "modified", "deleted", "moved", "closed", "attrib"):
            return
        add = self.collector.add
        if kind == "moved":
            if self.collector.wanted(src, event.is_directory):
                add(src, closes=self.closes, writing=False)
            if self.collector.wanted(dest, event.is_directory):
                add(dest, closes=self.closes, writing=False)  # a renamed file is complete
            return
        if not self.collector.wanted(src, event.is_directory):
            return
        if kind == "modified" and not event.is_directory:
            # only a real write marks the file open: watchdog also makes up "created"
            # events for files found in new folders, which no close would ever follow
            add(src, closes=self.closes, writing=self.closes)
        elif kind == "closed":
            add(src, closes=True, writing=False)
        elif kind == "deleted":
            add(src, closes=self.closes, writing=False)
        else:
            add(src, closes=self.closes)  # created, attrib: no news about writers


class _OverflowSignal(logging.Handler):
    """Watchdog only logs a kernel queue overflow; turn that log line into a reconcile."""

    def __init__(self, collector: _Collector) -> None:
        super().__init__(logging.WARNING)
        self.collector = collector

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.collector.overflowed.set()


def _signature(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return _GONE
    if os.path.isdir(path):
        return _DIR
    return (st.st_size, st.st_mtime_ns)


def _collapse(ready: list[str], unsettled: list[str]) -> list[str]:
    """Hand a burst over as folders (one scan each) instead of thousands of paths.

    A folder stands in for its files only when nothing below it is still being written.
    """
    if len(ready) <= MAX_PATHS_PER_RUN:
        return ready
    out: set[str] = set()
    for path in ready:
        parent = os.path.dirname(path)
        if any(u != parent and is_under(u, parent) for u in unsettled):
            out.add(path)
        else:
            out.add(parent)
    return sorted(p for p in out if not any(q != p and is_under(p, q) for q in out))


# ---------------------------------------------------------------- watches
@dataclass
class _Watched:
    observer: BaseObserver
    watch: object
    identity: tuple[int, int]  # (st_dev, st_ino): a different folder put in its place differs


class _Watches:
    """One recursive watch per online root: native events, or polling when the OS is out
    of watches."""

    def __init__(self, collector: _Collector, observer_factory: ObserverFactory) -> None:
        self.collector = collector
        self.native = observer_factory()
        self.native.start()  # started first, so a failing watch fails in schedule()
        self.native_handler = _Handler(collector, _reports_closes(self.native))
        self.polling: BaseObserver | None = None
        self.by_root: dict[str, _Watched] = {}
        self._warned = False

    def watch(self, root: str) -> bool:
        """Start watching ``root``; False when its folder is not there."""
        identity = _identity(root)
        if identity is None:
            return False
        try:
            watch = self.native.schedule(self.native_handler, root, recursive=True)
            observer = self.native
        except OSError as err:
            self._warn_fallback(root, err)
            observer = self._polling()
            watch = observer.schedule(_Handler(self.collector, False), root, recursive=True)
        self.by_root[root] = _Watched(observer, watch, identity)
        return True

    def unwatch(self, root: str) -> None:
        watched = self.by_root.pop(root, None)
        if watched is None:
            return
        # the kernel may already have dropped a watch whose folder went away
        with contextlib.suppress(KeyError, OSError):
            watched.observer.unschedule(watched.watch)

    def changed(self, root: str) -> bool:
        """True when the watched folder is gone or another folder now has its path."""
        return _identity(root) != self.by_root[root].identity

    def polled(self) -> list[str]:
        return [r for r, w in self.by_root.items() if w.observer is self.polling]

    def stop(self) -> None:
        for observer in (self.native, self.polling):
            if observer is not None:
                observer.stop()
        for observer in (self.native, self.polling):
            if observer is not None and observer.is_alive():
                observer.join(timeout=5)

    def _polling(self) -> BaseObserver:
        if self.polling is None:
            self.polling = PollingObserver(timeout=POLLING_INTERVAL_S)
            self.polling.start()
        return self.polling

    def _warn_fallback(self, root: str, err: OSError) -> None:
        if err.errno not in (errno.ENOSPC, errno.EMFILE):
            log.warning("watch: cannot watch %s (%s); polling it instead", root, err)
            return
        if not self._warned:
            fix = WATCH_LIMIT_FIX if err.errno == errno.ENOSPC else INSTANCE_LIMIT_FIX
            log.warning(
                "watch: the OS limit on file watches is reached (%s); polling %s every %.0f s "
                "instead; %s",
                err.strerror or err,
                root,
                POLLING_INTERVAL_S,
                fix,
            )
            self._warned = True
        else:
            log.info("watch: polling %s (OS watch limit reached)", root)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isdir(path):
        return None
    return (st.st_dev, st.st_ino)


def _reports_closes(observer: BaseObserver) -> bool:
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return False
    return isinstance(observer, InotifyObserver)


# ---------------------------------------------------------------- the daemon
class _Daemon:
    """The watcher's state and main loop; one per ``run_watch``."""

    def __init__(
        self,
        settings: Settings,
        lock: WriterLock,
        embedder: ImageEncoder,
        stop: threading.Event,
        observer_factory: ObserverFactory,
    ) -> None:
        self.settings = settings
        self.lock = lock
        self.embedder = embedder
        self.stop = stop
        self.store = Store(settings.db_path)
        self.index = open_index(settings.index_path, self.store, embedder.model_id, embedder.dim)
        self.generation = self.store.generation()
        self.collector = _Collector(str(settings.data_dir))
        self.watches = _Watches(self.collector, observer_factory)
        self.offline: set[str] = set()
        self.runs = 0

    def loop(self) -> int:
        # watch first, then reconcile: changes during the reconcile are queued, not lost
        self.sync_roots()
        self.index_run(None, "start-up reconcile")
        remove_stale_answers(self.settings)
        next_reconcile = time.monotonic() + self.settings.reconcile_interval_s
        next_roots = time.monotonic() + ROOTS_POLL_S
        while not self.stop.wait(POLL_S):
            now = time.monotonic()
            if now >= next_roots:
                self.sync_roots()
                self.reload_if_foreign_write()
                next_roots = now + ROOTS_POLL_S
            if has_requests(self.settings):
                self.serve_requests()
            if now >= next_reconcile or self.collector.overflowed.is_set():
                why = "lost events" if self.collector.overflowed.is_set() else "periodic"
                self.collector.overflowed.clear()
                self.guarded(None, f"{why} reconcile")
                next_reconcile = time.monotonic() + self.settings.reconcile_interval_s
                continue
            ready = self.collector.take_ready()
            if ready:
                self.guarded(ready, f"{len(ready)} changed path(s)")
        return self.runs

    # ------------------------------------------------------------ roots
    def sync_roots(self) -> None:
        """Follow roots added/removed in the store and folders that came or went."""
        roots = {r.path: r for r in self.store.list_roots()}
        self.collector.set_roots(list(roots))
        for path in list(self.watches.by_root):
            if path not in roots:
                self.watches.unwatch(path)
                self.collector.drop_below(path)
                log.info("watch: stopped watching %s (root removed)", path)
            elif self.watches.changed(path):
                self.watches.unwatch(path)
                self.go_offline(roots[path])
        for path, root in roots.items():
            if path in self.watches.by_root:
                continue
            if self.watches.watch(path):
                self.come_online(root)
            elif path not in self.offline:
                self.go_offline(root)

    def go_offline(self, root: RootRecord) -> None:
        self.offline.add(root.path)
        dropped = self.collector.drop_below(root.path)
        self.store.set_root_online(root.id, False)
        log.warning(
            "watch: %s is gone (unmounted?); its photos are kept and marked offline%s",
            root.path,
            f" ({dropped} pending change(s) dropped)" if dropped else "",
        )

    def come_online(self, root: RootRecord) -> None:
        was_offline = root.path in self.offline or not root.online
        self.offline.discard(root.path)
        if self.runs == 0:
            return  # the start-up reconcile covers it
        what = "is back" if was_offline else "is a new root"
        log.info("watch: %s %s; indexing it", root.path, what)
        self.guarded([root.path], f"root {root.path}")

    # ------------------------------------------------------------ indexing
    def index_run(self, paths: list[str] | None, what: str) -> IndexStats:
        started = time.time()
        try:
            stats = index_roots(
                self.settings,
                self.store,
                self.embedder,
                self.index,
                self.save,
                paths=paths,
                progress=self.check_stop,
                kind="watch",
            )
        finally:
            self.generation = self.store.generation()
            self.runs += 1
        summary = f"{stats.summary()}" + (f", embedded {stats.embedded}" if stats.embedded else "")
        self.lock.touch(f"{what}: {summary}")
        log.info("watch: %s: %s (%.1f s)", what, summary, stats.seconds)
        if stats.failed:
            self.log_failures(started)
        return stats

    def check_stop(self, _progress: Progress) -> None:
        """Called after each committed batch: stop there if asked to."""
        if self.stop.is_set():
            raise _StopRequested

    def guarded(self, paths: list[str] | None, what: str) -> IndexStats | None:
        """One failed batch must not end the daemon; the next reconcile retries it."""
        try:
            return self.index_run(paths, what)
        except (WriterBusyError, StoreError, _StopRequested):
            raise  # the library itself is unusable (disk full), or we are stopping
        except Exception:  # noqa: BLE001
            log.exception("watch: indexing %s failed", what)
            return None

    def log_failures(self, since: float) -> None:
        for photo in self.store.failures():
            if (photo.indexed_at or 0) >= since:
                log.warning("watch: cannot index %s: %s", photo.path, photo.failure_reason)

    def reload_if_foreign_write(self) -> None:
        """Someone else changed the library (an older client, a repair): reload vectors."""
        generation = self.store.generation()
        if generation != self.generation:
            log.info("watch: the library changed outside the watcher; reloading its vectors")
            self.index = open_index(
                self.settings.index_path, self.store, self.embedder.model_id, self.embedder.dim
            )
            self.generation = generation

    def save(self) -> None:
        self.index.save(self.settings.index_path, self.store.generation())

    # ------------------------------------------------------------ requests
    def serve_requests(self) -> None:
        for request in take_requests(self.settings):
            if self.stop.is_set():
                return  # left queued: the caller sees us gone and does it itself
            self.sync_roots()
            log.info("watch: doing a request: %s %s", request.action, request.paths or "")
            answer_request(self.settings, request, self.do_request(request))

    def do_request(self, request: Request) -> dict:
        try:
            if request.action == "index":
                if request.retry_failed:
                    self.store.clear_failures(request.paths)
                stats = self.index_run(request.paths, "requested index")
                return {"ok": True, "stats": stats.as_dict(), "pid": os.getpid()}
            if request.action == "remove_root":
                return self.remove_root(request.root or "")
            return {"ok": False, "error": f"unknown request {request.action!r}"}
        except _StopRequested:
            raise
        except SearchAppError as err:
            return {"ok": False, "error": str(err)}
        except Exception as err:  # noqa: BLE001 - the caller gets the reason, we keep running
            log.exception("watch: request %s failed", request.action)
            return {"ok": False, "error": f"the watcher failed: {err}"}

    def remove_root(self, path: str) -> dict:
        root, ids = self.store.remove_root(path)
        self.index.remove(ids)
        self.generation = self.store.generation()
        self.save()
        self.sync_roots()
        self.lock.touch(f"removed root {root.path}")
        log.info("watch: removed root %s and its %d photos", root.path, len(ids))
        return {"ok": True, "root": root.path, "removed": len(ids)}

    def close(self) -> None:
        self.watches.stop()
        try:
            self.save()
        except Exception:  # noqa: BLE001 - stale index files are rebuilt on open
            log.warning("watch: could not save the index on exit; it is rebuilt next time")
        self.store.close()


def run_watch(
    settings: Settings,
    stop_event: threading.Event | None = None,
    embedder: ImageEncoder | None = None,
    *,
    observer_factory: ObserverFactory = Observer,
) -> int:
    """Watch every root until ``stop_event`` is set; returns the number of index runs.

    Raises ``WriterBusyError`` at once when another watcher runs on this library; waits
    for a one-off ``searchapp index`` to finish. ``observer_factory`` makes the native
    observer (tests pass one that fails like a system out of inotify watches).
    """
    stop_event = stop_event or threading.Event()
    lock = acquire_watch_lock(settings, stop_event)
    if lock is None:
        return 0
    daemon = None
    overflow = None
    try:
        daemon = _Daemon(
            # the model loads with the first photo that needs it: an idle daemon holds none
            settings,
            lock,
            embedder or LazyEmbedder(settings),
            stop_event,
            observer_factory,
        )
        log.info(
            "watch: watching the roots of %s; Ctrl-C or SIGTERM stops after the current batch",
            settings.data_dir,
        )
        overflow = _OverflowSignal(daemon.collector)
        logging.getLogger("watchdog.observers.inotify_c").addHandler(overflow)
        logging.getLogger("watchdog.observers.inotify").addHandler(overflow)
        return daemon.loop()
    except _StopRequested:
        log.info("watch: stopped between batches; the rest is picked up next start")
        return daemon.runs if daemon else 0
    finally:
        if overflow is not None:
            logging.getLogger("watchdog.observers.inotify_c").removeHandler(overflow)
            logging.getLogger("watchdog.observers.inotify").removeHandler(overflow)
        if daemon is not None:
            daemon.close()
        lock.release()


def acquire_watch_lock(settings: Settings, stop: threading.Event) -> WriterLock | None:
    """The writer lock for a watcher: refused if another watcher has it, else waited for.

    Returns None when ``stop`` is set while waiting.
    """
    lock = WriterLock(settings, "watch")
    warned = False
    while True:
        try:
            return lock.acquire()
        except WriterBusyError:
            holder = read_writer(settings)
            if holder is not None and holder.kind == "watch":
                started = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.since))
                raise WriterBusyError(
                    f"a watcher is already running on {settings.data_dir} (pid {holder.pid}, "
                    f"since {started}); only one may run; stop it first: kill {holder.pid}"
                ) from None
            if holder is not None and not warned:
                warned = True
                log.warning(
                    "watch: 'searchapp %s' (pid %d) is writing this library; waiting for it",
                    holder.kind,
                    holder.pid,
                )
        if stop.wait(1.0):
            return None
