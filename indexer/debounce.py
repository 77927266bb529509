"""Turning a stream of filesystem events into batches of paths that are safe to read.

The ``Debouncer`` knows nothing of watchdog or threads: events come in through ``add``
(from any thread), ready paths go out through ``take_ready``, and time and file state are
read through injected functions, so a test drives it with a fake clock.

- A file is ready once it stays unchanged for its quiet time: where the OS reports closes
  (inotify), ``CLOSED_QUIET_S`` after its writer closed it (``OPEN_MAX_WAIT_S`` while a
  writer still has it open); elsewhere ``DEBOUNCE_S``.
- Vanished paths (deletes, the old side of a move) wait until the other pending paths are
  settled, at most ``MAX_GONE_HOLD_S``, so a move's old and new path land in one batch and
  the photo keeps its id and vector.
- While a burst is still arriving, a batch waits to hold ``BURST_MIN`` paths, at most
  ``BURST_WAIT_S``; a batch of more than ``MAX_PATHS_PER_RUN`` files is handed over as
  their folders (one scan each).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from searchapp.paths import is_under
from searchapp.scanner import is_wanted_path

DEBOUNCE_S = 1.0  # quiet time before reading a file when the OS does not report closes
CLOSED_QUIET_S = 0.3  # quiet time after the writer closed the file (inotify)
OPEN_MAX_WAIT_S = 60.0  # a file left open for writing is read after this much quiet
MAX_GONE_HOLD_S = 10.0  # longest a vanished path waits for other pending paths to settle
BURST_MIN = 32  # while more changes are arriving, wait to hand over at least this many...
BURST_WAIT_S = 1.0  # ...but no longer than this past the point they were ready
MAX_PATHS_PER_RUN = 50  # more ready files than this are handed over as their folders

Signature = tuple
GONE: Signature = ("gone",)  # the path does not exist
DIR: Signature = ("dir",)  # the path is a folder

Clock = Callable[[], float]
SignatureFn = Callable[[str], Signature]


def stat_signature(path: str) -> Signature:
    """What says a file changed: (size, mtime_ns), or ``DIR`` / ``GONE``."""
    try:
        st = os.stat(path)
    except OSError:
        return GONE
    if os.path.isdir(path):
        return DIR
    return (st.st_size, st.st_mtime_ns)


@dataclass
class _Pending:
    signature: Signature | None  # last seen signature; None: not looked at yet
    stable_since: float
    closes: bool = False  # the OS reports when this file's writer closes it
    writing: bool = False  # a writer has it open (seen written, not yet closed)
    first_gone: float | None = None

    def quiet_needed(self) -> float:
        if self.signature == DIR or not self.closes:
            # files copied into a new folder before its watch existed report nothing
            return DEBOUNCE_S
        if self.signature == GONE:
            return CLOSED_QUIET_S
        return OPEN_MAX_WAIT_S if self.writing else CLOSED_QUIET_S


class Debouncer:
    """The photo files and folders events touched, until they are ready; thread-safe.

    ``ignore_below`` is the data dir, should it sit inside a root; ``now`` and
    ``signature`` read the clock and a path's state (tests pass fakes).
    """

    def __init__(
        self,
        ignore_below: str | None = None,
        *,
        now: Clock = time.monotonic,
        signature: SignatureFn = stat_signature,
    ) -> None:
        self.ignore_below = ignore_below
        self._now = now
        self._signature = signature
        self._lock = threading.Lock()
        self._roots: list[str] = []
        self._pending: dict[str, _Pending] = {}
        self._overflowed = False

    def set_roots(self, roots: Iterable[str]) -> None:
        """The folders whose changes count; events elsewhere are ignored."""
        with self._lock:
            self._roots = list(roots)

    def wanted(self, path: str, is_dir: bool = False) -> bool:
        """True for a path below a root that the scanner would index (or walk into)."""
        with self._lock:
            root = next((r for r in self._roots if is_under(path, r)), None)
        if root is None:
            return False
        if self.ignore_below and is_under(path, self.ignore_below):
            return False
        return is_wanted_path(path, root, is_dir=is_dir)

    def add(
        self, path: str, *, is_dir: bool = False, closes: bool = False, writing: bool | None = None
    ) -> bool:
        """Note a change at ``path`` if it is wanted; every change restarts its quiet time.

        ``closes``: the OS reports this file's close; ``writing``: a writer has it open
        (None: no news, keep what was known). Returns whether the path was taken.
        """
        if not self.wanted(path, is_dir):
            return False
        with self._lock:
            old = self._pending.get(path)
            p = _Pending(None, self._now(), closes)
            p.writing = old.writing if (old and writing is None) else bool(writing)
            self._pending[path] = p
        return True

    def drop_below(self, folder: str) -> int:
        """Forget pending paths below ``folder`` (its drive went away); returns how many."""
        with self._lock:
            gone = [p for p in self._pending if is_under(p, folder)]
            for p in gone:
                del self._pending[p]
        return len(gone)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def mark_overflow(self) -> None:
        """The OS lost events: the caller should reconcile everything."""
        with self._lock:
            self._overflowed = True

    def take_overflow(self) -> bool:
        """True once after ``mark_overflow``."""
        with self._lock:
            overflowed, self._overflowed = self._overflowed, False
        return overflowed

    def take_ready(self) -> list[str]:
        """Remove and return the paths that are ready to index (often none)."""
        now = self._now()
        with self._lock:
            items = dict(self._pending)
        settled, gone, unsettled = self._sort(items, now)
        # a folder is ready only when nothing pending below it is still changing
        settled = [
            s
            for s in settled
            if items[s].signature != DIR or not any(is_under(u, s) for u in unsettled)
        ]
        if gone and unsettled:
            # hold everything so a move's old and new side land in one run (keeps the id)
            oldest = min(items[g].first_gone or now for g in gone)
            if now - oldest < MAX_GONE_HOLD_S:
                return []
        ready = settled + gone
        if not ready:
            return []
        if unsettled and len(ready) < BURST_MIN:
            # a burst is still arriving: fewer, fuller runs (model batches, one scan each)
            oldest = min(items[r].stable_since + items[r].quiet_needed() for r in ready)
            if now - oldest < BURST_WAIT_S:
                return []
        with self._lock:
            for path in ready:
                cur = self._pending.get(path)
                # a newer event since we looked keeps the path pending
                if cur is not None and cur.stable_since <= now - cur.quiet_needed():
                    del self._pending[path]
        return collapse(sorted(ready), unsettled)

    def _sort(
        self, items: dict[str, _Pending], now: float
    ) -> tuple[list[str], list[str], list[str]]:
        """Look at each pending path: (settled, vanished and settled, still changing)."""
        settled: list[str] = []
        gone: list[str] = []
        unsettled: list[str] = []
        for path, p in items.items():
            sig = self._signature(path)
            if sig != p.signature:
                p.signature = sig
                p.stable_since = now
            p.first_gone = (p.first_gone or now) if sig == GONE else None
            if now - p.stable_since < p.quiet_needed():
                unsettled.append(path)
            elif sig == GONE:
                gone.append(path)
            else:
                settled.append(path)
        return settled, gone, unsettled


def collapse(ready: list[str], unsettled: list[str]) -> list[str]:
    """Hand a burst over as folders (one scan each) instead of thousands of paths.

    Only above ``MAX_PATHS_PER_RUN`` paths; a folder stands in for its files only when
    nothing below it is still being written.
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
