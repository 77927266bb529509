"""Concurrent readers: searches in one process while another indexes thousands of photos.

The writer is a real ``searchapp index`` process that saves its FAISS file every half
second (instead of every minute) so readers meet many file swaps. The reader is a real
process running ``Library`` searches in a loop and loading the FAISS file directly:
no search may fail or return a photo that is not committed, a loaded file must be whole
(its header's count and its body agree) and hold only committed photos, and the number of
results for "everything" may only grow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import PIXELS_ENV, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

N_PHOTOS = 1000
FINAL_WAIT_S = 10.0
N_CONTENTS = 500  # distinct pictures: the rest are copies (rows written, vector reused)
MIN_SEARCHES = 250
SEARCHES_PER_BATCH = 8  # x 32 model batches of new content: MIN_SEARCHES while indexing
REPO = Path(__file__).resolve().parent.parent

# The pixel test encoder takes no time, so the writer paces itself by the reader: before
# each model batch but the first it waits for SEARCHES_PER_BATCH more searches (the reader
# appends a byte per search to its progress file), as a real model's second per batch would.
WRITER = """
import os, sys, time
import searchapp.indexer.pipeline as pipeline
from searchapp.model.pixels import PixelEncoder
pipeline.SAVE_EVERY_S = 0.5  # swap the FAISS file often while the reader reads it
progress, step = sys.argv.pop(1), int(sys.argv.pop(1))
encode, wanted = PixelEncoder.encode_prepared, [0]
def paced(self, pixels):
    deadline = time.monotonic() + 30  # a stalled reader fails the test, not the writer
    while os.path.getsize(progress) < wanted[0] and time.monotonic() < deadline:
        time.sleep(0.005)
    wanted[0] += step  # the first batch goes at once: nothing to search before it
    return encode(self, pixels)
PixelEncoder.encode_prepared = paced
from searchapp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def make_photos(root: Path, n: int, contents: int) -> None:
    rng = np.random.default_rng(11)
    pictures = []
    for _ in range(contents):
        arr = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        pictures.append(Image.fromarray(arr).resize((32, 32), Image.NEAREST))
    for i in range(n):
        folder = root / f"f{i // 250:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pictures[i % contents].save(folder / f"{i:05d}.jpg")


def reader_main(data_dir: str, done_flag: str, out: str, min_searches: int) -> None:
    """Search in a loop until the writer is done and enough searches ran; write a report."""
    from searchapp.config import load_settings
    from searchapp.errors import SearchAppError
    from searchapp.library import Library, QueryPart
    from searchapp.store import Store
    from searchapp.vectors import IndexFileError, VectorIndex

    settings = load_settings(data_dir=data_dir, weights="random", precision="fp32")
    while not settings.db_path.exists():
        time.sleep(0.05)
    service = Library(settings)
    store: Store = service.store
    progress = open(out + ".progress", "ab", buffering=0)  # noqa: SIM115 - open till the end
    report = {"searches": 0, "during": 0, "errors": [], "counts": [], "file_loads": 0}
    report["file_counts"] = []
    probe = None
    done_at = None
    while True:
        writing = not os.path.exists(done_flag)
        if not writing and report["searches"] >= min_searches:
            # readers follow the writer within a reload check (1 s): read on until the
            # final state shows, for at most FINAL_WAIT_S (the test then asserts it did)
            done_at = done_at or time.monotonic()
            final = [N_PHOTOS]
            caught_up = report["counts"][-1:] == final and report["file_counts"][-1:] == final
            if caught_up or time.monotonic() - done_at > FINAL_WAIT_S:
                break
        try:
            if probe is None:
                ids = store.filter_ids(_everything())
                probe = int(ids.min()) if len(ids) else None
            if probe is not None:
                text = report["searches"] % 10 == 0
                part = QueryPart("text", "a photo") if text else QueryPart("photo", probe)
                results = service.search([part], k=N_PHOTOS * 2)
                ids = [r.photo_id for r in results]
                index_ids = set(service.index.ids().tolist())  # the same index, or a newer one
                committed = set(store.filter_ids(_everything()).tolist())
                if len(set(ids)) != len(ids) or not set(ids) <= index_ids <= committed:
                    report["errors"].append(
                        f"{len(ids)} results, index {len(index_ids)}, committed {len(committed)}"
                    )
                report["counts"].append(len(ids))
                report["searches"] += 1
                progress.write(b".")  # the writer paces itself by these
                report["during"] += writing
            if report["searches"] % 4 == 0:  # and read the FAISS file as it is swapped
                try:
                    loaded = VectorIndex.load(settings.index_path, service.embedder.model_id)
                    report["file_counts"].append(loaded.ntotal)
                    if not set(loaded.ids().tolist()) <= set(store.filter_ids(_everything())):
                        report["errors"].append("the index file holds an uncommitted photo")
                    report["file_loads"] += 1
                except IndexFileError as err:
                    if str(err) != "missing":
                        report["errors"].append(f"index file: {err}")
        except SearchAppError as err:
            report["errors"].append(f"search failed: {err}")
        time.sleep(0.03)
    report["journal_mode"] = store.engine.connect().exec_driver_sql("PRAGMA journal_mode").scalar()
    Path(out).write_text(json.dumps(report))


