"""Indexing on Ray vs locally at equal cores, and the driver's own ceiling per photo.

Side by side, on the same synthetic 12 MP JPEGs and random-weight MobileCLIP-S2 (speed
does not depend on weight values), each into a fresh data dir:

- local: ``searchapp index`` (all cores of this machine)
- ray local: ``searchapp index --ray local`` (one worker, all cores)
- two nodes: ``searchapp index --ray HEAD`` on a head (127.0.0.2) and a second node
  (127.0.0.3), one CPU each: the same total cores as local on a 2-core machine

``run s`` is the run itself (what the CLI prints; locally it includes the model load,
which overlaps the first decodes; on Ray the workers load before the run starts); ``wall
s`` is the whole command (for Ray also the cluster start or connection): the comparison.
Then the driver's share of one photo is measured in this process: scan, read+hash, bytes
shipped each way, SQLite commit, FAISS add; docs/SCALING.md works out from these how many
workers a driver feeds.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ray.py --count 48
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from synth_library import DEFAULT_DIR, ensure_library  # noqa: E402

from searchapp.decoder import hash_bytes, read_file  # noqa: E402
from searchapp.scanner import scan_root  # noqa: E402
from searchapp.store import BatchWrite, PhotoWrite, Store  # noqa: E402
from searchapp.vectors import VectorIndex  # noqa: E402
from tests.ray_cluster import Cluster  # noqa: E402

DIM, VECTOR_BYTES = 512, 512 * 4


def index_run(name: str, folder: Path, count: int, env: dict, extra: list[str], work: Path) -> dict:
    data = Path(tempfile.mkdtemp(prefix=f"bench-ray-{name}-", dir=work))
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data), "--weights", "random"]
    started = time.monotonic()
    proc = subprocess.run([*cmd, "index", str(folder), *extra], env=env, capture_output=True)
    wall = time.monotonic() - started
    out = proc.stdout.decode()
    m = re.search(r"added (\d+).*\(([\d.]+) s\)", out)
    if proc.returncode or not m or int(m.group(1)) != count:
        raise SystemExit(f"{name}: {out!r} {proc.stderr.decode()[-2000:]}")
    run_s = float(m.group(2))
    return {"name": name, "data": data, "run_s": run_s, "wall_s": wall, "rate": count / run_s}


def driver_ceiling(folder: Path, data: Path, work: Path) -> dict:
    """The driver's work per photo, each part timed alone."""
    t = time.perf_counter()
    files = list(scan_root(str(folder)))
    scan_s = time.perf_counter() - t
    t, total = time.perf_counter(), 0
    for f in files:
        total += len(data_bytes := read_file(f.path))
        hash_bytes(data_bytes)
    hash_s = time.perf_counter() - t
    thumbs = [p.stat().st_size for p in data.glob("thumbs/*/*.jpg")]
    commit_rows, commit_s, add_s = 4096, 0.0, 0.0
    store = Store(work / "ceiling.sqlite3")
    root_id = store.add_root(folder).id
    index = VectorIndex(DIM, "bench")
    rng = np.random.default_rng(0)
    for i in range(0, commit_rows, 16):  # batches of 16, one transaction each, as a run
        vecs = rng.standard_normal((16, DIM), dtype=np.float32)
        batch = BatchWrite(model_id="bench")
        for j in range(16):
            h = f"{i + j:032x}"
            batch.indexed.append(PhotoWrite(root_id, f"/x/{h}.jpg", 1, 1, h, 40, 30, "JPEG"))
            batch.vectors[h] = vecs[j]
        t = time.perf_counter()
        result = store.write_batch(batch)
        commit_s += time.perf_counter() - t
        t = time.perf_counter()
        ids = np.fromiter(result.upserted, dtype=np.int64, count=len(result.upserted))
        index.add(ids, vecs)
        add_s += time.perf_counter() - t
    store.close()
    return {
        "photos": len(files),
        "scan_us": scan_s / len(files) * 1e6,
        "hash_mb_s": total / hash_s / 1e6,
        "file_kb": total / len(files) / 1e3,
        "back_kb": (np.mean(thumbs) + VECTOR_BYTES) / 1e3,
        "commit_rows_s": commit_rows / commit_s,
        "faiss_add_s": commit_rows / add_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=48, help="12 MP photos (default 48)")
    ap.add_argument("--precision", default="auto", help="for every run (default auto)")
    args = ap.parse_args()
    folder = DEFAULT_DIR.parent / f"ray-{args.count}"
    if not folder.exists():
        folder.mkdir(parents=True)
        for p in ensure_library(args.count, quiet=True)[: args.count]:
            (folder / p.name).symlink_to(p)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    cluster = Cluster()
    env = dict(cluster.env, HF_HUB_OFFLINE="1", SEARCHAPP_PRECISION=args.precision)
    try:
        runs = [index_run("local", folder, args.count, env, [], work)]
        runs.append(index_run("ray local", folder, args.count, env, ["--ray", "local"], work))
        cluster.start()
        two = ["--ray", cluster.address]
        runs.append(index_run("two nodes, 1 CPU each", folder, args.count, env, two, work))
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp, ignore_errors=True)
    print(f"{args.count} photos, MobileCLIP-S2 (random weights), precision {args.precision}")
    # local loads its model inside the run, Ray before it: only wall times compare
    print(f"{'run':<24}{'run s':>8}{'img/s':>8}{'wall s':>8}  wall vs local")
    for r in runs:
        ratio = r["wall_s"] / runs[0]["wall_s"]
        line = f"{r['name']:<24}{r['run_s']:>8.1f}{r['rate']:>8.2f}{r['wall_s']:>8.1f}"
        print(f"{line}  {ratio:.2f}x")
    c = driver_ceiling(folder, runs[0]["data"], work)
    print(
        f"driver per photo: scan {c['scan_us']:.0f} us, read+hash {c['hash_mb_s']:.0f} MB/s "
        f"({c['file_kb']:.0f} KB a photo shipped out), {c['back_kb']:.1f} KB back "
        f"(thumbnail + vector), SQLite commit {c['commit_rows_s']:.0f} rows/s (batches of "
        f"16), FAISS add {c['faiss_add_s']:.0f} vectors/s"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
