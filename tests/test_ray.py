"""Indexing on a real Ray cluster (``searchapp index --ray``), all on loopback.

A two-node cluster (``tests/ray_cluster.py``: head 127.0.0.2, node 127.0.0.3, one CPU
each, token authentication on) runs for the module; a test that breaks it starts again
what it needs. Runs are real ``searchapp index`` processes; faults are real kills: the
second node's raylet, the driver (SIGKILL), the whole cluster. The pixel encoder stands
in for the model except in the one test that compares MobileCLIP's vectors.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from searchapp.config import load_settings
from searchapp.schema import decode_path, encode_path
from tests.helpers import PIXELS_ENV, free_port, index_once, wait_for
from tests.ray_cluster import Cluster
from tests.test_crash import check_library, committed_hashes, embedded_in, make_library
from tests.test_hostile import bad_files, odd_images

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(600)]

BATCH = 4  # small batches: a run lasts long enough to be hit in its middle
# a fault test's run waits this long after each of its ~50 batches: the kill, sent after
# 20 files, lands with seconds of work left even on a fast idle machine
PACE = "0.25"


@pytest.fixture(scope="module")
def cluster():  # noqa: ANN201
    c = Cluster()
    try:
        yield c.start()
    finally:
        c.stop()
        shutil.rmtree(c.temp, ignore_errors=True)  # Ray's session logs


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, set, set, dict]:  # noqa: ANN001
    """200 photos, two duplicates and four bad files (the crash tests' library), read-only."""
    root = tmp_path_factory.mktemp("ray") / "photos"
    good, bad, hashes = make_library(root)
    return root, good, bad, hashes


def index(data: Path, root: Path, env: dict, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data)]
    cmd += ["--batch-size", str(BATCH), "index", str(root), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, rc: int = 0) -> tuple[str, str]:
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == rc, err[-3000:]
    return out, err


