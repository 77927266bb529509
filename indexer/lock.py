"""The single-writer lock of a library, and who holds it.

Only one process writes a library at a time (``searchapp index``, ``searchapp watch`` or
the page's "index" buttons). The lock is a ``filelock`` file in the data dir, released by
the OS when its holder dies (kill -9 included), so it never goes stale. Beside it,
``writer.json`` says who holds it (pid, kind, since, last activity) for ``status``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from searchapp.config import Settings
from searchapp.errors import WriterBusyError


@dataclass(frozen=True)
class WriterInfo:
    """Who holds the writer lock: ``kind`` is ``index``, ``watch`` or ``ui``."""

    pid: int
    kind: str
    since: float
    last_activity: float
    activity: str = ""  # what the holder last did, e.g. "added 3, removed 1"


def _info_path(settings: Settings) -> Path:
    return settings.data_dir / "writer.json"


class WriterLock:
    """Hold the library's writer lock; use as ``with WriterLock(settings, "index"):``."""

    def __init__(self, settings: Settings, kind: str) -> None:
        self.settings = settings
        self.kind = kind
        self._lock = FileLock(str(settings.lock_path))
        self._since = 0.0

    def acquire(
        self, wait_s: float = 0.0, on_wait: Callable[[WriterInfo | None], None] | None = None
    ) -> WriterLock:
        """Take the lock, waiting up to ``wait_s``; raises ``WriterBusyError`` if held."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = read_writer(self.settings)
            if wait_s <= 0:
                raise WriterBusyError(_busy_message(self.settings, holder)) from None
            if on_wait is not None:
                on_wait(holder)
            try:
                self._lock.acquire(timeout=wait_s)
            except Timeout:
                raise WriterBusyError(_busy_message(self.settings, holder)) from None
        self._since = time.time()
        self.touch()
        return self

    def touch(self, activity: str = "") -> None:
        """Record activity now (the daemon calls this after each batch)."""
        info = WriterInfo(os.getpid(), self.kind, self._since, time.time(), activity)
        path = _info_path(self.settings)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(info)))
        os.replace(tmp, path)

    def release(self) -> None:
        if self._lock.is_locked:
            _info_path(self.settings).unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_writer(settings: Settings) -> WriterInfo | None:
    """The live holder of the writer lock, or None (a dead holder's file is ignored)."""
    try:
        info = WriterInfo(**json.loads(_info_path(settings).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not _alive_since(info.pid, info.since):
        return None
    return info


def _alive_since(pid: int, since: float) -> bool:
    """True when ``pid`` runs and was started before ``since`` (a reused pid is not it)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return psutil.pid_exists(pid)
    return started <= since + 1.0


def describe_writer(holder: WriterInfo | None, nobody: str = "another searchapp process") -> str:
    """``'searchapp watch' (pid 42)``, or ``nobody`` when the holder is unknown."""
    return f"'searchapp {holder.kind}' (pid {holder.pid})" if holder else nobody


def _busy_message(settings: Settings, holder: WriterInfo | None) -> str:
    who = describe_writer(holder)
    return f"{who} is writing the library in {settings.data_dir}; wait for it or stop it first."
