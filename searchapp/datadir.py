"""The data folder is private: 0700 for it and its folders, 0600 for the files it writes.

It holds every indexed path and the image vectors, which with the public model let
anyone who can read them search someone else's photos. New folders and files are
created private; a folder left readable by an older version (or by hand) is tightened
the first time a command opens it, with one warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from searchapp.errors import ConfigError

log = logging.getLogger("searchapp.datadir")

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO
DATABASE_NAME = "library.sqlite3"  # its -wal, -shm and schema backups share the prefix
# What a library puts in its folder. Only these are made private; anything else there is
# the user's and left alone (tests/test_library_files.py checks a library holds no other).
LIBRARY_NAMES = frozenset({
    DATABASE_NAME, "vectors.faiss", "thumbs", "requests", "writer.lock", "writer.json",
    "model-spec.json", "recent.json", "engine.sock", "engine.json",
})  # fmt: skip


def is_library_entry(name: str) -> bool:
    """Whether a name in the data folder is one a library writes."""
    return name in LIBRARY_NAMES or name.startswith(DATABASE_NAME)


def check_data_dir(data_dir: Path) -> None:
    """Refuse a data folder that is a file, or that holds other files and no library
    (``--data-dir ~/Pictures`` by mistake): a library there would mix in with them."""
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"the data folder {data_dir} is a file; give --data-dir a folder.")
    blocker = next((p for p in data_dir.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None and not data_dir.exists():
        raise ConfigError(
            f"the data folder {data_dir} cannot be made: {blocker} is a file; give --data-dir "
            "a folder."
        )
    if not data_dir.is_dir() or (data_dir / DATABASE_NAME).exists():
        return
    try:
        foreign = [n for n in os.listdir(data_dir) if not n.startswith(".")
                   and not is_library_entry(n)]  # fmt: skip
    except OSError:
        return  # unreadable: creating the library there says why
    if foreign:
        raise ConfigError(
            f"the data folder {data_dir} holds other files (e.g. {foreign[0]!r}) and no "
            "library; give --data-dir a new or empty folder."
        )


def can_create_in(data_dir: Path) -> bool:
    """Whether this user could create the library's files: the data folder, or the nearest
    folder above it that exists, is writable (not a read-only disk or folder)."""
    folder = data_dir
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each 0700 (existing ones are left as they are)."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist, so whatever fills it is private.

    SQLite gives the ``-wal`` and ``-shm`` files the mode of the database file.
    """
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def secure_data_dir(data_dir: Path) -> bool:
    """Make an existing data folder private if group or others can read it.

    Only what this user owns is changed; a folder it cannot or should not change
    (someone else's library, a read-only folder or mount) is left as it is. Returns
    True when anything changed.
    """
    if os.name == "nt":
        return False  # no POSIX modes; the per-user profile folder's ACL keeps it private
    try:
        st = data_dir.stat()
    except OSError:
        return False
    if not stat.S_IMODE(st.st_mode) & _OPEN_TO_OTHERS or st.st_uid != os.geteuid():
        return False
    if not os.access(data_dir, os.W_OK):
        return False  # a read-only library is used as it is, never changed
    changed = _tighten(data_dir, PRIVATE_DIR_MODE)
    for entry in os.scandir(data_dir):
        if not is_library_entry(entry.name):
            continue  # the user's own file: not ours to change
        if not entry.is_dir(follow_symlinks=False):
            changed += _tighten(Path(entry.path), PRIVATE_FILE_MODE)
            continue
        changed += _tighten(Path(entry.path), PRIVATE_DIR_MODE)
        for folder, dirs, files in os.walk(entry.path):
            for name in dirs:
                changed += _tighten(Path(folder, name), PRIVATE_DIR_MODE)
            for name in files:
                changed += _tighten(Path(folder, name), PRIVATE_FILE_MODE)
    if changed:
        log.warning(
            "the data folder %s was readable by other users; made it private "
            "(folders 0700, files 0600; %d changed)",
            data_dir,
            changed,
        )
    return bool(changed)


def _tighten(path: Path, mode: int) -> int:
    """Remove group and other bits (never adds any); 1 if the mode changed."""
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            return 0
        current = stat.S_IMODE(st.st_mode)
        wanted = current & mode
        if wanted == current:
            return 0
        path.chmod(wanted)
    except OSError:
        return 0
    return 1
