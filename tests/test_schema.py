"""Schema versions: older databases are upgraded after a backup; newer ones are refused."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import create_engine

from searchapp.errors import SchemaTooNewError, StoreError
from searchapp.store import (
    PATH_ESCAPE,
    Store,
    _alembic_config,
    decode_path,
    encode_path,
)
from tests.helpers import PIXELS_ENV, integrity

OLD_NAME = f"/photos/odd{PATH_ESCAPE}name"  # a legal name holding the escape character


def make_v1_library(db) -> None:  # noqa: ANN001
    """A database as searchapp with schema 0001 left it, with a few rows."""
    from alembic import command

    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
    engine.dispose()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO roots VALUES (1, ?, 1.0, 1)", (OLD_NAME,))
        conn.execute(
            "INSERT INTO photos (id, root_id, path, folder, size, mtime_ns, content_hash, "
            "status) VALUES (7, 1, ?, ?, 10, 5, 'abc', 'indexed')",
            (f"{OLD_NAME}/a.jpg", OLD_NAME),
        )
        conn.execute("INSERT INTO embeddings VALUES ('abc', 'm', x'0000803f', 2.0)")
        conn.execute("INSERT INTO meta VALUES ('generation', '3')")
    conn.close()


def revision(db) -> str:  # noqa: ANN001
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    finally:
        conn.close()


def test_old_schema_is_backed_up_then_upgraded(tmp_path):
    db = tmp_path / "library.sqlite3"
    make_v1_library(db)
    assert revision(db) == "0001"
    store = Store(db)
    assert revision(db) == "0003"
    backups = list(tmp_path.glob("library.sqlite3.backup-0001-*"))
    assert len(backups) == 1 and revision(backups[0]) == "0001"
    photo = store.get_photos([7])[7]
    assert photo.path == f"{OLD_NAME}/a.jpg" and photo.folder == OLD_NAME  # data intact
    assert store.list_roots()[0].path == OLD_NAME
    assert store.find_photo_by_path(f"{OLD_NAME}/a.jpg").id == 7
    assert store.generation() == 3 and integrity(db) == "ok"
    # 0003: indexed rows carry the generation they are current at (an index file of an
    # older one re-adds them once, see vectors.open_index)
    assert store.vectors_since("m", 2)[0].tolist() == [7]
    assert not len(store.vectors_since("m", 3)[0])
    store.close()
    Store(db).close()  # at head now: no second backup
    assert len(list(tmp_path.glob("library.sqlite3.backup-*"))) == 1


def digest(folder) -> dict[str, str]:  # noqa: ANN001
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_newer_schema_is_refused_and_left_untouched(tmp_path):
    data = tmp_path / "lib"
    Store(data / "library.sqlite3").close()
    conn = sqlite3.connect(data / "library.sqlite3")
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_future'")
    conn.close()
    before = digest(data)
    with pytest.raises(SchemaTooNewError, match="newer searchapp"):
        Store(data / "library.sqlite3")
    assert digest(data) == before  # no upgrade, no backup, no change

    env = dict(os.environ, **PIXELS_ENV)
    proc = subprocess.run(
        [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data), "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [x for x in proc.stderr.splitlines() if x.startswith("searchapp:")]
    assert len(lines) == 1 and "newer searchapp" in lines[0] and "Traceback" not in proc.stderr
    assert digest(data) == before


def test_foreign_sqlite_file_is_refused(tmp_path):
    db = tmp_path / "library.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a searchapp library"):
        Store(db)


def test_path_escape_round_trips_and_keeps_prefixes():
    rng = random.Random(3)
    alphabet = ["a", "/", "é", PATH_ESCAPE, "\udce9", "\udcff", "\ud800", "0", "f", "u"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        encoded = encode_path(text)
        encoded.encode("utf-8")  # always valid UTF-8 for SQLite
        assert decode_path(encoded) == text
        cut = rng.randint(0, len(text))
        assert encoded.startswith(encode_path(text[:cut]))
    assert encode_path("/home/ann/Pictures/été.jpg") == "/home/ann/Pictures/été.jpg"
    assert encode_path(os.fsdecode(b"/p/caf\xe9.jpg")) == f"/p/caf{PATH_ESCAPE}e9.jpg"


def test_head_revision_is_alembics_head_and_spares_its_import(tmp_path):
    """``HEAD_REVISION`` names the newest migration, so a library already at it opens
    without importing Alembic; a new library is still made by Alembic."""
    from alembic.script import ScriptDirectory

    from searchapp.schema import HEAD_REVISION, MIGRATIONS_DIR

    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() == HEAD_REVISION
    db = tmp_path / "library.sqlite3"
    code = (
        "import sys; from searchapp.store import Store; "
        f"Store({str(db)!r}).close(); print('alembic' in sys.modules)"
    )
    opened = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert [p.stdout.strip() for p in opened] == ["True", "False"]  # made, then only opened
    assert revision(db) == HEAD_REVISION
