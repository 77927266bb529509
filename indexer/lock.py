"""The single-writer lock of a library, and who holds it.

Only one process writes a library at a time (``searchapp index``, ``searchapp watch`` or
the page's "index" buttons). The lock is a ``filelock`` file in the data dir, released by
the OS when its holder dies (kill -9 included), so it never goes stale. Beside it,
``writer.json`` says who holds it (pid, kind, since, last activity) for ``status``.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict

from filelock import FileLock, Timeout

from searchapp.activity import WriterInfo, describe_writer, read_writer, writer_info_path
from searchapp.atomic import write_atomic
from searchapp.config import Settings
from searchapp.datadir import check_data_dir, make_private_dir
from searchapp.dbfile import read_only
from searchapp.errors import StoreError, WriterBusyError


class WriterLock:
    """Hold the library's writer lock; use as ``with WriterLock(settings, "index"):``."""

    def __init__(self, settings: Settings, kind: str) -> None:
        self.settings = settings
        self.kind = kind
        self._lock = FileLock(str(settings.lock_path), mode=0o600)
        self._since = 0.0

    def acquire(
        self, wait_s: float = 0.0, on_wait: Callable[[WriterInfo | None], None] | None = None
    ) -> WriterLock:
        """Take the lock, waiting up to ``wait_s``; raises ``WriterBusyError`` if held."""
        check_data_dir(self.settings.data_dir)
        try:
            make_private_dir(self.settings.data_dir)
            self._lock.acquire(timeout=0)
        except Timeout:  # before OSError: filelock's Timeout is a TimeoutError
            holder = read_writer(self.settings)
            if wait_s <= 0:
                raise WriterBusyError(_busy_message(self.settings, holder)) from None
            if on_wait is not None:
                on_wait(holder)
            try:
                self._lock.acquire(timeout=wait_s)
            except Timeout:
                raise WriterBusyError(_busy_message(self.settings, holder)) from None
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise read_only(self.settings.db_path) from None  # a read-only library
            raise StoreError(f"cannot write in the data folder {self.settings.data_dir}: "
                             f"{err.strerror or err}") from None  # fmt: skip
        self._since = time.time()
        self.touch()
        return self

    def touch(self, activity: str = "") -> None:
        """Record activity now (the daemon calls this after each batch)."""
        info = WriterInfo(os.getpid(), self.kind, self._since, time.time(), activity)
        write_atomic(writer_info_path(self.settings), json.dumps(asdict(info)).encode())

    def release(self) -> None:
        if self._lock.is_locked:
            writer_info_path(self.settings).unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _busy_message(settings: Settings, holder: WriterInfo | None) -> str:
    who = describe_writer(holder)
    return f"{who} is writing the library in {settings.data_dir}; wait for it or stop it first."
