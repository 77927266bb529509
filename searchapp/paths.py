"""Path facts shared by the scanner, the watcher and the page's access guard."""

from __future__ import annotations


def is_under(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` itself or anything below it (plain string test)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")
