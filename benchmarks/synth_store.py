"""A cached synthetic library of N indexed photos for the query and re-scan benchmarks.

N tiny files (``.jpg`` names, a few bytes each: nothing here decodes them) in folders of
1,000, and a store that holds every one of them as indexed, with matching size and mtime,
a content hash and a clustered random 512-d vector written through ``Store.write_batch``,
plus the saved FAISS file. Reused across runs when its marker file says it is complete.

    .venv/bin/python benchmarks/synth_store.py --count 100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from searchapp.config import Settings, load_settings
from searchapp.model import model_id_for
from searchapp.store import BatchWrite, PhotoWrite, Store
from searchapp.vectors import open_index

BENCH_DIR = Path(os.environ.get("SEARCHAPP_BENCH_DIR", "/tmp/searchapp-bench"))
DIM = 512
PER_FOLDER = 1_000
WRITE_BATCH = 5_000


def synth_settings(count: int, base: Path = BENCH_DIR) -> Settings:
    return load_settings(data_dir=base / f"store-{count}" / "data", weights="random")


def ensure_store(count: int, base: Path = BENCH_DIR) -> tuple[Settings, Path]:
    """(settings, photo root) of a complete synthetic library of ``count`` photos."""
    settings = synth_settings(count, base)
    root = base / f"store-{count}" / "photos"
    marker = settings.data_dir / "complete.json"
    if marker.exists():
        return settings, root
    started = time.monotonic()
    files = write_files(root, count)
    print(f"  {count:,} files written ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    fill_store(settings, root, files)
    marker.write_text(json.dumps({"count": count}))
    print(f"  library ready ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return settings, root


def write_files(root: Path, count: int) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of ``count`` small files in folders of PER_FOLDER."""
    out = []
    for i in range(count):
        folder = root / f"{2020 + i // 50_000}" / f"album-{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IMG_{i:06d}.jpg"
        path.write_bytes(b"synthetic %d" % i)
        st = path.stat()
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return out


def fill_store(settings: Settings, root: Path, files: list[tuple[str, int, int]]) -> None:
    model_id = model_id_for(settings)
    store = Store(settings.db_path)
    root_id = store.add_root(root).id
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((500, DIM), dtype=np.float32)
    for i in range(0, len(files), WRITE_BATCH):
        chunk = files[i : i + WRITE_BATCH]
        x = centres[rng.integers(0, len(centres), len(chunk))]
        x += 0.9 * rng.standard_normal(x.shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        batch = BatchWrite(model_id=model_id)
        for j, ((path, size, mtime_ns), vec) in enumerate(zip(chunk, x, strict=True)):
            h = f"{i + j:032x}"
            taken = 1.6e9 + (i + j) * 600.0
            batch.indexed.append(
                PhotoWrite(root_id, path, size, mtime_ns, h, 4000, 3000, "JPEG", taken, "Synth")
            )
            batch.vectors[h] = vec
        store.write_batch(batch)
    index = open_index(settings.index_path, store, model_id, DIM)
    assert index.ntotal == len(files), (index.ntotal, len(files))
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    args = ap.parse_args()
    settings, root = ensure_store(args.count)
    print(f"{args.count:,} indexed photos under {root}; library {settings.data_dir}")


if __name__ == "__main__":
    main()
