"""The library's own files: damaged, read-only, on a full disk, and private to their owner.

Every case runs the real CLI in a subprocess against real SQLite files: one line on
stderr naming the fix, exit 1, no traceback, and the files left as they were.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from searchapp.activity import writer_info_path
from searchapp.datadir import is_library_entry
from searchapp.indexer.commands import Index
from searchapp.indexer.handoff import submit_request, withdraw_request
from searchapp.indexer.lock import WriterLock
from searchapp.store import Store
from tests.helpers import (
    PIXELS_ENV,
    index_once,
    mounted_tmpfs,
    run_cli,
    without_root_powers,
    write_jpegs,
)
from tests.test_schema import make_v1_library, revision

pytestmark = pytest.mark.timeout(600)


def cli(data: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The CLI on the pixel encoder's library: in process, or as the real command run
    through ``prefix`` (without root's powers)."""
    if not prefix:
        return run_cli(data, *args)
    env = dict(os.environ, **PIXELS_ENV)
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data), "--weights", "random"]
    return subprocess.run(
        [*prefix, *cmd, *args], capture_output=True, text=True, env=env, timeout=300
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single ``searchapp:`` line of a failed command (asserting there is no more)."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if "random model weights" not in x]
    assert len(lines) == 1 and lines[0].startswith("searchapp: "), proc.stderr
    return lines[0]


def digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, embedder) -> tuple[Path, Path]:
    """A real indexed library (data folder, photo folder) to copy and spoil."""
    from searchapp.config import load_settings

    base = tmp_path_factory.mktemp("library")
    root = base / "photos"
    write_jpegs(root, 12, seed=3)
    settings = load_settings(
        data_dir=base / "lib", encoder="pixels", weights="random", precision="fp32"
    )
    index_once(settings, embedder, root)
    return base / "lib", root


def spoil(db: Path, how: str) -> None:
    data = bytearray(db.read_bytes())
    if how == "cut in half":
        data = data[: len(data) // 2]
    elif how == "garbage header":
        data[:100] = random.Random(1).randbytes(100)
    else:  # bytes flipped in every page's b-tree header
        for page in range(4096, len(data), 4096):
            for offset in range(12):
                data[page + offset] ^= 0xFF
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["cut in half", "garbage header", "bytes flipped"])
def test_damaged_database_says_how_to_recover(library, tmp_path, how):
    data = tmp_path / "lib"
    shutil.copytree(library[0], data)
    spoil(data / "library.sqlite3", how)
    before = digest(data)
    for args in (["status"], ["search", "a cat"], ["index"]):
        line = one_line_error(cli(data, *args))
        assert f"the library database {data / 'library.sqlite3'} is damaged (" in line, line
        assert "keep that file" in line and "restore" in line, line
        fresh = f"fresh data folder: move {data} aside and run: searchapp --data-dir {data} index"
        assert fresh in line, line
        assert digest(data) == before  # the damaged file is kept as it was


def test_damaged_database_names_its_backup(library, tmp_path):
    data = tmp_path / "lib"
    shutil.copytree(library[0], data)
    shutil.copy(data / "library.sqlite3", data / "library.sqlite3.backup-0001-1700000000")
    spoil(data / "library.sqlite3", "garbage header")
    line = one_line_error(cli(data, "status"))
    assert "restore the backup library.sqlite3.backup-0001-1700000000 over it" in line


def read_only_copy(library: Path, target: Path) -> None:
    shutil.copytree(library, target)
    for path in sorted(target.rglob("*"), reverse=True) + [target]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def test_read_only_library_still_answers_status_and_search(library, tmp_path):
    prefix = tuple(without_root_powers())  # root ignores file modes: drop its powers
    data = tmp_path / "lib"
    read_only_copy(library[0], data)
    before = digest(data)
    try:
        status = cli(data, "status", prefix=prefix)
        assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
        assert "photos:  12 indexed" in status.stdout
        found = cli(data, "search", "a cat", "-k", "3", prefix=prefix)
        assert found.returncode == 0, found.stderr
        assert len(found.stdout.splitlines()) == 3
        for args in (["index"], ["index", str(library[1])]):
            line = one_line_error(cli(data, *args, prefix=prefix))
            assert f"the library in {data} is read-only for this user" in line
        assert digest(data) == before  # no -wal, -shm, lock or mode change
        assert sorted(p.name for p in data.iterdir()) == sorted(
            p.name for p in library[0].iterdir()
        )
        empty = tmp_path / "empty"  # no library yet: it said "searching works" there too
        empty.mkdir(mode=0o555)
        line = one_line_error(cli(empty, "index", str(library[1]), prefix=prefix))
        assert f"cannot create a library in {empty}: this user cannot write there" in line
    finally:
        for path in [data, *data.rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)


