"""A folder that can be listed but not entered (read without execute permission).

Its names can be listed, but no file below it can be opened or even stat-ed. Such a folder
is treated like an offline one: its indexed photos and their vectors are kept, and the
folder is reported once with its reason. Permissions are enforced by running the CLI with
root's capabilities dropped (tests run as root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from searchapp.store import STATUS_INDEXED, Store
from tests.helpers import without_root_powers, write_jpegs

pytestmark = pytest.mark.timeout(300)

MODEL_ID = "pixels-test-v1"
LISTABLE_NOT_ENTERABLE = 0o644


def _env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", SEARCHAPP_ENCODER="pixels")


def _cli(prefix: list[str], data: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "searchapp.cli", "--data-dir", str(data), *args]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return proc


def _embedded(data: Path, root: Path) -> dict[str, tuple[str, bool]]:
    """Stored files by name: (status, has a vector)."""
    store = Store(data / "library.sqlite3")
    try:
        (record,) = store.list_roots()
        known = store.known_files(record.id, MODEL_ID)
    finally:
        store.close()
    return {Path(p).name: (k.status, k.embedded) for p, k in known.items()}


def _failures(data: Path) -> dict[str, str]:
    store = Store(data / "library.sqlite3")
    try:
        return {Path(f.path).name: f.failure_reason for f in store.failures()}
    finally:
        store.close()


@pytest.fixture()
def library(tmp_path: Path) -> tuple[Path, Path]:
    root, data = tmp_path / "photos", tmp_path / "lib"
    write_jpegs(root / "open", 1, seed=41, name="a.jpg")
    write_jpegs(root / "shut", 1, seed=42, name="b.jpg")
    write_jpegs(root / "shut" / "deeper", 1, seed=43, name="c.jpg")
    return root, data


def test_folder_that_cannot_be_entered_keeps_its_photos(library):
    prefix = without_root_powers()
    root, data = library
    shut = root / "shut"
    _cli(prefix, data, "index", str(root))
    everything = {name: (STATUS_INDEXED, True) for name in ("a.jpg", "b.jpg", "c.jpg")}
    assert _embedded(data, root) == everything
    shut.chmod(LISTABLE_NOT_ENTERABLE)
    try:
        proc = _cli(prefix, data, "index", str(root))
        assert "removed 0" in proc.stdout + proc.stderr
        assert _embedded(data, root) == {**everything, "shut": ("failed", False)}
        assert _failures(data) == {"shut": "folder cannot be read (permission denied)"}
        status = json.loads(_cli(prefix, data, "status", "--json").stdout)
        assert status["pending"] == {"to_index": 0, "to_remove": 0, "to_embed": 0}
    finally:
        shut.chmod(0o755)
    _cli(prefix, data, "index", str(root))
    assert _embedded(data, root) == everything
    assert _failures(data) == {}


SCAN_CHANGES = """
import json, sys
from searchapp.plan import plan_changes
from searchapp.store import Store
store = Store(sys.argv[1], readonly=True)
plan = plan_changes(store, sys.argv[2], sys.argv[3:])
print(json.dumps({
    "work": sorted((w.file.path, w.file.error) for w in plan.work),
    "missing": sorted(k.path for k in plan.missing.values()),
}))
"""


def test_watched_change_below_a_folder_that_cannot_be_entered(library):
    """A watcher batch naming files below the folder finds the folder, not deleted files."""
    prefix = without_root_powers()
    root, data = library
    shut = root / "shut"
    _cli(prefix, data, "index", str(root))
    shut.chmod(LISTABLE_NOT_ENTERABLE)
    try:
        named = [str(shut / "b.jpg"), str(shut / "deeper" / "c.jpg"), str(shut / "deeper")]
        cmd = [*prefix, sys.executable, "-c", SCAN_CHANGES, str(data / "library.sqlite3")]
        proc = subprocess.run(
            [*cmd, MODEL_ID, *named], env=_env(), capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
    finally:
        shut.chmod(0o755)
    assert plan == {"work": [[str(shut), "Permission denied"]], "missing": []}


def test_root_that_cannot_be_entered_keeps_its_photos(library):
    prefix = without_root_powers()
    root, data = library
    _cli(prefix, data, "index", str(root))
    root.chmod(LISTABLE_NOT_ENTERABLE)
    try:
        _cli(prefix, data, "index")
        kept = _embedded(data, root)
    finally:
        root.chmod(0o755)
    everything = {name: (STATUS_INDEXED, True) for name in ("a.jpg", "b.jpg", "c.jpg")}
    assert kept == {**everything, "photos": ("failed", False)}
    assert _failures(data) == {"photos": "folder cannot be read (permission denied)"}
