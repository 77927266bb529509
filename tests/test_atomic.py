"""Atomic writes (searchapp/atomic.py): a reader sees the old file or the new one, a failed
write leaves the old one and no temp file, and what is written is private (0600, 0700)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from searchapp.atomic import atomic_path, atomic_writer, remove_stale_temps, write_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_named_writer_replaces_the_file_privately(tmp_path: Path) -> None:
    target = tmp_path / "new" / "towers.ts"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".towers.ts.")
        assert not target.exists()  # nothing is visible under the name until the rename
        tmp.write_bytes(b"tower")  # as torch.jit.save does: opens the name, truncates
    assert target.read_bytes() == b"tower"
    assert mode(target) == 0o600 and mode(target.parent) == 0o700
    assert leftovers(target.parent) == []


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "vectors.faiss"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    with pytest.raises(RuntimeError), atomic_writer(target, durable=True) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_stale_temps_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "thumb.jpg"
    (tmp_path / ".thumb.jpg.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".other.jpg.abc123.tmp").write_bytes(b"someone else's")
    remove_stale_temps(target)
    assert leftovers(tmp_path) == [".other.jpg.abc123.tmp"]