def _everything():  # noqa: ANN202
    from searchapp.store import PhotoFilter

    return PhotoFilter(min_width=1)


def test_searches_during_indexing_never_fail_and_only_grow(tmp_path):
    root, data = tmp_path / "photos", tmp_path / "lib"
    make_photos(root, N_PHOTOS, N_CONTENTS)
    data.mkdir()
    done_flag, out = tmp_path / "writer.done", tmp_path / "reader.json"
    env = dict(os.environ, **PIXELS_ENV)
    env["PYTHONPATH"] = str(REPO)
    progress = f"{out}.progress"  # exists once the reader is ready: the writer starts
    writer_cmd = [sys.executable, "-c", WRITER, progress, str(SEARCHES_PER_BATCH)]
    writer_cmd += ["--data-dir", str(data), "--batch-size", "16"]
    # the store exists before the reader opens it; the writer adds the root and indexes
    subprocess.run(
        [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data), "roots", "add", str(root)],
        env=env,
        check=True,
        capture_output=True,
    )
    reader_code = (
        "import sys; from tests.test_concurrency import reader_main; "
        "reader_main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", reader_code, str(data), str(done_flag), str(out), str(MIN_SEARCHES)],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: Path(progress).exists() or reader.poll() is not None, "reader", 120)
        assert reader.poll() is None, reader.communicate()[1].decode()[-3000:]
        writer = subprocess.run(
            [*writer_cmd, "index"], env=env, capture_output=True, text=True, timeout=480
        )
        done_flag.write_text("done")
        _, reader_err = reader.communicate(timeout=240)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert writer.returncode == 0, writer.stderr
    assert f"added {N_PHOTOS}" in writer.stdout
    assert reader.returncode == 0, reader_err.decode()[-3000:]

    report = json.loads(out.read_text())
    counts, file_counts = report["counts"], report["file_counts"]
    assert report["errors"] == []
    assert report["searches"] >= MIN_SEARCHES and report["during"] >= MIN_SEARCHES
    assert all(a <= b for a, b in zip(counts, counts[1:], strict=False))  # only ever grows
    assert all(a <= b for a, b in zip(file_counts, file_counts[1:], strict=False))
    assert counts[-1] == N_PHOTOS and file_counts[-1] == N_PHOTOS
    assert len(set(counts)) > 5 and len(set(file_counts)) > 5  # it really saw the index grow
    assert report["journal_mode"] == "wal"
    print(
        f"\nconcurrency: {report['searches']} searches ({report['during']} while indexing), "
        f"{len(set(counts))} distinct result counts, {report['file_loads']} FAISS file loads "
        f"({len(set(file_counts))} distinct sizes), writer: {writer.stdout.strip()}"
    )
