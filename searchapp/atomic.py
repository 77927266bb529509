"""Atomic file writes: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from searchapp.datadir import make_private_dir

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """Temp files for ``path`` start with this (hidden, so scanners and watchers skip them)."""
    return f".{path.name}."


@contextmanager
def atomic_writer(path: Path, *, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` in one rename when the block exits cleanly.

    The temp file is created 0600 beside ``path`` (same filesystem, so the rename is
    atomic; missing folders are made 0700) and removed on any error. ``durable`` fsyncs
    before the rename, for files a power cut must not leave empty.
    """
    with _replacing(path) as (fd, _), os.fdopen(fd, "wb") as f:
        yield f
        if durable:
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """The name of a temp file that replaces ``path`` as :func:`atomic_writer` does (no
    fsync), for writers that want a name: ``torch.jit.save`` writes a name twice as fast
    as a file."""
    with _replacing(path) as (fd, tmp):
        os.close(fd)
        yield tmp


@contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, Path]]:
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        yield fd, Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, durable=durable) as f:
        f.write(data)


def remove_stale_temps(path: Path) -> None:
    """Delete temp files a writer killed mid-write left beside ``path``."""
    for stale in path.parent.glob(f"{temp_prefix(path)}*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
