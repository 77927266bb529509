"""The last searches of one library, kept in its data folder (``recent.json``, 0600).

A search is the page's URL state (a small dict of strings), so offering it again restores
everything: query, "less of", example photo, filters and sort.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from searchapp.atomic import write_atomic

RECENT_FILE = "recent.json"
KEEP = 8
MAX_VALUE_CHARS = 500
log = logging.getLogger(__name__)


def recent_path(data_dir: Path) -> Path:
    return data_dir / RECENT_FILE


def read_recent(data_dir: Path) -> list[dict[str, str]]:
    """The kept searches, newest first; a missing or damaged file is an empty list."""
    try:
        raw = json.loads(recent_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(raw, list):
        return []
    return [_clean(item) for item in raw if isinstance(item, dict)][:KEEP]


def remember(
    data_dir: Path, search: dict[str, str], refines: tuple[str, ...] = ()
) -> list[dict[str, str]]:
    """Put ``search`` first (once), keep the last ``KEEP``; nothing is written for an empty
    search or a library that has no data folder yet. A kept search that differs from it
    only in ``refines`` (a weight stepped through) is the same search: it is replaced.
    Returns the new list."""
    search = _clean(search)
    if not search or not data_dir.is_dir():
        return read_recent(data_dir)

    def same(item: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in item.items() if k not in refines}

    kept = [search] + [s for s in read_recent(data_dir) if same(s) != same(search)]
    try:
        write_atomic(recent_path(data_dir), json.dumps(kept[:KEEP]).encode())
    except OSError as err:  # a read-only data folder keeps searching, without a history
        log.warning("recent searches not saved: %s", err)
    return kept[:KEEP]


def _clean(item: dict) -> dict[str, str]:
    return {
        str(k): str(v)[:MAX_VALUE_CHARS]
        for k, v in item.items()
        if isinstance(k, str) and isinstance(v, str | int | float) and str(v)
    }


__all__ = ["KEEP", "RECENT_FILE", "read_recent", "recent_path", "remember"]
