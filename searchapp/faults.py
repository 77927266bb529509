"""Test-only fault injection: a no-op unless ``SEARCHAPP_FAULT`` is set.

``SEARCHAPP_FAULT=commit:3`` makes the process SIGKILL itself the 3rd time it reaches the
``commit`` point, so crash tests can stop a real indexer at an exact place (during scan,
decode, embed, inside the batch transaction, after a commit, while saving the FAISS file).
``SEARCHAPP_FAULT_LOG=FILE`` appends one line per traced event (e.g. the content hashes
sent to the model), written straight to the file so it survives the kill.
``SEARCHAPP_FAULT_PACE=SECONDS`` makes the indexer wait that long after each committed
batch, so a fault test's kill lands mid-run however fast the machine is.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable

POINTS = ("scan", "decode", "embed", "commit", "after-commit", "faiss-save")

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def _target() -> tuple[str, int] | None:
    spec = os.environ.get("SEARCHAPP_FAULT", "")
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, int(nth or 1)


def fault_point(name: str) -> None:
    """Kill this process (SIGKILL, no cleanup) if the armed fault is ``name`` and its turn."""
    target = _target()
    if target is None or target[0] != name:
        return
    with _lock:
        _counts[name] += 1
        hit = _counts[name] == target[1]
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)


def pace() -> None:
    """Wait ``SEARCHAPP_FAULT_PACE`` seconds, if it is set (after each committed batch)."""
    seconds = os.environ.get("SEARCHAPP_FAULT_PACE")
    if seconds:
        time.sleep(float(seconds))


def trace(event: str, items: Iterable[str]) -> None:
    """Append ``event item`` lines to ``SEARCHAPP_FAULT_LOG`` (unbuffered), if it is set."""
    path = os.environ.get("SEARCHAPP_FAULT_LOG")
    if not path:
        return
    text = "".join(f"{event} {item}\n" for item in items)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
