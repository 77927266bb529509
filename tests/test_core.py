"""Foundation: indexing, incremental runs, restart and rebuild, bad files, fidelity."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from searchapp.store import Store
from tests.conftest import DATA
from tests.helpers import index_once, mounted_tmpfs, service


def test_resized_copy_found_at_rank_1(settings, embedder, photos, tmp_path):
    index_once(settings, embedder, photos)
    svc = service(settings, embedder)
    for name in ("coffee.png", "cat_chelsea.png", "rocket.jpg", "astronaut.jpg"):
        query = tmp_path / f"q-{name}.jpg"
        img = Image.open(photos / name).convert("RGB")
        img.resize((img.width * 2 // 3, img.height * 2 // 3)).save(query, quality=80)
        results = svc.search_image(query, k=3)
        assert Path(results[0].path).name == name, results


def test_incremental_runs_count_model_calls(settings, embedder, photos):
    first = index_once(settings, embedder, photos)
    assert first.added == 16 and first.embedded == 16 and first.failed == 0

    second = index_once(settings, embedder)
    assert (second.unchanged, second.embedded, second.added) == (16, 0, 0)

    # modified: new content -> re-embedded, same photo id kept
    store = Store(settings.db_path)
    before = store.find_photo_by_path(photos / "coffee.png").id
    Image.open(photos / "coffee.png").rotate(90).save(photos / "coffee.png")
    third = index_once(settings, embedder)
    assert (third.updated, third.embedded) == (1, 1)
    assert store.find_photo_by_path(photos / "coffee.png").id == before

    # renamed and moved into a new folder: vector reused, id kept, no model call
    (photos / "sub").mkdir()
    rid = store.find_photo_by_path(photos / "rocket.jpg").id
    os.rename(photos / "rocket.jpg", photos / "sub" / "rocket renamed.jpg")
    fourth = index_once(settings, embedder)
    assert (fourth.moved, fourth.embedded, fourth.removed) == (1, 0, 0)
    assert store.find_photo_by_path(photos / "sub" / "rocket renamed.jpg").id == rid

    # duplicate: a second path with the same bytes reuses the vector
    shutil.copy(photos / "grass.png", photos / "grass copy.png")
    fifth = index_once(settings, embedder)
    assert (fifth.added, fifth.embedded) == (1, 0)

    # deleted: leaves the index
    (photos / "coins.png").unlink()
    sixth = index_once(settings, embedder)
    assert (sixth.removed, sixth.embedded) == (1, 0)
    assert store.find_photo_by_path(photos / "coins.png") is None
    assert store.counts()["photos"] == 16

    svc = service(settings, embedder)
    assert sorted(svc.index.ids().tolist()) == sorted(
        p.id for p in store.get_photos(list(range(1, 100))).values() if p.status == "indexed"
    )


def test_unchanged_library_never_loads_the_model(settings, embedder, photos):
    from searchapp.indexer.commands import Index
    from searchapp.indexer.writer import submit
    from searchapp.model import LazyEmbedder

    index_once(settings, embedder, photos)
    lazy = LazyEmbedder(settings)
    stats = submit(settings, Index(), embedder=lazy).stats
    assert stats.unchanged == 16 and stats.embedded == 0
    assert not lazy.load_started  # stat-only: no weights read, no model in memory
    shutil.copy(photos / "rocket.jpg", photos / "sub rocket.jpg")
    Image.open(photos / "coffee.png").rotate(90, expand=True).save(photos / "turned.png")
    stats = submit(settings, Index(), embedder=lazy).stats
    assert (stats.added, stats.embedded) == (2, 1)  # the copy reuses its stored vector
    assert lazy.load_started
    assert lazy.dim == embedder.dim and lazy.model_id == embedder.model_id


def test_unmounted_drive_keeps_its_photos(settings, embedder, tmp_path):
    drive = tmp_path / "drive"
    drive.mkdir()
    with mounted_tmpfs(drive, "64m"):
        shutil.copytree(DATA, drive, ignore=shutil.ignore_patterns("*.md"), dirs_exist_ok=True)
        assert index_once(settings, embedder, drive).added == 16
    # unplugged: the mount point is an empty folder again, on the parent's device
    stats = index_once(settings, embedder)
    assert (stats.removed, stats.offline_roots) == (0, 1)
    store = Store(settings.db_path)
    assert store.counts()["photos"] == 16 and not store.list_roots()[0].online
    store.close()


def test_empty_mount_point_keeps_photos_but_an_emptied_folder_loses_them(
    settings, embedder, photos
):
    """An unmounted drive leaves an empty folder on another device; that is not a deletion.

    Tests cannot mount a drive, so the device change is made by rewriting the recorded
    device; the emptiness, the runs and the store are real.
    """
    index_once(settings, embedder, photos)
    store = Store(settings.db_path)
    root = store.list_roots()[0]
    device = os.stat(photos).st_dev
    assert store.root_device(root.id) == device  # recorded by the scan
    drive = photos.parent / "drive"
    photos.rename(drive)
    photos.mkdir()  # the mount point left behind
    store.set_root_device(root.id, device + 1)  # ... with the drive's device recorded
    stats = index_once(settings, embedder)
    assert (stats.removed, stats.offline_roots) == (0, 1)
    assert store.counts()["photos"] == 16 and not store.list_roots()[0].online

    photos.rmdir()
    drive.rename(photos)  # the drive is back: scanned again, its device recorded
    stats = index_once(settings, embedder)
    assert (stats.unchanged, stats.removed, stats.offline_roots) == (16, 0, 0)
    assert store.list_roots()[0].online and store.root_device(root.id) == device

    for f in photos.iterdir():  # the user empties the folder on the same device
        f.unlink()
    stats = index_once(settings, embedder)
    assert stats.removed == 16 and store.counts()["photos"] == 0
    store.close()


def test_restart_and_rebuild_give_same_results(settings, embedder, photos):
    index_once(settings, embedder, photos)
    query = photos / "cat_chelsea.png"
    first = [(r.photo_id, r.score) for r in service(settings, embedder).search_image(query, k=5)]

    again = index_once(settings, embedder)
    assert again.embedded == 0
    assert [
        (r.photo_id, r.score) for r in service(settings, embedder).search_image(query, k=5)
    ] == first

    settings.index_path.unlink()
    calls = embedder.images_encoded
    rebuilt = [(r.photo_id, r.score) for r in service(settings, embedder).search_image(query, k=5)]
    assert embedder.images_encoded == calls + 1  # only the query image
    assert [p for p, _ in rebuilt] == [p for p, _ in first]
    assert np.allclose([s for _, s in rebuilt], [s for _, s in first], atol=1e-5)


def test_bad_files_fail_with_reasons_and_good_ones_index(settings, embedder, photos):
    bad = photos / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    data = (photos / "rocket.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (bad / "random.jpg").write_bytes(os.urandom(5000))
    (bad / "text.jpg").write_text("hello, I am not a photo\n")
    bomb = Image.new("1", (20000, 20000))  # 400 MP, a few KB as PNG
    bomb.save(bad / "bomb.png")
    stats = index_once(settings, embedder, photos)
    assert stats.added == 16 and stats.failed == 5
    reasons = {Path(f.path).name: f.failure_reason for f in Store(settings.db_path).failures()}
    assert reasons["empty.jpg"] == "empty file"
    assert reasons["truncated.jpg"] == "truncated or damaged image data"  # no "(N bytes ...)"
    assert "not an image" in reasons["random.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    # unchanged failures are not retried on the next run
    assert index_once(settings, embedder).failed == 0


def test_exif_orientation_applied(settings, embedder, tmp_path):
    folder = tmp_path / "rot"
    folder.mkdir()
    img = Image.new("RGB", (400, 200), "red")
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0110] = "TestCam"
    img.save(folder / "rotated.jpg", exif=exif.tobytes())
    index_once(settings, embedder, folder)
    rec = Store(settings.db_path).find_photo_by_path(folder / "rotated.jpg")
    assert (rec.width, rec.height) == (200, 400)
