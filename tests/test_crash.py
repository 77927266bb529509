"""Crash safety: real ``searchapp index`` processes SIGKILLed at chosen and random moments.

Each trial starts the indexer on the same library and kills it (a fault point makes it
SIGKILL itself at an exact place, or the test kills it after a random delay). A final run
without faults must leave a library with every good photo once, a sound SQLite file, a
FAISS file whose ids are the stored ids, no orphan vectors or thumbnails, and no content
sent to the model twice unless the kill came before that content was committed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.config import load_settings
from searchapp.decoder import hash_bytes
from searchapp.model import model_id_for
from searchapp.vectors import VectorIndex
from tests.helpers import PIXELS_ENV, mounted_tmpfs, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

N_PHOTOS = 200
BATCH = 8
# (fault, what it interrupts); each must kill the run (rc -9), in this order
FIXED_FAULTS = [
    ("scan:120", "walking the folder"),
    ("decode:20", "a decode worker thread, mid-batch"),
    ("embed:1", "right after the model call, before the batch is written"),
    ("commit:2", "inside the batch transaction, rows written but not committed"),
    ("after-commit:3", "after a commit, before the FAISS index is updated"),
    ("faiss-save:1", "writing the FAISS temp file (the rebuild at start)"),
    ("commit:4", "inside the 4th batch transaction"),
]
RANDOM_KILLS = 3


def make_library(root: Path) -> tuple[set[str], set[str], dict[str, str]]:
    """Distinct small JPEGs, two duplicate pairs and four bad files."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    good: dict[str, str] = {}
    for i in range(N_PHOTOS):
        sub = root / f"d{i % 5}"
        sub.mkdir(exist_ok=True)
        a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        path = sub / f"p{i:04d}.jpg"
        Image.fromarray(a).resize((64, 64), Image.NEAREST).save(path, quality=90)
        good[str(path)] = hash_bytes(path.read_bytes())
    for i in range(2):  # same content under another name: one vector, two photos
        dup = root / f"dup{i}.jpg"
        dup.write_bytes((root / "d0" / f"p{i * 5:04d}.jpg").read_bytes())
        good[str(dup)] = hash_bytes(dup.read_bytes())
    bad = {root / "empty.jpg": b"", root / "noise.jpg": os.urandom(3000)}
    bad[root / "text.png"] = b"<html><body>not a picture</body></html>"
    bad[root / "cut.jpg"] = (root / "d1" / "p0001.jpg").read_bytes()[:400]
    for path, data in bad.items():
        path.write_bytes(data)
    return set(good), {str(p) for p in bad}, good


def start_index(
    data: Path, root: Path, log: Path, fault: str | None, *, paced: bool = False
) -> subprocess.Popen:
    env = dict(os.environ, **PIXELS_ENV)
    env["SEARCHAPP_FAULT_LOG"] = str(log)
    env.pop("SEARCHAPP_FAULT", None)
    if fault:
        env["SEARCHAPP_FAULT"] = fault
    if paced:  # a random kill must find work left however fast the machine: ~20 batches x 0.1 s
        env["SEARCHAPP_FAULT_PACE"] = "0.1"
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data)]
    cmd += ["--batch-size", str(BATCH), "index", str(root)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # no tables yet: the first run died before creating them
    finally:
        conn.close()


def committed_hashes(db: Path) -> set[str]:
    return {h for (h,) in query(db, "SELECT content_hash FROM embeddings")}


def run_count(db: Path) -> int:
    rows = query(db, "SELECT count(*) FROM runs")
    return rows[0][0] if rows else 0


def index_is_stale(data: Path, db: Path) -> bool:
    try:
        raw = (data / "vectors.faiss").read_bytes()
        (hlen,) = struct.unpack_from("<I", raw, 8)
        header = json.loads(raw[12 : 12 + hlen])
    except (OSError, ValueError, struct.error):
        return True
    rows = query(db, "SELECT value FROM meta WHERE key='generation'")
    return not rows or int(rows[0][0]) != header["generation"]


def embedded_in(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith("embedded")]


def kill_at_random(proc: subprocess.Popen, db: Path, runs_before: int, rng: random.Random) -> None:
    """SIGKILL a random moment after the run has started (or let it end if it is quick)."""
    deadline = time.monotonic() + 120
    while run_count(db) <= runs_before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.8))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)


