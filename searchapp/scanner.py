"""Walking photo folders: photo files with their size and mtime, hidden folders skipped."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from searchapp.decoder import is_photo_name
from searchapp.paths import is_under


@dataclass(frozen=True)
class ScannedFile:
    path: str
    size: int
    mtime_ns: int
    error: str | None = None  # set for a folder that cannot be listed: why


def scan_root(root: str) -> Iterator[ScannedFile]:
    """Yield photo files below ``root``; symlinked folders are not followed (no loops)."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed while we walked: its files are gone with it
        except OSError as err:
            # unreadable folder: reported once with the reason; its files stay as stored
            yield ScannedFile(folder, 0, 0, error=err.strerror or type(err).__name__)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                if not is_photo_name(entry.name):
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError:
                # dangling link or vanished file: size 0 makes the decoder record why
                yield ScannedFile(entry.path, 0, 0)
                continue
            yield ScannedFile(entry.path, st.st_size, st.st_mtime_ns)


def scan_paths(root: str, paths: Sequence[str]) -> Iterator[ScannedFile]:
    """Yield what ``scan_root(root)`` would yield at or below ``paths``, without the walk.

    A watcher batch names a handful of files; stat-ing those instead of walking the whole
    root keeps one change in a 100,000-photo library cheap. The same rules hold: hidden
    names and symlinked folders (on the way down or named) are skipped.
    """
    if any(is_under(root, p) for p in paths):
        yield from scan_root(root)  # a path at or above the root asks for all of it
        return
    folders: list[str] = []
    for path in sorted({p.rstrip("/") for p in paths if is_under(p, root)}):
        if any(is_under(path, f) for f in folders) or not _visible_below(root, path):
            continue  # already walked, or scan_root would not go there
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue  # gone: the run finds it missing from the stored files
        if stat.S_ISDIR(mode):
            folders.append(path)
            yield from scan_root(path)
        elif is_photo_name(path):
            try:
                st = os.stat(path)
            except OSError:
                yield ScannedFile(path, 0, 0)  # dangling link: the decoder records why
                continue
            yield ScannedFile(path, st.st_size, st.st_mtime_ns)


def _visible_below(root: str, path: str) -> bool:
    """No hidden name and no symlinked folder between ``root`` and ``path``."""
    parts = os.path.relpath(path, root).split(os.sep)
    if any(part.startswith(".") for part in parts):
        return False
    folder = root
    for part in parts[:-1]:
        folder = os.path.join(folder, part)
        if os.path.islink(folder):
            return False
    return True