def done_files(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            return conn.execute("SELECT max(done) FROM runs").fetchone()[0] or 0
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def rows(db: Path) -> dict[str, tuple]:
    """Photo rows by path (as the file system names it: stored names are decoded)."""
    conn = sqlite3.connect(db)
    try:
        sql = "SELECT path, status, content_hash, width, height, format, failure_reason FROM photos"
        return {decode_path(r[0]): r[1:] for r in conn.execute(sql)}
    finally:
        conn.close()


def vectors(db: Path) -> dict[str, np.ndarray]:
    conn = sqlite3.connect(db)
    try:
        found = conn.execute("SELECT content_hash, vector FROM embeddings").fetchall()
    finally:
        conn.close()
    return {h: np.frombuffer(v, dtype=np.float32) for h, v in found}


def last_run_stats(db: Path) -> dict:
    import json

    conn = sqlite3.connect(db)
    try:
        return json.loads(conn.execute("SELECT stats FROM runs ORDER BY id DESC").fetchone()[0])
    finally:
        conn.close()


def assert_same_library(ray_data: Path, local_data: Path, min_cosine: float) -> None:
    """Same rows (ids aside), same failure reasons, same thumbnails, vectors as close."""
    ray_db, local_db = ray_data / "library.sqlite3", local_data / "library.sqlite3"
    assert rows(ray_db) == rows(local_db)
    got, want = vectors(ray_db), vectors(local_db)
    assert got.keys() == want.keys()
    worst = min(float(np.dot(got[h], want[h])) for h in want)
    assert worst >= min_cosine, worst
    thumbs = sorted(p.relative_to(local_data) for p in local_data.glob("thumbs/*/*.jpg"))
    assert thumbs == sorted(p.relative_to(ray_data) for p in ray_data.glob("thumbs/*/*.jpg"))
    assert all((ray_data / t).read_bytes() == (local_data / t).read_bytes() for t in thumbs)


def hostile_root(root: Path) -> None:
    """The hostile test's broken and odd files, and a symbolic-link loop."""
    root.mkdir(parents=True)
    for name, data in odd_images().items():
        (root / name).write_bytes(data)
    for name, (data, _) in bad_files().items():
        (root / name).write_bytes(data)
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")


def test_two_node_run_matches_a_local_run(cluster, library, tmp_path):
    root, good, bad, hashes = library
    hostile = tmp_path / "hostile"
    hostile_root(hostile)
    local, ray = tmp_path / "local", tmp_path / "ray"
    for data, extra in ((local, ()), (ray, ("--ray", cluster.address))):
        finish(index(data, root, cluster.driver_env(), str(hostile), *extra))
    assert last_run_stats(ray / "library.sqlite3")["workers"] == 2
    assert_same_library(ray, local, 0.9999)
    found = rows(ray / "library.sqlite3")
    assert all(found[str(hostile / name)][0] == "indexed" for name in odd_images())
    for name, (_, word) in bad_files().items():
        status, *_, reason = found[str(hostile / name)]
        assert status == "failed" and word in reason, (name, reason)
    assert "symbolic link loop" in found[str(hostile / "loop_a.jpg")][-1]
    # check_library reads stored paths: a name that is not UTF-8 is stored escaped
    more = {encode_path(p): r[1] for p, r in found.items() if "hostile" in p and r[0] == "indexed"}
    failed = {encode_path(p) for p, r in found.items() if "hostile" in p and r[0] == "failed"}
    check_library(ray, root, good | set(more), bad | failed, hashes | more)
    # a second run is incremental: nothing read again, nothing sent to a worker
    out, _ = finish(index(ray, root, cluster.driver_env(), "--ray", cluster.address))
    assert "added 0, updated 0" in out


def test_mobileclip_on_ray_local_matches_a_local_run(
    cluster, clip_settings, clip_embedder, photos, tmp_path
):
    """Random-weight MobileCLIP in fp32 on a ``--ray local`` instance: the same vectors.

    Uses the 16 sample photos, not 200: each worker loads the model (~15 s of CPU).
    """
    index_once(clip_settings, clip_embedder, photos)
    ray = tmp_path / "ray"
    env = dict(cluster.env, SEARCHAPP_ENCODER="clip", SEARCHAPP_WEIGHTS="random")
    env.update(SEARCHAPP_PRECISION="fp32", HF_HUB_OFFLINE="1", SEARCHAPP_DEVICE="cpu")
    finish(index(ray, photos, env, "--ray", "local"))
    assert_same_library(ray, clip_settings.data_dir, 0.9999)


def _cli(data: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_cannot_start_is_one_line_and_changes_nothing(cluster, library, tmp_path):
    """Missing extra, nobody at the address, a wrong token: exit 1, one line, no change."""
    root, *_ = library
    data = tmp_path / "lib"
    env = cluster.driver_env()
    finish(index(data, root / "d0", env))  # a library to leave unchanged
    before = (data / "library.sqlite3").read_bytes()
    no_ray = tmp_path / "no_ray"
    (no_ray / "ray").mkdir(parents=True)  # shadows the installed Ray: "not installed"
    (no_ray / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    cases = [
        (dict(env, PYTHONPATH=str(no_ray)), cluster.address, "pip install 'searchapp[ray]'"),
        (env, f"127.0.0.2:{free_port('127.0.0.2')}", "no Ray cluster answers"),
        (dict(env, RAY_AUTH_TOKEN="0" * 32), cluster.address, "refused this machine's auth"),
        (env, f"{cluster.address} --ray-shared-root {root}={tmp_path}/absent", "cannot see"),
    ]
    for case_env, address, says in cases:
        started = time.monotonic()
        _, err = finish(index(data, root, case_env, "--ray", *address.split()), rc=1)
        lines = [x for x in err.strip().splitlines() if not x.startswith("WARNING: test encoder")]
        assert len(lines) == 1 and lines[0].startswith("searchapp: ") and says in lines[0], err
        assert time.monotonic() - started < 120
        assert (data / "library.sqlite3").read_bytes() == before


def test_shared_root_workers_read_the_files_themselves(cluster, library, tmp_path):
    """Workers read a mirror of the folder; a file that differs there is not indexed."""
    from searchapp.indexer.ray_worker import CHANGED_WHILE_READ

    root = library[0] / "d1"
    mirror = tmp_path / "mirror"
    shutil.copytree(root, mirror)
    changed = sorted(mirror.iterdir())[0]
    changed.write_bytes(changed.read_bytes()[:-10] + b"x" * 10)  # a worker sees other bytes
    local, ray = tmp_path / "local", tmp_path / "ray"
    finish(index(local, root, cluster.driver_env()))
    shared = ["--ray", cluster.address, "--ray-shared-root", f"{root}={mirror}"]
    finish(index(ray, root, cluster.driver_env(), *shared))
    got, want = rows(ray / "library.sqlite3"), rows(local / "library.sqlite3")
    path = str(root / changed.name)
    assert got.pop(path)[::5] == ("failed", CHANGED_WHILE_READ)
    want.pop(path)
    assert got == want


def test_other_versions_on_a_worker_are_refused(cluster, monkeypatch, tmp_path):
    """A worker whose torch differs (here: the driver pretends to another one)."""
    import searchapp.indexer.ray_executor as ray_executor
    from searchapp.errors import RayVersionError
    from searchapp.indexer.ray_worker import software_versions
    from searchapp.model import resolve_spec

    for name, value in cluster.env.items():
        if name.startswith("RAY_"):
            monkeypatch.setenv(name, value)
    pretend = dict(software_versions(), torch="0.0.1")
    monkeypatch.setattr(ray_executor, "software_versions", lambda: pretend)
    settings = load_settings(
        data_dir=tmp_path / "lib", encoder="pixels", ray_address=cluster.address
    )
    with pytest.raises(RayVersionError, match=r"torch 0\.0\.1 here, .* there"):
        ray_executor.open_ray_stage(settings, resolve_spec(settings))


def test_without_ray_nothing_imports_ray(photos, tmp_path):
    code = (
        "import sys; from searchapp.cli.main import main; "
        f"rc = main(['--data-dir', {str(tmp_path / 'lib')!r}, 'index', {str(photos)!r}]); "
        "assert rc == 0; assert 'ray' not in sys.modules, 'ray was imported'"
    )
    env = dict(os.environ, **PIXELS_ENV)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


# the tests below break the cluster; each test starts again what it needs
def paced_run(cluster, root: Path, tmp_path: Path) -> tuple[Path, Path, dict, subprocess.Popen]:  # noqa: ANN001
    """A paced ``index --ray`` on both nodes, returned once its first 20 files are in:
    (data dir, trace log, environment, the running process)."""
    cluster.start()  # both nodes (a test before may have stopped one)
    data, log = tmp_path / "lib", tmp_path / "trace.log"
    env = cluster.driver_env(SEARCHAPP_FAULT_LOG=str(log), SEARCHAPP_FAULT_PACE=PACE)
    proc = index(data, root, env, "--ray", cluster.address)
    wait_for(lambda: done_files(data / "library.sqlite3") >= 20, "the first batches", 120)
    return data, log, env, proc


def test_lost_node_mid_run_keeps_every_photo_once(cluster, library, tmp_path):
    root, good, bad, hashes = library
    data, log, env, proc = paced_run(cluster, root, tmp_path)
    assert proc.poll() is None, "the run ended before the node was lost"
    cluster.raylet("node").kill()
    out, err = proc.communicate(timeout=400)
    if proc.returncode == 0:
        assert last_run_stats(data / "library.sqlite3")["workers"] == 1  # it noticed
    else:  # allowed: one line, and a rerun completes
        assert len(err.strip().splitlines()) == 1, err
        finish(index(data, root, env, "--ray", cluster.address))
    embedded = embedded_in(log)  # traced as each batch commits, across both runs
    assert len(embedded) == len(set(embedded)), "committed content was embedded again"
    check_library(data, root, good, bad, hashes)


def test_driver_killed_mid_run_then_a_rerun_completes(cluster, library, tmp_path):
    root, good, bad, hashes = library
    data, log, env, proc = paced_run(cluster, root, tmp_path)
    assert proc.poll() is None, "the run ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = committed_hashes(data / "library.sqlite3")
    assert before
    log.unlink()
    finish(index(data, root, env, "--ray", cluster.address))
    assert not before & set(embedded_in(log)), "committed content was embedded again"
    check_library(data, root, good, bad, hashes)


def test_cluster_stopped_mid_run_is_one_line_and_keeps_what_was_committed(
    cluster, library, tmp_path
):
    root, good, bad, hashes = library
    data, log, env, proc = paced_run(cluster, root, tmp_path)
    assert proc.poll() is None, "the run ended before the cluster stopped"
    cluster.stop()
    _, err = finish(proc, rc=1)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("searchapp: ") and "Ray" in lines[-1], err
    assert [line for line in lines if not line.startswith("WARNING: test encoder")] == lines[-1:]
    committed = committed_hashes(data / "library.sqlite3")
    assert committed
    indexed = [p for p, r in rows(data / "library.sqlite3").items() if r[0] == "indexed"]
    search = _cli(data, env, "search", "--like", min(indexed), "-k", "3")  # a committed one
    assert search.returncode == 0 and search.stdout.count("\n") == 3, search.stderr
    # the rest, without Ray: nothing committed is embedded again
    log.unlink()
    finish(index(data, root, env))
    assert not committed & set(embedded_in(log))
    check_library(data, root, good, bad, hashes)


def test_index_with_ray_is_handed_to_a_running_watcher(library, tmp_path):
    """The watcher holds the library: it does the scan, with its own settings (no Ray)."""
    from tests.test_watcher_daemon import Daemon

    lib = tmp_path / "lib"
    daemon = Daemon(lib, library[0] / "d2")
    try:
        daemon.wait_started()
        cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(lib), "index"]
        cmd += ["--ray", "127.0.0.2:9"]  # nobody there: the watcher never uses it
        proc = subprocess.run(
            cmd, env=dict(os.environ, **PIXELS_ENV), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        assert "done by the watcher" in proc.stdout
        assert "indexes with its own settings, not --ray" in proc.stderr
    finally:
        assert daemon.terminate() == 0
        daemon.kill()
