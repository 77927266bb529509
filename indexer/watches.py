"""Filesystem watches on the roots (watchdog), feeding their events into a ``Debouncer``.

One recursive watch per online root. Where the OS runs out of watches (inotify's
``max_user_watches`` / ``max_user_instances``), the root is polled instead and one warning
names the fix. Watchdog only logs a kernel queue overflow (lost events); ``Watches``
turns that log line into ``Debouncer.mark_overflow`` so the daemon reconciles.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from searchapp.indexer.debounce import Debouncer

log = logging.getLogger(__name__)

POLLING_INTERVAL_S = 5.0  # tree snapshot interval for roots watched by polling
WATCH_LIMIT_FIX = (
    "raise it with: sudo sysctl fs.inotify.max_user_watches=524288 (to keep it, add "
    "'fs.inotify.max_user_watches=524288' to /etc/sysctl.d/90-searchapp.conf)"
)
INSTANCE_LIMIT_FIX = (
    "raise it with: sudo sysctl fs.inotify.max_user_instances=1024 (to keep it, add "
    "'fs.inotify.max_user_instances=1024' to /etc/sysctl.d/90-searchapp.conf)"
)
WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")

ObserverFactory = Callable[[], BaseObserver]


class EventHandler(FileSystemEventHandler):
    """Feeds one observer's events into the debouncer (watchdog calls it on its thread)."""

    def __init__(self, debouncer: Debouncer, closes: bool) -> None:
        self.debouncer = debouncer
        self.closes = closes  # this observer reports IN_CLOSE_WRITE ("closed")

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write") or (event.is_directory and kind == "modified"):
            return  # readers (ourselves included) and folder mtimes say nothing new
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if kind == "moved" else ""
        log.debug("event: %s %s%s", kind, src, f" -> {dest}" if dest else "")
        add = self.debouncer.add
        is_dir = event.is_directory
        if kind == "moved":
            add(src, is_dir=is_dir, closes=self.closes, writing=False)
            add(dest, is_dir=is_dir, closes=self.closes, writing=False)  # a renamed file is done
        elif kind == "modified" and not is_dir:
            # only a real write marks the file open: watchdog also makes up "created"
            # events for files found in new folders, which no close would ever follow
            add(src, closes=self.closes, writing=self.closes)
        elif kind == "closed":
            add(src, is_dir=is_dir, closes=True, writing=False)
        elif kind == "deleted":
            add(src, is_dir=is_dir, closes=self.closes, writing=False)
        elif kind in ("created", "attrib"):
            add(src, is_dir=is_dir, closes=self.closes)  # no news about writers


class OverflowSignal(logging.Handler):
    """A logging handler that marks the debouncer overflowed on watchdog's overflow line."""

    def __init__(self, debouncer: Debouncer) -> None:
        super().__init__(logging.WARNING)
        self.debouncer = debouncer

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.debouncer.mark_overflow()


@dataclass
class _Watched:
    observer: BaseObserver
    watch: ObservedWatch
    identity: tuple[int, int]  # (st_dev, st_ino): a different folder put in its place differs


class Watches:
    """One recursive watch per online root: native events, or polling when the OS is out
    of watches. Starts its observer at once; ``stop()`` ends it."""

    def __init__(self, debouncer: Debouncer, observer_factory: ObserverFactory) -> None:
        self.debouncer = debouncer
        self.native = observer_factory()
        self.native.start()  # started first, so a failing watch fails in schedule()
        self.native_handler = EventHandler(debouncer, reports_closes(self.native))
        self.polling: BaseObserver | None = None
        self._by_root: dict[str, _Watched] = {}
        self._warned = False
        self._overflow = OverflowSignal(debouncer)
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).addHandler(self._overflow)

    def __contains__(self, root: str) -> bool:
        return root in self._by_root

    def roots(self) -> list[str]:
        """The roots being watched now."""
        return list(self._by_root)

    def watch(self, root: str) -> bool:
        """Start watching ``root``; False when its folder is not there."""
        identity = folder_identity(root)
        if identity is None:
            return False
        try:
            watch = self.native.schedule(self.native_handler, root, recursive=True)
            observer = self.native
        except OSError as err:
            self._warn_fallback(root, err)
            observer = self._polling()
            watch = observer.schedule(EventHandler(self.debouncer, False), root, recursive=True)
        self._by_root[root] = _Watched(observer, watch, identity)
        return True

    def unwatch(self, root: str) -> None:
        watched = self._by_root.pop(root, None)
        if watched is None:
            return
        # the kernel may already have dropped a watch whose folder went away
        with contextlib.suppress(KeyError, OSError):
            watched.observer.unschedule(watched.watch)

    def changed(self, root: str) -> bool:
        """True when the watched folder is gone or another folder now has its path."""
        return folder_identity(root) != self._by_root[root].identity

    def stop(self) -> None:
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).removeHandler(self._overflow)
        observers = [o for o in (self.native, self.polling) if o is not None]
        for observer in observers:
            observer.stop()
        for observer in observers:
            if observer.is_alive():
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


def folder_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the folder at ``path``; None when there is no folder."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isdir(path):
        return None
    return (st.st_dev, st.st_ino)


def reports_closes(observer: BaseObserver) -> bool:
    """True for inotify, which reports when a writer closes a file."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return False
    return isinstance(observer, InotifyObserver)
