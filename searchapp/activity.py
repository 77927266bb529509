"""Who is writing a library right now: the holder of its writer lock, as ``writer.json``.

Read by the status report and by every command that decides whether to hand its work
to a running watcher; written only by the holder (``searchapp.indexer.lock``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psutil

from searchapp.config import Settings


@dataclass(frozen=True)
class WriterInfo:
    """Who holds the writer lock: ``kind`` is ``index``, ``watch`` or ``ui``."""

    pid: int
    kind: str
    since: float
    last_activity: float
    activity: str = ""  # what the holder last did, e.g. "added 3, removed 1"

    @property
    def is_watcher(self) -> bool:
        """Whether the holder is ``searchapp watch`` (which takes requests from others)."""
        return self.kind == "watch"


def writer_info_path(settings: Settings) -> Path:
    return settings.data_dir / "writer.json"


def read_writer(settings: Settings) -> WriterInfo | None:
    """The live holder of the writer lock, or None (a dead holder's file is ignored)."""
    try:
        info = WriterInfo(**json.loads(writer_info_path(settings).read_text()))
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
