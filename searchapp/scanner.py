"""Walking photo folders: photo files with their size and mtime, hidden folders skipped.

``wanted_name`` and ``is_wanted_path`` are the one rule of what belongs in the library;
the watcher filters its events with them, so it agrees with the next full walk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from searchapp.decoder import is_photo_name
from searchapp.paths import is_under

LOCK_FILE_PREFIX = "~$"  # office suites' lock files: "~$report.jpg" is no photo


@dataclass(frozen=True)
class ScannedFile:
    path: str
    size: int
    mtime_ns: int
    error: str | None = None  # set for a folder that cannot be listed: why


def scan_root(root: str, skip: str | None = None) -> Iterator[ScannedFile]:
    """Yield photo files below ``root``; symlinked folders are not followed (no loops),
    nor is ``skip`` (the data folder, should it lie in a photo folder: its thumbnails).

    A folder that cannot be listed, or listed but not entered (read permission without
    execute: nothing below it can be stat-ed or opened), is yielded once with ``error``
    set instead of its files, which stay as stored, like an offline folder's.
    """
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
            os.stat(os.path.join(folder, os.curdir))  # needs search permission on folder
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed while we walked: its files are gone with it
        except OSError as err:
            yield ScannedFile(folder, 0, 0, error=err.strerror or type(err).__name__)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if wanted_name(entry.name, is_dir=True) and entry.path != skip:
                        stack.append(entry.path)
                    continue
                if not wanted_name(entry.name):
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError:
                # dangling link or vanished file: size 0 makes the decoder record why
                yield ScannedFile(entry.path, 0, 0)
                continue
            yield ScannedFile(entry.path, st.st_size, st.st_mtime_ns)


def scan_paths(root: str, paths: Sequence[str], skip: str | None = None) -> Iterator[ScannedFile]:
    """Yield what ``scan_root(root)`` would yield at or below ``paths``, without the walk.

    A watcher batch names a handful of files; stat-ing those instead of walking the whole
    root keeps one change in a 100,000-photo library cheap. The same rules hold: hidden
    names and symlinked folders (on the way down or named) are skipped.
    """
    if any(is_under(root, p) for p in paths):
        yield from scan_root(root, skip)  # a path at or above the root asks for all of it
        return
    folders: list[str] = []
    for path in sorted({p.rstrip("/") for p in paths if is_under(p, root)}):
        if skip and is_under(path, skip):
            continue
        if any(is_under(path, f) for f in folders):
            continue  # already walked
        try:
            mode = os.lstat(path).st_mode
        except PermissionError:
            # below a folder that cannot be entered: that folder is reported, not deleted
            shut = _unenterable_folder(root, path) or os.path.dirname(path)
            wanted = shut == root or is_wanted_path(shut, root, is_dir=True)
            if wanted and not any(is_under(shut, f) for f in folders):
                folders.append(shut)
                yield from scan_root(shut, skip)
            continue
        except OSError:
            continue  # gone: the run finds it missing from the stored files
        is_dir = stat.S_ISDIR(mode)
        if not is_wanted_path(path, root, is_dir=is_dir):
            continue  # scan_root would not yield it or go there
        if is_dir:
            folders.append(path)
            yield from scan_root(path, skip)
            continue
        try:
            st = os.stat(path)
        except OSError:
            yield ScannedFile(path, 0, 0)  # dangling link: the decoder records why
            continue
        yield ScannedFile(path, st.st_size, st.st_mtime_ns)


def _unenterable_folder(root: str, path: str) -> str | None:
    """The first folder from ``root`` down to ``path``'s parent that cannot be entered;
    None when each can (the permission changed since, or something else denies)."""
    folder = root
    for part in ["", *os.path.relpath(os.path.dirname(path), root).split(os.sep)]:
        folder = os.path.normpath(os.path.join(folder, part))
        try:
            os.stat(os.path.join(folder, os.curdir))  # needs search permission on folder
        except PermissionError:
            return folder
        except OSError:
            return None
    return None


def wanted_name(name: str, *, is_dir: bool = False) -> bool:
    """The naming rule: hidden names are skipped; a file must be a photo, not a lock file.

    Files still being written under a temporary name (``.part``, ``.crdownload``, ``~``,
    ``.swp``, ``.tmp``) end in a non-photo extension, so the photo-name rule skips them too.
    """
    if name.startswith("."):
        return False
    return is_dir or (is_photo_name(name) and not name.startswith(LOCK_FILE_PREFIX))


def is_wanted_path(path: str, root: str, *, is_dir: bool = False) -> bool:
    """True when ``scan_root(root)`` would yield this file (or walk into this folder).

    ``path`` lies strictly below ``root``, with no hidden name and no symlinked folder on
    the way down, and a wanted last name. Works for paths that no longer exist (the
    watcher's deletes): a missing folder is not a link.
    """
    if path == root or not is_under(path, root):
        return False
    parts = os.path.relpath(path, root).split(os.sep)
    if not wanted_name(parts[-1], is_dir=is_dir):
        return False
    folder = root
    for part in parts[:-1]:
        folder = os.path.join(folder, part)
        if not wanted_name(part, is_dir=True) or os.path.islink(folder):
            return False
    return True


def holds_photos(root: str, time_limit_s: float = 3.0) -> bool | None:
    """Whether any photo lies below ``root``: True at the first one found, False when the
    whole tree holds none, None when the walk ran out of ``time_limit_s`` (a huge tree)."""
    import time

    deadline = time.monotonic() + time_limit_s
    for _folder, dirs, files in os.walk(root):
        if any(wanted_name(name) for name in files):
            return True
        dirs[:] = [d for d in dirs if wanted_name(d, is_dir=True)]
        if time.monotonic() > deadline:
            return None
    return False
