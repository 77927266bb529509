"""The watch daemon: keep the index in step with the photo folders while it runs.

``run_watch`` holds the writer lock for its whole life, does one full reconcile, then
turns the debounced filesystem events (``debounce``, ``watches``) into small index runs.

- Roots are re-read from the store every ``ROOTS_POLL_S``: new roots are watched and
  indexed, removed ones dropped, a root whose folder disappeared (unmounted drive) is
  marked offline with its photos kept, and reconciled when it comes back.
- Requests from other commands (``indexer.handoff``) are done here, by the one writer.
- A full reconcile runs every ``settings.reconcile_interval_s`` and after the kernel
  reports lost events, to catch anything the events missed.

Every write to the library goes through ``Daemon.writer`` (the one ``Writer``), and its
reads through the "library access" section; the loop itself only decides when.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from watchdog.observers import Observer

from searchapp.activity import read_writer
from searchapp.config import Settings
from searchapp.engine_server import Engine, EngineServer
from searchapp.errors import SearchAppError, StoreError, WriterBusyError
from searchapp.indexer.commands import Outcome, RemoveRoot, StopRequested
from searchapp.indexer.debounce import Debouncer
from searchapp.indexer.handoff import (
    Request,
    answer_request,
    has_requests,
    remove_stale_answers,
    take_requests,
)
from searchapp.indexer.lock import WriterLock
from searchapp.indexer.pipeline import IndexStats, Progress, model_lanes, model_threads
from searchapp.indexer.watches import ObserverFactory, Watches
from searchapp.indexer.writer import Writer
from searchapp.library import Library
from searchapp.model import ImageEncoder, ModelHost
from searchapp.store import RootRecord
from searchapp.vectors import VectorIndex

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often pending paths are checked
ROOTS_POLL_S = 2.0  # how often the store's roots (and their folders) are checked


class Daemon:
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
        self.writer = Writer(settings, lock, embedder)  # every write of the daemon goes here
        self.debouncer = Debouncer(str(settings.data_dir))
        self.offline: set[str] = set()
        self.runs = 0
        try:
            self.watches = Watches(self.debouncer, observer_factory)
        except BaseException:
            self.writer.close()
            raise

    def loop(self) -> int:
        """Run until ``stop`` is set; returns the number of index runs."""
        # watch first, then reconcile: changes during the reconcile are queued, not lost
        self.sync_roots()
        self.index_batch(None, "start-up reconcile")
        remove_stale_answers(self.settings)
        next_reconcile = time.monotonic() + self.settings.reconcile_interval_s
        next_roots = time.monotonic() + ROOTS_POLL_S
        while not self.stop.wait(POLL_S):
            now = time.monotonic()
            if now >= next_roots:
                self.sync_roots()
                self.reload_if_changed()
                next_roots = now + ROOTS_POLL_S
            if has_requests(self.settings):
                self.serve_requests()
            self.unload_if_idle()
            overflowed = self.debouncer.take_overflow()
            if overflowed or now >= next_reconcile:
                self.guarded(None, f"{'lost events' if overflowed else 'periodic'} reconcile")
                next_reconcile = time.monotonic() + self.settings.reconcile_interval_s
                continue
            ready = self.debouncer.take_ready()
            if ready:
                self.guarded(ready, f"{len(ready)} changed path(s)")
        return self.runs

    # ------------------------------------------------------------ roots
    def sync_roots(self) -> None:
        """Follow roots added/removed in the store and folders that came or went."""
        roots = {r.path: r for r in self.read_roots()}
        self.debouncer.set_roots(roots)
        for path in self.watches.roots():
            if path not in roots:
                self.watches.unwatch(path)
                self.debouncer.drop_below(path)
                log.info("watch: stopped watching %s (root removed)", path)
            elif self.watches.changed(path):
                self.watches.unwatch(path)
                self.go_offline(roots[path])
        for path, root in roots.items():
            if path in self.watches:
                continue
            if self.watches.watch(path):
                self.come_online(root)
            elif path not in self.offline:
                self.go_offline(root)

    def go_offline(self, root: RootRecord) -> None:
        self.offline.add(root.path)
        dropped = self.debouncer.drop_below(root.path)
        self.writer.mark_root_online(root, False)
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
    def index_batch(
        self, paths: list[str] | None, what: str, retry_failed: bool = False
    ) -> IndexStats:
        """Index ``paths`` (None: every root), then report it in the log and the lock."""
        started = time.time()
        try:
            stats = self.writer.index_photos(paths, retry_failed, self.check_stop)
        finally:
            self.runs += 1
        self.report(stats, what, started)
        return stats

    def report(self, stats: IndexStats, what: str, started: float) -> None:
        """One log line per run, the same in writer.json, and each new failure's reason."""
        summary = f"{stats.summary()}" + (f", embedded {stats.embedded}" if stats.embedded else "")
        self.lock.touch(f"{what}: {summary}")
        log.info("watch: %s: %s (%.1f s)", what, summary, stats.seconds)
        if stats.failed:
            for path, reason in self.read_failures(since=started):
                log.warning("watch: cannot index %s: %s", path, reason)

    def check_stop(self, _progress: Progress) -> None:
        """Called after each committed batch: stop there if asked to."""
        if self.stop.is_set():
            raise StopRequested

    def guarded(self, paths: list[str] | None, what: str) -> IndexStats | None:
        """One failed batch must not end the daemon; the next reconcile retries it."""
        try:
            return self.index_batch(paths, what)
        except (WriterBusyError, StoreError, StopRequested):
            raise  # the library itself is unusable (disk full), or we are stopping
        except Exception:  # noqa: BLE001
            log.exception("watch: indexing %s failed", what)
            return None

    def unload_if_idle(self) -> None:
        """Give the model's memory back after ``idle_unload_s`` without photos or queries."""
        unload = getattr(self.embedder, "unload_if_idle", None)  # a test's encoder may not
        if unload is not None:
            unload(self.settings.idle_unload_s)

    # ------------------------------------------------------------ requests
    def serve_requests(self) -> None:
        for request in take_requests(self.settings):
            if self.stop.is_set():
                return  # unanswered: the caller sees us gone and does it itself
            self.sync_roots()
            log.info("watch: doing a request: %s", request.command)
            outcome, error = self.do_request(request)
            answer_request(self.settings, request, outcome, error)
            self.sync_roots()  # roots it added or removed

    def do_request(self, request: Request) -> tuple[Outcome | None, SearchAppError | None]:
        """Run a handed-over command; its failure is the caller's answer, never our end."""
        started = time.time()
        try:
            outcome = self.writer.run(request.command, self.check_stop)
        except StopRequested:
            raise
        except SearchAppError as err:
            return None, err
        except Exception as err:  # noqa: BLE001 - the caller gets the reason, we keep running
            log.exception("watch: request %s failed", request.command)
            return None, SearchAppError(f"the watcher failed: {err}")
        if outcome.stats is not None:
            self.runs += 1
            self.report(outcome.stats, "requested index", started)
        elif isinstance(request.command, RemoveRoot):
            self.lock.touch(f"removed root {outcome.roots[0]}")
            log.info(
                "watch: removed root %s and its %d photos", *outcome.roots, outcome.removed_photos
            )
        else:
            self.lock.touch(f"added root(s) {', '.join(outcome.roots)}")
        return outcome, None

    def close(self) -> None:
        self.watches.stop()
        try:
            self.writer.save()
        except Exception:  # noqa: BLE001 - stale index files are rebuilt on open
            log.warning("watch: could not save the index on exit; it is rebuilt next time")
        self.writer.close()

    # ------------------------------------------------------------ library access
    # The only places the daemon touches the store and the vector index.
    def read_roots(self) -> list[RootRecord]:
        return self.writer.store.list_roots()

    def read_failures(self, since: float) -> list[tuple[str, str]]:
        """(path, reason) of the photos that failed in a run started at ``since``."""
        return [
            (photo.path, photo.failure_reason or "")
            for photo in self.writer.store.failures()
            if (photo.indexed_at or 0) >= since
        ]

    def reload_if_changed(self) -> None:
        """Someone else changed the library (an older client, a repair): reload vectors."""
        if self.writer.reload_if_changed():
            log.info("watch: the library changed outside the watcher; reloaded its vectors")


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
    daemon = server = host = None
    try:
        # the model lives in a child process (this one never imports torch), loads with the
        # first photo or query and exits when idle
        if embedder is None:
            embedder = host = ModelHost(
                settings, lanes=model_lanes(settings, "cpu"), threads=model_threads(settings)
            )
        daemon = Daemon(settings, lock, embedder, stop_event, observer_factory)
        server = start_engine(settings, embedder, lambda: daemon.writer.index)
        log.info(
            "watch: watching the roots of %s; Ctrl-C or SIGTERM stops after the current batch",
            settings.data_dir,
        )
        return daemon.loop()
    except StopRequested:
        log.info("watch: stopped between batches; the rest is picked up next start")
        return daemon.runs if daemon else 0
    finally:
        if server is not None:
            server.stop()
        if daemon is not None:
            daemon.close()
        if host is not None:
            host.close()
        lock.release()


def start_engine(
    settings: Settings, encoder: ImageEncoder, index: Callable[[], VectorIndex]
) -> EngineServer | None:
    """Serve searches with the daemon's model and its writer's index (one copy, always
    current); without the engine indexing still goes on."""
    server = EngineServer(Engine(settings, Library(settings, encoder, index_source=index)))
    try:
        server.start()
    except (OSError, SearchAppError) as err:
        log.warning("watch: cannot serve searches on %s (%s); clients search themselves",
                    server.path, err)  # fmt: skip
        return None
    return server


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
            if holder is not None and holder.is_watcher:
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
