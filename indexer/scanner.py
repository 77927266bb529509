"""Walking photo folders: photo files with their size and mtime, hidden folders skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from searchapp.decoder import is_photo_name


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