def test_sigkill_trials_leave_a_consistent_library(tmp_path):
    root, data = tmp_path / "photos", tmp_path / "lib"
    good, bad, hashes = make_library(root)
    db = data / "library.sqlite3"
    rng = random.Random(1234)
    # fixed points first: each needs a few batches of work left; random kills may finish it
    plan = [f for f, _ in FIXED_FAULTS] + ["random"] * RANDOM_KILLS + ["faiss-save:end"]
    kills, repeats, total_embedded = 0, 0, 0
    seen: set[str] = set()
    for trial, fault in enumerate(plan):
        before = committed_hashes(db)
        log = tmp_path / f"trial{trial}.log"
        if fault == "faiss-save:end":  # the save at the end of the run (after a rebuild, if stale)
            fault = "faiss-save:2" if index_is_stale(data, db) else "faiss-save:1"
        runs_before = run_count(db)
        random_kill = fault == "random"
        proc = start_index(data, root, log, None if random_kill else fault, paced=random_kill)
        if random_kill:
            kill_at_random(proc, db, runs_before, rng)
        _, err = proc.communicate(timeout=300)
        embedded = embedded_in(log)
        total_embedded += len(embedded)
        again = before & set(embedded)
        assert not again, f"trial {trial} ({fault}) re-embedded committed content: {again}"
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert fault == "random", f"{fault} did not kill: rc {proc.returncode} {err[-500:]!r}"
            assert proc.returncode == 0, err.decode()[-2000:]
        repeats += len(set(embedded) & seen)  # sent before, killed before its commit
        seen |= set(embedded)

    before = committed_hashes(db)
    final_log = tmp_path / "final.log"
    proc = start_index(data, root, final_log, None)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    final = set(embedded_in(final_log))
    assert not before & final
    total_embedded += len(final)
    repeats += len(final & seen)

    assert kills >= 10
    assert total_embedded == len(set(hashes.values())) + repeats
    check_library(data, root, good, bad, hashes)
    distinct = len(set(hashes.values()))
    print(
        f"\ncrash trials: {len(plan)} runs, {kills} SIGKILLs, final run: {out.decode().strip()}; "
        f"model calls {total_embedded} for {distinct} distinct contents "
        f"({repeats} repeats, all of content not yet committed when its run was killed)"
    )


def check_library(data: Path, root: Path, good: set, bad: set, hashes: dict) -> None:
    db = data / "library.sqlite3"
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    rows = query(db, "SELECT path, status, content_hash FROM photos")
    indexed = [p for p, s, _ in rows if s == "indexed"]
    assert sorted(indexed) == sorted(good)  # each good photo exactly once
    assert {p for p, s, _ in rows if s == "failed"} == bad
    assert all(h == hashes[p] for p, s, h in rows if s == "indexed")

    stored = {h for (h,) in query(db, "SELECT content_hash FROM embeddings")}
    assert stored == set(hashes.values())  # no orphan vectors, none missing

    settings = load_settings(data_dir=data, encoder="pixels")
    index = VectorIndex.load(settings.index_path, model_id_for(settings))
    ids = {i for (i,) in query(db, "SELECT id FROM photos WHERE status='indexed'")}
    assert sorted(index.ids().tolist()) == sorted(ids)
    generation = query(db, "SELECT value FROM meta WHERE key='generation'")[0][0]
    assert index.generation == int(generation)

    thumbs = {p.stem for p in settings.thumbs_dir.glob("*/*.jpg")}
    assert thumbs == set(hashes.values())  # none orphaned, none missing
    leftovers = [p.name for p in data.rglob("*") if p.name.startswith((".tmp-", ".vectors-"))]
    assert not leftovers


