"""The library's database file: opening it read-only, backing it up, and what its errors mean.

SQLite reports a damaged file, a full disk and a read-only library with its own texts;
the store turns each into one of the app's errors (one line naming the fix) instead of
a traceback. No SQL here: :mod:`searchapp.store` is the only module that writes SQL.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from searchapp.config import command_for
from searchapp.datadir import create_private_file
from searchapp.errors import DamagedLibraryError, DiskFullError, ReadOnlyLibraryError, StoreError

_DAMAGED = (
    "file is not a database",
    "database disk image is malformed",
    "malformed database schema",
    "file is encrypted",
    "database corrupt",
)
_READ_ONLY = ("readonly database", "read-only", "readonly")


def is_disk_full(err: BaseException) -> bool:
    text = str(err).lower()
    return (
        "database or disk is full" in text
        or "no space left" in text
        or (isinstance(err, OSError) and err.errno == errno.ENOSPC)
    )


def is_damaged(err: BaseException) -> bool:
    text = _text(err).lower()
    return any(marker in text for marker in _DAMAGED)


def store_error(err: BaseException, db_path: Path) -> StoreError:
    """The app error for a SQLAlchemy or sqlite3 error raised on ``db_path``."""
    text = _text(err)
    if is_disk_full(err) or is_disk_full(Exception(text)):
        return disk_full(db_path)
    if is_damaged(err):
        return damaged(db_path, text[:120])
    lowered = text.lower()
    if any(marker in lowered for marker in _READ_ONLY):
        return read_only(db_path)
    if "unable to open database file" in lowered:
        return StoreError(
            f"cannot open {db_path} (is its folder readable and on a mounted disk?); "
            "check its permissions or choose another --data-dir."
        )
    return StoreError(f"database error in {db_path}: {text}")


def disk_full(db_path: Path) -> DiskFullError:
    return DiskFullError(
        f"the disk holding {db_path.parent} is full; free some space and run the command "
        "again (everything committed so far is kept)."
    )


def damaged(db_path: Path, detail: str) -> DamagedLibraryError:
    """Recovery in one line: keep the file, restore a backup or rebuild in a fresh folder."""
    backups = sorted(db_path.parent.glob(f"{db_path.name}.backup-*"))
    restore = (
        f"restore the backup {backups[-1].name} over it"
        if backups
        else "restore a copy from your own backups over it"
    )
    return DamagedLibraryError(
        f"the library database {db_path} is damaged ({detail}); keep that file, then either "
        f"{restore}, or rebuild the library from your photo folders in a fresh data folder: "
        f"move {db_path.parent} aside and run: {command_for(db_path.parent)} index FOLDER..."
    )


def read_only(db_path: Path) -> ReadOnlyLibraryError:
    """The error for a data folder this user cannot write: searching an existing library
    still works there; where there is none yet, nothing does until another is chosen."""
    if not db_path.exists():
        return ReadOnlyLibraryError(
            f"cannot create a library in {db_path.parent}: this user cannot write there "
            "(a read-only folder or disk); choose a data folder you can write to with "
            "--data-dir (or SEARCHAPP_DATA_DIR), or fix that folder's permissions."
        )
    return ReadOnlyLibraryError(
        f"the library in {db_path.parent} is read-only for this user; searching works, "
        "but indexing needs write access to that folder and its files "
        "(fix their permissions, or use another --data-dir)."
    )


def can_write(db_path: Path) -> bool:
    """Whether this user may write the database and create its -wal/-shm files."""
    return os.access(db_path, os.W_OK) and os.access(db_path.parent, os.W_OK | os.X_OK)


def read_only_engine(db_path: Path) -> Engine:
    """An engine that never writes the file, also in a folder this user cannot write.

    A WAL database needs its ``-shm`` file even to read; where the folder is read-only and
    no writer left one, the file is opened immutable (nobody can be writing it then).
    """
    uri = f"file:{quote(str(db_path.resolve()))}?mode=ro"
    shm = db_path.with_name(db_path.name + "-shm")
    if not os.access(db_path.parent, os.W_OK) and not shm.exists():
        uri += "&immutable=1"
    return create_engine(
        f"sqlite:///{db_path}",
        creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
    )


def backup_database(db_path: Path, backup: Path) -> None:
    """Copy ``db_path`` to a new private file; a failed copy leaves nothing behind."""
    try:
        create_private_file(backup)
        with closing(sqlite3.connect(db_path)) as src, closing(sqlite3.connect(backup)) as dst:
            src.backup(dst)
    except (sqlite3.Error, OSError) as err:
        for leftover in (backup, backup.with_name(f"{backup.name}-journal")):
            leftover.unlink(missing_ok=True)
        if not is_disk_full(err):
            raise store_error(err, db_path) from None
        size = max(1, db_path.stat().st_size // 2**20)
        raise DiskFullError(
            f"the disk holding {db_path.parent} has no room to back up the library before "
            f"upgrading it (about {size} MB needed); free some space and run the command "
            "again (the library is unchanged)."
        ) from None


def _text(err: BaseException) -> str:
    inner = err.orig if isinstance(err, DBAPIError) and err.orig is not None else err
    if isinstance(inner, sqlite3.Error | OSError):
        return str(inner).strip() or type(inner).__name__
    return str(inner).split("\n", 1)[0].strip() or type(inner).__name__