def padded_v1_library(db: Path, kilobytes: int) -> None:
    make_v1_library(db)
    conn = sqlite3.connect(db)
    with conn:
        blob = random.Random(2).randbytes(1024)
        conn.executemany(
            "INSERT INTO embeddings VALUES (?, 'm', ?, 1.0)",
            [(f"h{i}", blob) for i in range(kilobytes)],
        )
    conn.close()


def test_schema_upgrade_on_a_full_disk_leaves_no_backup(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    seed = tmp_path / "library.sqlite3"
    padded_v1_library(seed, 700)  # ~0.8 MB: the database fits, a copy of it does not
    with mounted_tmpfs(mnt, "1200k"):
        data = mnt / "lib"
        data.mkdir(mode=0o700)
        shutil.copy(seed, data / "library.sqlite3")
        (data / "library.sqlite3").chmod(0o600)
        for _ in range(2):  # a retry must not leave one more file behind either
            line = one_line_error(cli(data, "status"))
            assert f"the disk holding {data} has no room to back up the library" in line
            assert "free some space and run the command again" in line
            assert not list(data.glob("*.backup-*")), list(data.iterdir())
            assert revision(data / "library.sqlite3") == "0001"
        subprocess.run(["mount", "-o", "remount,size=4m", str(mnt)], check=True)
        assert cli(data, "status").returncode == 0
        backups = list(data.glob("library.sqlite3.backup-0001-*"))
        assert len(backups) == 1 and revision(backups[0]) == "0001"
        assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
        assert revision(data / "library.sqlite3") == "0003"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_library_files_are_private(library, settings):
    data, _root = library
    assert mode(data) == 0o700
    for name in ("library.sqlite3", "vectors.faiss"):
        assert mode(data / name) == 0o600, name
    thumbs = list((data / "thumbs").rglob("*"))
    assert len([p for p in thumbs if p.is_file()]) == 12
    assert mode(data / "thumbs") == 0o700
    assert {mode(p) for p in thumbs} == {0o700, 0o600}
    assert all(mode(p) == (0o700 if p.is_dir() else 0o600) for p in thumbs)

    store = Store(settings.db_path)  # -wal and -shm exist while a connection is open
    store.counts()
    try:
        for suffix in ("-wal", "-shm"):
            assert mode(settings.db_path.with_name("library.sqlite3" + suffix)) == 0o600
    finally:
        store.close()
    with WriterLock(settings, "index"):
        assert mode(writer_info_path(settings)) == 0o600
        assert mode(settings.lock_path) == 0o600
        request = submit_request(settings, Index())
        names = sorted(p.name for p in settings.data_dir.iterdir())
        assert all(is_library_entry(n) for n in names), names  # what secure_data_dir tightens
    try:
        requests = next(p for p in settings.data_dir.iterdir() if p.name == "requests")
        assert mode(requests) == 0o700
        assert {mode(p) for p in requests.iterdir()} == {0o600}
    finally:
        withdraw_request(settings, request)


def test_schema_backup_is_private(tmp_path):
    old_umask = os.umask(0o022)  # the usual umask: new files would be 0644
    try:
        make_v1_library(tmp_path / "library.sqlite3")
        Store(tmp_path / "library.sqlite3").close()
    finally:
        os.umask(old_umask)
    (backup,) = tmp_path.glob("library.sqlite3.backup-0001-*")
    assert mode(backup) == 0o600


def test_an_open_data_folder_is_tightened_once_with_a_notice(library, tmp_path):
    data = tmp_path / "lib"
    shutil.copytree(library[0], data)
    loose = [data, *data.rglob("*")]
    for path in loose:
        path.chmod(0o755 if path.is_dir() else 0o644)  # as earlier versions left it
    first = cli(data, "status")
    assert first.returncode == 0, first.stderr
    notices = [x for x in first.stderr.splitlines() if "made it private" in x]
    assert notices == [
        f"WARNING: the data folder {data} was readable by other users; made it private "
        f"(folders 0700, files 0600; {len(loose)} changed)"
    ]
    assert all(mode(p) == (0o700 if p.is_dir() else 0o600) for p in [data, *data.rglob("*")])
    again = cli(data, "status")
    assert again.returncode == 0 and "made it private" not in again.stderr


def test_a_folder_of_other_files_is_no_data_folder_and_keeps_its_modes(library, tmp_path):
    """``--data-dir ~/Pictures`` by mistake: refused in one line, nothing there changed
    (it made every file below it 0600); the user's own file in a library is left alone."""
    own = tmp_path / "Pictures"
    (own / "sub").mkdir(parents=True)
    for path in (own / "a.txt", own / "sub" / "b.txt"):
        path.write_text("mine")
        path.chmod(0o644)
    for folder in (own, own / "sub"):
        folder.chmod(0o755)
    before = digest(own)
    for args in (["roots", "add", str(library[1])], ["index", str(library[1])]):
        line = one_line_error(cli(own, *args))
        assert "holds other files" in line and "give --data-dir a new or empty folder" in line
    assert digest(own) == before and mode(own) == mode(own / "sub") == 0o755
    assert sorted(p.name for p in own.iterdir()) == ["a.txt", "sub"]

    data = tmp_path / "lib"
    shutil.copytree(library[0], data)
    note = data / "my notes.txt"
    note.write_text("mine")
    note.chmod(0o644)
    data.chmod(0o755)
    assert cli(data, "status").returncode == 0
    assert mode(data) == 0o700 and mode(note) == 0o644

    (tmp_path / "a file").write_text("x")
    assert "is a file" in one_line_error(cli(tmp_path / "a file", "index", str(library[1])))
    empty = one_line_error(run_cli(None, "--data-dir", "", "status"))
    assert "the data folder is empty" in empty


def test_roots_never_nest_and_the_data_folder_is_never_indexed(tmp_path):
    """A data folder inside a photo folder had its own thumbnails indexed, more each run;
    nested roots handed their photos back and forth on every run."""
    photos = tmp_path / "photos"
    write_jpegs(photos / "a", 3, seed=1)
    write_jpegs(photos / "b", 2, seed=2)
    data = photos / "library"  # inside the photo folder, and not hidden
    first = cli(data, "index", str(photos / "a"), str(photos / "b"))
    assert first.returncode == 0 and "added 5" in first.stdout, first.stderr
    store = Store(data / "library.sqlite3", readonly=True)
    ids = {p: store.find_photo_by_path(p).id for p in map(str, photos.glob("[ab]/*.jpg"))}
    store.close()
    assert len(ids) == 5
    around = cli(data, "index", str(photos))  # takes a and b in, ids and vectors kept
    assert around.returncode == 0 and "added 0" in around.stdout, around.stdout
    assert cli(data, "roots", "list").stdout.splitlines() == [str(photos)]
    again = cli(data, "roots", "add", str(photos))
    assert again.stdout.startswith(f"already a photo folder: {photos}"), again.stdout
    inside = cli(data, "roots", "add", str(photos / "a"))
    assert inside.stdout.strip() == (
        f"{photos / 'a'} is inside the photo folder {photos}, which covers it already"
    )
    for _ in range(2):
        again = cli(data, "index")
        assert "added 0" in again.stdout and "unchanged 5" in again.stdout, again.stdout
    inside = cli(data, "index", str(photos / "b"))  # said only its counts
    assert inside.stdout.startswith(
        f"{photos / 'b'} is inside the photo folder {photos}, which covers it already\n"
    ), inside.stdout
    store = Store(data / "library.sqlite3", readonly=True)
    try:
        assert store.counts()["photos"] == 5
        assert {p: store.find_photo_by_path(p).id for p in ids} == ids
    finally:
        store.close()
