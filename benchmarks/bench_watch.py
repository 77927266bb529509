"""Watcher benchmark: close-to-searchable delay, and the idle daemon's CPU and memory.

Builds a library of ``--files`` real JPEGs (default 10,000) and indexes it through the
normal pipeline (``searchapp index``). To keep that affordable on a small CPU without
trained weights, the files are ``--distinct`` different images repeated (the pipeline
decodes and stores every file but embeds each distinct content once); the daemon does not
care what the pixels are. Then it starts a real ``searchapp watch`` process on it and

1. samples the idle daemon's CPU% and RSS (psutil) for ``--idle-s`` seconds;
2. writes ``--samples`` new photos (distinct content, so each is embedded) one at a time
   and measures, from the moment the file is closed, until its row is committed in the
   library (searchable: readers pick up new rows on their next query) and until the
   saved FAISS file includes it. Prints median and max of both.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_watch.py            # 10,000 files
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_watch.py --files 2000 --idle-s 10

Uses ``--weights random`` unless ``--weights`` is given (timings do not depend on them).
The library is cached in ``$SEARCHAPP_BENCH_DIR/watch-<files>`` (default /tmp/searchapp-bench).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

BENCH_DIR = Path(os.environ.get("SEARCHAPP_BENCH_DIR", "/tmp/searchapp-bench"))
PER_FOLDER = 500
SIZE = 96


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="example: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_watch.py",
    )
    ap.add_argument("--files", type=int, default=10_000, help="library size (default 10000)")
    ap.add_argument("--distinct", type=int, default=200, help="distinct images among them")
    ap.add_argument("--samples", type=int, default=20, help="files for the delay (default 20)")
    ap.add_argument("--idle-s", type=float, default=30.0, help="idle sampling time (default 30)")
    ap.add_argument("--weights", default="random", help="model weights (default random)")
    return ap.parse_args()


def jpeg_bytes(rng: np.random.Generator) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def build_library(base: Path, files: int, distinct: int) -> Path:
    """``files`` JPEGs in folders of PER_FOLDER; reused when already complete."""
    root = base / "photos"
    marker = base / "photos.json"
    if marker.exists() and json.loads(marker.read_text()) == [files, distinct]:
        return root
    rng = np.random.default_rng(0)
    images = [jpeg_bytes(rng) for _ in range(distinct)]
    for i in range(files):
        folder = root / f"album-{i // PER_FOLDER:03d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{i:05d}.jpg").write_bytes(images[i % distinct])
    marker.write_text(json.dumps([files, distinct]))
    return root


def cli(data: Path, weights: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "searchapp.cli",
        "--data-dir",
        str(data),
        "--weights",
        weights,
        *args,
    ]


def env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")


def index_library(data: Path, root: Path, weights: str) -> None:
    started = time.monotonic()
    out = subprocess.run(
        cli(data, weights, "index", str(root)), env=env(), capture_output=True, text=True
    )
    if out.returncode != 0:
        sys.exit(f"indexing failed: {out.stderr}")
    print(f"indexed: {out.stdout.strip()} ({time.monotonic() - started:.0f} s wall)")


def start_daemon(data: Path, weights: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cli(data, weights, "watch"), env=env(), stdout=f, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 600
    while "start-up reconcile" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the daemon did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return proc


def sample_idle(pid: int, seconds: float) -> dict:
    proc = psutil.Process(pid)
    time.sleep(3.0)  # let the start-up reconcile's leftovers settle
    proc.cpu_percent(None)
    rss = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(1.0)
        rss.append(proc.memory_info().rss)
    return {
        "cpu_percent": proc.cpu_percent(None),
        "rss_mb_median": statistics.median(rss) / 2**20,
        "rss_mb_max": max(rss) / 2**20,
        "threads": proc.num_threads(),
    }


def committed(db: Path, path: str) -> int | None:
    """The library generation once ``path`` is indexed, else None."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = con.execute(
            "SELECT 1 FROM photos WHERE path = ? AND status = 'indexed'", (path,)
        ).fetchone()
        if row is None:
            return None
        return int(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
    finally:
        con.close()


def file_generation(index_path: Path) -> int:
    try:
        with open(index_path, "rb") as f:
            head = f.read(4096)
        (hlen,) = struct.unpack_from("<I", head, 8)
        return int(json.loads(head[12 : 12 + hlen])["generation"])
    except (OSError, ValueError, KeyError, struct.error):
        return -1


def measure_delays(data: Path, root: Path, samples: int) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(int(time.time()))
    folder = root / f"new-{int(time.time())}"
    folder.mkdir()
    to_row, to_file = [], []
    for i in range(samples):
        path = folder / f"new_{i:02d}.jpg"
        data_bytes = jpeg_bytes(rng)
        with open(path, "wb") as f:
            f.write(data_bytes)
        closed = time.monotonic()
        deadline = closed + 120
        while (gen := committed(data / "library.sqlite3", str(path))) is None:
            if time.monotonic() > deadline:
                sys.exit(f"{path} was not indexed in 120 s")
            time.sleep(0.01)
        to_row.append(time.monotonic() - closed)
        while file_generation(data / "vectors.faiss") < gen:
            time.sleep(0.01)
        to_file.append(time.monotonic() - closed)
        time.sleep(0.5)
    return to_row, to_file


def main() -> None:
    args = parse_args()
    base = BENCH_DIR / f"watch-{args.files}"
    base.mkdir(parents=True, exist_ok=True)
    data = base / "data"
    t0 = time.monotonic()
    root = build_library(base, args.files, args.distinct)
    print(f"library: {args.files} files under {root} ({time.monotonic() - t0:.0f} s)")
    index_library(data, root, args.weights)
    log = base / "watch.log"
    proc = start_daemon(data, args.weights, log)
    try:
        idle = sample_idle(proc.pid, args.idle_s)
        print(
            f"idle daemon over {args.idle_s:.0f} s on {args.files} files: "
            f"CPU {idle['cpu_percent']:.2f}% of one core, RSS median {idle['rss_mb_median']:.0f} "
            f"MiB (max {idle['rss_mb_max']:.0f} MiB), {idle['threads']} threads"
        )
        to_row, to_file = measure_delays(data, root, args.samples)
        print(
            f"close -> searchable (row committed) over {args.samples} files: "
            f"median {statistics.median(to_row):.2f} s, max {max(to_row):.2f} s"
        )
        print(
            f"close -> in the saved FAISS file: "
            f"median {statistics.median(to_file):.2f} s, max {max(to_file):.2f} s"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        print(f"daemon stopped with exit code {rc}; its log: {log}")


if __name__ == "__main__":
    main()
