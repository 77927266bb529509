"""``searchapp watch`` as a real process: single writer, hand-off, SIGTERM, kill -9 mid-burst."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from searchapp.config import load_settings
from searchapp.model import model_id_for
from searchapp.vectors import VectorIndex
from tests import helpers

ENV = dict(
    os.environ,
    SEARCHAPP_ENCODER="pixels",  # the pixel test encoder (tests/README.md)
    SEARCHAPP_WEIGHTS="random",
    SEARCHAPP_PRECISION="fp32",
    SEARCHAPP_BATCH_SIZE="16",
    HF_HUB_OFFLINE="1",
    PYTHONUNBUFFERED="1",
)
TIMEOUT_S = 120.0


def searchapp(lib: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run(
        [sys.executable, "-m", "searchapp.cli", "--data-dir", str(lib), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        **kwargs,
    )


def wait_for(check: Callable[[], object], what: str, timeout_s: float = TIMEOUT_S) -> object:
    return helpers.wait_for(check, what, timeout_s, poll_s=0.2)


def db_rows(lib: Path, sql: str) -> list[tuple]:
    """Read the library as another process would (read-only, beside the writer)."""
    if not (lib / "library.sqlite3").exists():
        return []
    con = sqlite3.connect(f"file:{lib / 'library.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # schema not created yet
    finally:
        con.close()


def photo_count(lib: Path) -> int:
    rows = db_rows(lib, "SELECT COUNT(*) FROM photos WHERE status = 'indexed'")
    return rows[0][0] if rows else 0


def status(lib: Path) -> dict:
    out = searchapp(lib, "status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Daemon:
    """A ``searchapp watch`` process whose output goes to a file."""

    def __init__(self, lib: Path, *paths: Path) -> None:
        self.log_path = lib.parent / f"watch-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "searchapp.cli",
                "--data-dir",
                str(lib),
                "watch",
                *map(str, paths),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=ENV,
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_started(self) -> None:
        wait_for(lambda: "start-up reconcile" in self.output() or self.proc.poll() is not None,
                 "the start-up reconcile")  # fmt: skip
        assert self.proc.poll() is None, self.output()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture()
def daemons() -> Iterator[list[Daemon]]:
    """Daemons started by a test; none is left running, whatever happens."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


def assert_index_saved(lib: Path) -> None:
    """The FAISS file on disk is the one for the library's last committed state."""
    settings = load_settings(data_dir=lib, encoder="pixels")
    index = VectorIndex.load(settings.index_path, model_id_for(settings))
    generation = int(db_rows(lib, "SELECT value FROM meta WHERE key = 'generation'")[0][0])
    assert index.generation == generation
    ids = {r[0] for r in db_rows(lib, "SELECT id FROM photos WHERE status = 'indexed'")}
    assert set(index.ids().tolist()) == ids


def test_daemon_single_writer_handoff_status_and_sigterm(tmp_path, photos, daemons) -> None:  # noqa: ANN001
    lib = tmp_path / "lib"
    root = tmp_path / "root"
    root.mkdir()
    for name in ("astronaut.jpg", "coffee.png"):
        (root / name).write_bytes((photos / name).read_bytes())
    daemon = Daemon(lib, root)
    daemons.append(daemon)
    daemon.wait_started()

    # a second daemon is refused with a clear message
    second = searchapp(lib, "watch")
    assert second.returncode == 1
    assert f"already running on {lib} (pid {daemon.proc.pid}" in second.stderr

    # status names the running daemon
    info = status(lib)
    assert info["daemon"]["running"] is True
    assert info["daemon"]["pid"] == daemon.proc.pid
    assert info["daemon"]["since"] <= info["daemon"]["last_activity"] <= time.time()
    assert "start-up reconcile" in info["daemon"]["activity"]
    assert "watcher: running, pid" in searchapp(lib, "status").stdout

    # `searchapp index` hands its work to the daemon instead of writing beside it
    broken = root / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    wait_for(lambda: "cannot index" in daemon.output(), "the per-file warning")
    assert "WARNING: watch: cannot index " + str(broken.resolve()) in daemon.output()
    out = searchapp(lib, "index", "--retry-failed")
    assert out.returncode == 0, out.stderr
    assert f"[done by the watcher, pid {daemon.proc.pid}]" in out.stdout
    assert "failed 1" in out.stdout  # the daemon retried the broken file
    assert "requested index" in daemon.output()

    # `roots remove` goes through the daemon too
    other = tmp_path / "other"
    other.mkdir()
    (other / "coins.png").write_bytes((photos / "coins.png").read_bytes())
    assert searchapp(lib, "roots", "add", str(other)).returncode == 0
    wait_for(lambda: photo_count(lib) == 3, "the added root indexed")
    removed = searchapp(lib, "roots", "remove", str(other))
    assert removed.returncode == 0, removed.stderr
    assert "and its 1 file from the library" in removed.stdout
    assert photo_count(lib) == 2

    # SIGTERM: exit 0 with the index saved; status no longer shows a daemon
    assert daemon.terminate() == 0, daemon.output()
    assert_index_saved(lib)
    assert status(lib)["daemon"] == {"running": False}
    assert f"watch: stopping (signal {int(signal.SIGTERM)})" in daemon.output()


@pytest.mark.slow
def test_burst_killed_mid_way_ends_indexed_exactly_once(tmp_path, daemons) -> None:  # noqa: ANN001
    lib = tmp_path / "lib"
    root = tmp_path / "root"
    root.mkdir()
    first = Daemon(lib, root)
    daemons.append(first)
    first.wait_started()

    files = helpers.write_jpegs(root / "burst", 300, seed=7, size=96, name="burst_{i:04d}.jpg")
    wait_for(lambda: photo_count(lib) >= 20, "part of the burst indexed")
    first.proc.kill()  # kill -9: no cleanup at all
    first.proc.wait(timeout=30)
    at_kill = photo_count(lib)
    assert at_kill < 300, "the burst finished before the kill; the test proves nothing"

    second = Daemon(lib)
    daemons.append(second)
    wait_for(lambda: photo_count(lib) == 300, "all 300 photos after the restart", 240)
    assert second.terminate() == 0, second.output()

    paths = [r[0] for r in db_rows(lib, "SELECT path FROM photos")]
    assert sorted(paths) == sorted(str(p.resolve()) for p in files)  # each exactly once
    assert db_rows(lib, "SELECT COUNT(*) FROM photos WHERE status != 'indexed'")[0][0] == 0
    hashes = db_rows(lib, "SELECT COUNT(DISTINCT content_hash) FROM photos")[0][0]
    assert hashes == 300
    assert db_rows(lib, "SELECT COUNT(*) FROM embeddings")[0][0] == 300
    assert_index_saved(lib)
