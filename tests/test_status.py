"""The one status report (``searchapp status``, ``--json``, the page) on real libraries."""

from __future__ import annotations

import json
import shutil

from searchapp.library import Library
from searchapp.store import BatchWrite, FailureWrite, Store
from tests.helpers import index_once, run_cli

REASONS = {
    "not an image, or an image format searchapp cannot read": 30_000,
    "damaged image": 15_000,  # each with its own detail, as the decoder writes them
    "file too large": 5_000,
}


def _status(settings, *flags: str) -> str:  # noqa: ANN001
    # the encoder the library was built with
    done = run_cli(settings.data_dir, "status", *flags, env={"SEARCHAPP_ENCODER": settings.encoder})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_status_never_says_0_vectors_while_photos_are_indexed(settings, embedder, photos) -> None:  # noqa: ANN001
    index_once(settings, embedder, photos)
    assert "index:   16 vectors (exact: faiss IndexIDMap2(IndexFlatIP))" in _status(settings)
    fresh = settings.index_path.read_bytes()

    settings.index_path.unlink()  # a writer died before its first save, or a user tidied up
    text = _status(settings)
    assert "0 vectors" not in text
    assert "index:   file missing; searches rebuild it from the stored vectors" in text
    info = json.loads(_status(settings, "--json"))
    assert info["photos"] == 16
    assert info["index"]["vectors"] == 0 and info["index"]["problem"] == "missing"

    library = Library(settings, embedder)  # a search rebuilds it in memory, writes nothing
    try:
        assert len(library.search_image(photos / "coffee.png", k=16)) == 16
        assert library.status(pending=False).index.problem == "missing"
    finally:
        library.close()

    shutil.copy(photos / "rocket.jpg", photos / "rocket again.jpg")
    index_once(settings, embedder)  # saves a current file: 17 vectors
    settings.index_path.write_bytes(fresh)  # and an older one comes back: stale
    text = _status(settings)
    assert "index:   file stale (16 vectors from generation" in text and "rebuild" in text
    index_once(settings, embedder)  # a run starts by rebuilding a stale file and saving it
    assert "index:   17 vectors (exact" in _status(settings)


def test_a_stale_approximate_index_says_it_is_caught_up_not_rebuilt(settings) -> None:  # noqa: ANN001
    """A stale exact file is rebuilt on the next search; a stale approximate one is caught
    up (vectors.open_index): its note must not promise a rebuild."""
    import numpy as np

    from searchapp.status import CATCH_UP_NOTE, REBUILD_NOTE, describe_index_file
    from searchapp.vectors import KIND_IVF, VectorIndex

    vecs = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1, 301)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    approximate = VectorIndex.build(ids, vecs, "m", 8, generation=5, threshold=100)
    assert approximate.kind == KIND_IVF
    approximate.save(settings.index_path, 5)
    assert describe_index_file(settings, "m", 5, 300).note is None
    stale = describe_index_file(settings, "m", 7, 300)
    assert stale.catches_up and stale.problem.startswith("stale (300 vectors")
    assert stale.note.endswith(CATCH_UP_NOTE) and REBUILD_NOTE not in stale.note
    other = describe_index_file(settings, "another model", 7, 300)  # rebuilt, whatever kind
    assert other.problem.startswith("built for another model") and not other.catches_up
    VectorIndex.build(ids[:10], vecs[:10], "m", 8, generation=5).save(settings.index_path, 5)
    exact = describe_index_file(settings, "m", 7, 10)
    assert not exact.catches_up and exact.note.endswith(REBUILD_NOTE)


def _write_failures(settings, root) -> None:  # noqa: ANN001
    store = Store(settings.db_path)
    try:
        root_id = store.add_root(root).id
        failed, i = [], 0
        for reason, count in REASONS.items():
            for _ in range(count):
                detail = (
                    f"{reason} (bad chunk at byte {i})" if reason == "damaged image" else reason
                )
                failed.append(FailureWrite(root_id, f"{root}/f{i:05d}.jpg", 10, 1, detail))
                i += 1
        for start in range(0, len(failed), 10_000):
            store.write_batch(BatchWrite("m", failed=failed[start : start + 10_000]))
    finally:
        store.close()


def test_status_summarizes_50000_failures_by_reason(settings, tmp_path) -> None:  # noqa: ANN001
    root = tmp_path / "photos"
    root.mkdir()
    _write_failures(settings, root)

    lines = _status(settings).splitlines()
    assert len(lines) < 30, lines
    assert next(x for x in lines if x.startswith("photos:")).startswith(
        "photos:  0 indexed, 50000 failed"
    )
    command = f"searchapp --data-dir {settings.data_dir}"  # commands name this library
    at = lines.index(f"failed:  50000 files; by reason (every file: {command} status --json)")
    assert f"watcher: not running (start it with: {command} watch)" in lines
    unreadable = "not an image, or an image format searchapp cannot read"
    assert lines[at + 1].split(None, 1) == ["30000", unreadable]
    assert (
        lines[at + 2]
        == f"           {root}/f00000.jpg: not an image, or an image format searchapp cannot read"
    )
    assert lines[at + 4].endswith(f"f00002.jpg: {unreadable}")
    assert lines[at + 5] == "           ... and 29997 more"
    assert lines[at + 6].split(None, 1) == ["15000", "damaged image"]
    assert lines[at + 7].endswith("f30000.jpg: damaged image (bad chunk at byte 30000)")
    assert lines[at + 11].split(None, 1) == ["5000", "file too large"]
    assert lines[-1] == "           ... and 4997 more"

    info = json.loads(_status(settings, "--json"))
    assert info["failed"] == 50_000 and len(info["failures"]) == 50_000
    assert info["failures"][30_000] == {
        "path": f"{root}/f30000.jpg",
        "reason": "damaged image (bad chunk at byte 30000)",
    }


def test_few_failures_are_listed_one_a_line(settings, embedder, photos) -> None:  # noqa: ANN001
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "empty.jpg").write_bytes(b"")
    index_once(settings, embedder, photos)
    failed = [line for line in _status(settings).splitlines() if line.startswith("failed")]
    assert failed == [
        f"failed:  {photos / 'broken.jpg'}: not an image, or an image format searchapp cannot read",
        f"failed:  {photos / 'empty.jpg'}: empty file",
    ]


def test_status_of_a_library_not_created_yet_writes_nothing(settings) -> None:  # noqa: ANN001
    info = json.loads(_status(settings, "--json"))
    assert (info["photos"], info["failed"], info["roots"]) == (0, 0, [])
    assert info["index"] == {
        "type": "none yet",
        "vectors": 0,
        "path": str(settings.index_path),
        "bytes": 0,
        "problem": None,
    }
    assert info["pending"] == {"to_index": 0, "to_remove": 0, "to_embed": 0}
    assert "index:   0 vectors (none yet)" in _status(settings)
    assert not settings.db_path.exists()


def test_a_folder_gone_since_the_last_run_shows_offline_at_once(settings, embedder, photos) -> None:  # noqa: ANN001
    """Status said what the last run saw: a folder moved away stayed listed as online, and
    one back stayed "(offline)", until the next index run (second user trial)."""
    index_once(settings, embedder, photos)
    away = photos.parent / "away"
    with Library(settings, embedder) as library:
        photos.rename(away)
        assert [r.online for r in library.status().roots] == [False]
        assert "(offline)" in _status(settings)
        away.rename(photos)
        assert [r.online for r in library.status().roots] == [True]