@pytest.fixture()
def tiny_disk(tmp_path):  # noqa: ANN201
    """A 1.5 MB tmpfs for the data dir, unmounted after; skips where mounting is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    with mounted_tmpfs(mnt, "1536k"):
        yield mnt


def test_disk_full_stops_with_one_error_and_keeps_what_was_committed(tmp_path, tiny_disk):
    root, data = tmp_path / "photos", tiny_disk / "lib"
    good, _, _ = make_library(root)
    error, committed = index_until_full(data, root, good)
    db = data / "library.sqlite3"
    probe_id, probe_path = query(
        db, "SELECT id, path FROM photos WHERE status='indexed' ORDER BY id LIMIT 1"
    )[0]
    found = run_cli(data, "search", "--like", str(probe_id), "-k", str(len(good)), "--json")
    assert found.returncode == 0, found.stderr  # searchable while the disk is still full
    # the photo and its byte-identical copies are left out of "more like this"
    same_bytes = (
        "SELECT path FROM photos WHERE status = 'indexed' AND content_hash = "
        f"(SELECT content_hash FROM photos WHERE id = {probe_id})"
    )
    same = {path for (path,) in query(db, same_bytes)}
    assert probe_path in same
    assert {r["path"] for r in json.loads(found.stdout)} == committed - same

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    again = run_cli(data, "--batch-size", str(BATCH), "index")
    assert again.returncode == 0, again.stderr
    check_library_counts(db, good)
    print(f"\ndisk full: stopped after {len(committed)} of {len(good)} photos: {error}")


def test_full_thumbnail_disk_stops_with_the_same_one_line(tmp_path):
    """ENOSPC from a thumbnail (written in a decode thread) is the same one-line error."""
    root, data = tmp_path / "photos", tmp_path / "lib"
    good, _, _ = make_library(root)
    thumbs = data / "thumbs"
    thumbs.mkdir(parents=True)
    with mounted_tmpfs(thumbs, "400k"):  # the database has room; the thumbnails do not
        error, committed = index_until_full(data, root, good)
        subprocess.run(["mount", "-o", "remount,size=64m", str(thumbs)], check=True)
        again = run_cli(data, "--batch-size", str(BATCH), "index")
        assert again.returncode == 0, again.stderr
        check_library_counts(data / "library.sqlite3", good)
    print(f"\nthumbnail disk full: stopped after {len(committed)} of {len(good)}: {error}")


def index_until_full(data: Path, root: Path, good: set[str]) -> tuple[str, set[str]]:
    """Index until the disk fills: one error line, exit 1; returns it and what committed."""
    proc = run_cli(data, "--batch-size", str(BATCH), "index", str(root))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("searchapp:")]
    assert len(errors) == 1 and "is full" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    db = data / "library.sqlite3"
    committed = {p for (p,) in query(db, "SELECT path FROM photos WHERE status='indexed'")}
    assert committed and committed < good  # it stopped part-way, with some photos kept
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    return errors[0], committed


def check_library_counts(db: Path, good: set[str]) -> None:
    indexed = {p for (p,) in query(db, "SELECT path FROM photos WHERE status='indexed'")}
    assert indexed == good
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


def _damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random bytes":
        path.write_bytes(os.urandom(len(raw)))
    elif how == "flipped byte":
        flipped = bytearray(raw)
        flipped[-100] ^= 0x01  # inside the vectors: FAISS would load it without complaint
        path.write_bytes(bytes(flipped))
    elif how == "another model":
        (hlen,) = struct.unpack_from("<I", raw, 8)
        header = json.loads(raw[12 : 12 + hlen])
        header["model_id"] = "MobileCLIP-S1/other"
        new = json.dumps(header).encode()
        path.write_bytes(raw[:8] + struct.pack("<I", len(new)) + new + raw[12 + hlen :])
    elif how == "a folder":
        path.unlink()
        path.mkdir()


DAMAGE = ["truncated", "empty", "random bytes", "flipped byte", "another model", "a folder"]


def test_damaged_faiss_file_is_rebuilt_from_stored_vectors(settings, embedder, photos, caplog):
    from searchapp.store import Store
    from searchapp.vectors import open_index
    from tests.helpers import index_once

    index_once(settings, embedder, photos)
    store = Store(settings.db_path)
    ids, vecs = store.load_vectors(embedder.model_id)
    caplog.set_level(logging.INFO, logger="searchapp.vectors")
    for how in DAMAGE:
        _damage(settings.index_path, how)
        caplog.clear()
        if how == "a folder":  # cannot be replaced by a file: rebuilt in memory, save fails
            with pytest.raises(OSError):
                open_index(settings.index_path, store, embedder.model_id, embedder.dim)
            caplog.clear()
            index = open_index(
                settings.index_path, store, embedder.model_id, embedder.dim, save=False
            )
            settings.index_path.rmdir()
        else:
            index = open_index(settings.index_path, store, embedder.model_id, embedder.dim)
        said = [r for r in caplog.records if r.levelno >= logging.INFO]
        assert len(said) == 1 and "rebuilding it from the stored embeddings" in said[0].message
        # another model's file follows a switch of model (its searches say so): no warning
        assert said[0].levelname == ("INFO" if how == "another model" else "WARNING"), how
        assert sorted(index.ids().tolist()) == sorted(ids.tolist()), how
        for pid, vec in zip(ids.tolist(), vecs, strict=True):
            assert np.allclose(index.reconstruct(pid), vec), how
        if how != "a folder":
            assert VectorIndex.load(settings.index_path, embedder.model_id).ntotal == len(ids)
    open_index(settings.index_path, store, embedder.model_id, embedder.dim)  # a sound file
    store.close()
    _damage(settings.index_path, "truncated")
    found = run_cli(settings.data_dir, "search", "--like", str(int(ids[0])), "--json")
    assert found.returncode == 0, found.stderr
    assert "rebuilding it from the stored embeddings" in found.stderr
    assert len(json.loads(found.stdout)) == min(10, len(ids) - 1)


def test_sigterm_stops_a_run_as_ctrl_c_does_and_a_killed_run_reads_stopped(tmp_path) -> None:
    """``kill`` (SIGTERM) ended ``searchapp index`` with no word and its run still
    "running"; now it stops as Ctrl-C does. A SIGKILLed run's row stays "running" in the
    file, but status says "stopped": its process is gone."""
    root, data, log = tmp_path / "photos", tmp_path / "lib", tmp_path / "fault.log"
    root.mkdir()
    for i in range(48):
        Image.new("RGB", (32, 32), (i * 5, 255 - i * 5, i)).save(root / f"p{i:02d}.png")
    proc = start_index(data, root, log, None, paced=True)
    db = data / "library.sqlite3"
    deadline = time.monotonic() + 120
    while not query(db, "SELECT 1 FROM photos WHERE status = 'indexed'"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.decode().strip().endswith("interrupted; everything committed so far is kept.")
    last = json.loads(run_cli(data, "status", "--json").stdout)["last_run"]
    assert last["state"] == "interrupted"

    proc = start_index(data, root, log, "commit:1")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert query(db, "SELECT state FROM runs ORDER BY id DESC LIMIT 1") == [("running",)]
    last = json.loads(run_cli(data, "status", "--json").stdout)["last_run"]
    assert last["state"] == "stopped" and "the next run resumes" in last["message"]
    assert "added" in run_cli(data, "index").stdout
    assert query(db, "SELECT count(*) FROM photos WHERE status = 'indexed'") == [(48,)]
