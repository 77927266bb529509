"""Browsing reads behind the photo page: timeline, copies, folders, names, recent searches."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.browse import NO_DATE, read_gps, relative_path
from searchapp.library import PhotoFilter
from searchapp.query import name_fragment
from tests.helpers import index_once, service


def _photo(path: Path, seed: int, taken: str | None = None, gps: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = Image.Exif()
    if taken:
        exif[306] = taken
    if gps:
        exif.get_ifd(0x8825).update({1: "S", 2: (33.0, 51.0, 36.0), 3: "E", 4: (151.0, 12.0, 0.0)})
    im.save(path, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def shelf(tmp_path_factory, pixel_embedder):  # noqa: ANN001, ANN201
    """Six files, five contents: a copy in another folder, dated and undated photos."""
    from searchapp.config import ENCODER_PIXELS, load_settings

    base = tmp_path_factory.mktemp("browse")
    root = base / "Pictures"
    _photo(root / "2023" / "Juli" / "IMG_2041.jpg", 1, "2023:07:14 10:00:00", gps=True)
    _photo(root / "2023" / "Juli" / "IMG_2042.jpg", 2, "2023:07:15 10:00:00")
    _photo(root / "2024" / "beach.jpg", 3, "2024:03:02 09:00:00")
    _photo(root / "scans" / "old_100%.jpg", 4)
    _photo(root / "loose.jpg", 5, "2022:01:01 08:00:00")
    shutil.copy(root / "2024" / "beach.jpg", root / "scans" / "beach copy.jpg")
    settings = load_settings(data_dir=base / "lib", encoder=ENCODER_PIXELS, weights="random")
    index_once(settings, pixel_embedder, root)
    with service(settings, pixel_embedder) as library:
        yield library, root


def test_timeline_is_newest_first_copies_folded_undated_last(shelf) -> None:  # noqa: ANN001
    library, root = shelf
    page = library.timeline()
    names = [Path(t.path).name for t in page.tiles]
    assert names[0] in ("beach.jpg", "beach copy.jpg")  # either file stands for the content
    assert names[1:4] == ["IMG_2042.jpg", "IMG_2041.jpg", "loose.jpg"]
    assert names[4] == "old_100%.jpg" and page.tiles[4].month == NO_DATE
    assert page.total == 5 and not page.has_more
    assert page.tiles[0].copies == 2 and page.tiles[0].month == "March 2024"
    assert page.tiles[0].relative in ("Pictures/2024/beach.jpg", "Pictures/scans/beach copy.jpg")
    second = library.timeline(offset=2, limit=2)
    assert [t.photo_id for t in second.tiles] == [t.photo_id for t in page.tiles[2:4]]
    assert second.has_more
    only_2023 = library.timeline(PhotoFilter(folder=str(root / "2023")))
    assert only_2023.total == 2
    oldest = [Path(t.path).name for t in library.timeline(newest=False).tiles]
    assert oldest[:3] == ["loose.jpg", "IMG_2041.jpg", "IMG_2042.jpg"]
    assert oldest[3] in ("beach.jpg", "beach copy.jpg") and oldest[4] == "old_100%.jpg"
    # the oldest copy (here also the one indexed first) stands for the content, most often
    # the original, whatever the order (newest first showed the last copy made)
    copies = library.search_image(root / "2024" / "beach.jpg", k=2)  # itself and its copy
    assert sorted(Path(r.path).name for r in copies) == ["beach copy.jpg", "beach.jpg"]
    first = min(r.photo_id for r in copies)
    assert page.tiles[0].photo_id == first
    assert library.timeline(newest=False).tiles[3].photo_id == first


def test_search_results_fold_byte_identical_files(shelf) -> None:  # noqa: ANN001
    library, root = shelf
    results = library.search_image(root / "2024" / "beach.jpg", k=6)
    tiles = library.tiles(results)
    assert len(results) == 6 and len(tiles) == 5
    assert tiles[0].copies == 2 and tiles[0].score == results[0].score
    assert tiles[0].photo_id == min(r.photo_id for r in results[:2])  # the first indexed
    info = library.photo_info(tiles[0].photo_id)
    assert info is not None and sorted(Path(p).name for p in info.copies) == [
        "beach copy.jpg",
        "beach.jpg",
    ]


def test_folder_options_count_photos_below_and_include_parents(shelf) -> None:  # noqa: ANN001
    library, root = shelf
    options = {o.label: o.count for o in library.folder_options()}
    assert options == {
        "Pictures": 5,  # beach.jpg and its copy in scans/ are one photo, as in the grid
        "Pictures/2023": 2,
        "Pictures/2023/Juli": 2,
        "Pictures/2024": 1,
        "Pictures/scans": 2,
    }
    juli = [o for o in library.folder_options() if "juli" in o.label.lower()]
    assert [o.path for o in juli] == [str(root / "2023" / "Juli")]


def test_a_folder_s_count_is_what_its_grid_shows(settings, embedder, tmp_path) -> None:  # noqa: ANN001
    """Copies in one folder, in a folder below it and in a sibling: each folder's count
    is the number of tiles the grid filtered to it shows (it counted files: "photos (46)"
    above 43 photos)."""
    root = tmp_path / "photos"
    x = _photo(root / "a" / "x.jpg", 1)
    _photo(root / "c" / "y.jpg", 2)
    for copy in ("a/x copy.jpg", "a/b/x.jpg", "c/x.jpg"):
        (root / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(x, root / copy)
    index_once(settings, embedder, root)
    with service(settings, embedder) as library:
        options = {o.label: o for o in library.folder_options()}
        assert {k: o.count for k, o in options.items()} == {
            "photos": 2, "photos/a": 1, "photos/a/b": 1, "photos/c": 2,
        }  # fmt: skip
        for o in options.values():
            assert o.count == library.timeline(PhotoFilter(folder=o.path)).total, o.label


def test_undated_photos_follow_their_folder_and_name(settings, embedder, tmp_path) -> None:  # noqa: ANN001
    """Screenshots and scans carry no date: they came in the order they were indexed (ids),
    which read as random; now by folder and name."""
    import os

    root = tmp_path / "photos"
    made = {"b scan.png": 3, "a shot 10.02.png": 2, "c shot 10.01.png": 1}  # hours ago
    for seed, (name, hours) in enumerate(made.items()):
        _photo(root / name, seed)
        when = 1_700_000_000 - hours * 3600
        os.utime(root / name, (when, when))
    index_once(settings, embedder, root)
    with service(settings, embedder) as library:
        newest = [Path(t.path).name for t in library.timeline().tiles]
        assert newest == ["a shot 10.02.png", "b scan.png", "c shot 10.01.png"]
        oldest = [Path(t.path).name for t in library.timeline(newest=False).tiles]
        assert oldest == newest[::-1]  # the whole list turns around


def _ids_by_name(settings) -> dict[str, int]:  # noqa: ANN001
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(settings.db_path)) as db:
        return {path: i for i, path in db.execute("SELECT id, path FROM photos")}


def test_a_content_s_tile_is_its_oldest_file_not_its_backup(settings, embedder, tmp_path) -> None:  # noqa: ANN001
    """The copy indexed first stood for a content: whichever the folder walk met first or
    an earlier run indexed, here the backup (the viewer's folder, original, download and
    path were the backup's)."""
    import os

    root = tmp_path / "photos"
    backup = _photo(root / "Backup" / "Handy" / "Rom 1.jpg", 1)
    index_once(settings, embedder, root)  # the backup was there first
    original = root / "Urlaub" / "Rom 1.jpg"
    original.parent.mkdir()
    shutil.copy(backup, original)
    os.utime(original, (1_600_000_000, 1_600_000_000))  # its camera time, kept by the import
    index_once(settings, embedder, root)
    assert _ids_by_name(settings) == {str(backup): 1, str(original): 2}
    with service(settings, embedder) as library:
        [tile] = library.timeline().tiles
        assert tile.copies == 2 and tile.path == str(original)
        [hit] = library.tiles(library.search_image(backup, k=3))  # results fold the same way
        assert hit.copies == 2 and hit.path == str(original)
        assert library.photo_info(tile.photo_id).record.path == str(original)


def test_name_like_queries_match_file_and_folder_names(shelf) -> None:  # noqa: ANN001
    library, _ = shelf
    assert name_fragment("IMG_2041") == "IMG_2041"
    assert name_fragment("2023/Juli") == "2023/Juli"
    assert name_fragment("dog on a beach") is None and name_fragment("beach") is None
    # names with spaces: a slash or a photo extension says so
    assert name_fragment(" Café au lait.jpg ") == "Café au lait.jpg"
    assert name_fragment("2024/Trip to Rome") == "2024/Trip to Rome"
    assert name_fragment("résumé photo.JPEG") == "résumé photo.JPEG"
    for words in ("a dog on the beach.", "beach + 2:dog", "2024/Trip - people", "cat: sofa"):
        assert name_fragment(words) is None, words
    assert [Path(t.path).name for t in library.name_tiles("img_2041")] == ["IMG_2041.jpg"]
    assert sorted(Path(t.path).name for t in library.name_tiles("2023/Juli")) == [
        "IMG_2041.jpg",
        "IMG_2042.jpg",
    ]
    assert all(t.by_name for t in library.name_tiles("2023/Juli"))
    assert [Path(t.path).name for t in library.name_tiles("old_100%.jpg")] == ["old_100%.jpg"]
    assert [Path(t.path).name for t in library.name_tiles("Beach Copy.jpg")] == ["beach copy.jpg"]
    # the root's own path does not match: only names below it count
    assert library.name_tiles(str(library.roots()[0].path)[1:]) == []


def test_a_name_matches_however_its_accents_and_emoji_are_spelled(
    settings, embedder, tmp_path
) -> None:  # noqa: ANN001
    """Names from macOS are decomposed (NFD), typed queries composed; keyboards type an
    emoji with or without its variation selector. Each missed the other."""
    import unicodedata

    root = tmp_path / "photos"
    nfd = unicodedata.normalize("NFD", "Crème brûlée.jpg")
    _photo(root / nfd, 1)
    _photo(root / "Café au lait.jpg", 2)  # composed
    _photo(root / "Strand \U0001f3d6\ufe0f Abend.jpg", 3)
    index_once(settings, embedder, root)
    with service(settings, embedder) as library:
        for typed, name in (
            ("Crème brûlée.jpg", nfd),
            ("brûlée.jpg", nfd),
            (unicodedata.normalize("NFD", "Café au lait.jpg"), "Café au lait.jpg"),
            ("Strand \U0001f3d6 Abend.jpg", "Strand \U0001f3d6\ufe0f Abend.jpg"),
        ):
            assert [Path(t.path).name for t in library.name_tiles(typed)] == [name], typed


def test_viewer_details_read_gps_and_the_relative_folder(shelf) -> None:  # noqa: ANN001
    library, root = shelf
    gps = read_gps(root / "2023" / "Juli" / "IMG_2041.jpg")
    assert gps == (pytest.approx(-33.86), pytest.approx(151.2))
    assert read_gps(root / "loose.jpg") is None
    pid = library.name_tiles("IMG_2041")[0].photo_id
    info = library.photo_info(pid)
    assert info is not None and info.relative == "Pictures/2023/Juli/IMG_2041.jpg"
    assert info.gps is not None
    assert relative_path("/elsewhere/x.jpg", str(root)) == "/elsewhere/x.jpg"
    assert relative_path(f"{root}-old/x.jpg", str(root)) == f"{root}-old/x.jpg"  # a sibling
    assert relative_path(str(root), str(root)) == "Pictures"
    assert relative_path("/x/y.jpg", "/") == "/x/y.jpg"


def test_missing_thumbnails_are_counted(shelf) -> None:  # noqa: ANN001
    library, _ = shelf
    assert library.missing_thumbnails() == []
    victim = library.timeline().tiles[1]
    thumb = library.thumbnail(victim.content_hash)
    data = thumb.read_bytes()
    thumb.unlink()
    try:
        assert library.missing_thumbnails() == [victim.content_hash]
    finally:
        thumb.write_bytes(data)


def test_recent_searches_are_kept_private_newest_first(settings, tmp_path) -> None:  # noqa: ANN001
    from searchapp.library import Library

    settings.data_dir.mkdir(parents=True)
    library = Library(settings)
    assert library.recent_searches() == []
    library.remember_search({"q": "dog"})
    library.remember_search({"q": "cat", "sort": "newest"})
    kept = library.remember_search({"q": "dog"})
    assert kept == [{"q": "dog"}, {"q": "cat", "sort": "newest"}]
    assert library.recent_searches() == kept
    mode = stat.S_IMODE((settings.data_dir / "recent.json").stat().st_mode)
    assert mode == 0o600
    for i in range(20):
        library.remember_search({"q": f"q{i}"})
    assert len(library.recent_searches()) == 8
    (settings.data_dir / "recent.json").write_text("{broken")
    assert library.recent_searches() == []


def test_near_identical_photos_fold_into_one_tile(settings, embedder, tmp_path) -> None:  # noqa: ANN001
    root = tmp_path / "burst"
    root.mkdir()
    y, x = np.mgrid[0:240, 0:320]
    scene = np.stack([x * 0.7, y * 0.9, (x + y) * 0.4], axis=-1).astype(np.uint8)
    Image.fromarray(scene).save(root / "a.jpg", quality=92)
    Image.fromarray(scene).resize((160, 120)).save(root / "a small.jpg", quality=60)
    Image.fromarray(255 - scene[:, ::-1]).save(root / "b.jpg", quality=92)
    index_once(settings, embedder, root)
    with service(settings, embedder) as library:
        tiles = library.timeline().tiles
        assert len(tiles) == 3
        folded = library.fold_similar(tiles)
    assert len(folded) == 2
    assert sorted(t.similar for t in folded) == [0, 1]
    assert {Path(t.path).name for t in folded if t.similar} <= {"a.jpg", "a small.jpg"}


def test_a_content_keeps_its_shown_copy_however_much_is_read(settings, embedder, tmp_path) -> None:  # noqa: ANN001
    """Undated photos come by path, so a copy made later in a folder sorted first is read
    before its original: the shown copy is the oldest file in the whole library, on a
    short page and a long one alike (a choice among the rows read so far flipped when
    "load more" read further, and the page redrew its grid)."""
    from tests.helpers import write_jpegs

    photos = tmp_path / "photos"
    original = write_jpegs(photos / "a", 1, seed=7)[0]
    write_jpegs(photos / "b", 90, seed=8)  # more than the first read of a short page
    index_once(settings, embedder, photos)
    (photos / "0").mkdir()
    shutil.copy(original, photos / "0" / "copy.jpg")
    index_once(settings, embedder, photos)
    with service(settings, embedder) as library:
        short, long = library.timeline(limit=2).tiles, library.timeline(limit=200).tiles
        assert short[0].path == long[0].path == str(original) and short[0].copies == 2
        assert [t.photo_id for t in long[:2]] == [t.photo_id for t in short]
        only_0 = library.timeline(PhotoFilter(folder=str(photos / "0"))).tiles
        assert [t.path for t in only_0] == [str(photos / "0" / "copy.jpg")]  # in the filter
        found = library.tiles(library.search_image(original, k=2))
        assert [t.path for t in found] == [str(original)]


def test_the_orphan_sweep_spares_a_thumbnail_being_written(tmp_path: Path) -> None:
    """The page rebuilds thumbnails while the writer sweeps: a fresh temp file is a write in
    progress (deleting it failed the page's rename); an old one is a killed writer's."""
    import os
    import time

    from searchapp.thumbnails import STALE_TEMP_S, remove_orphan_thumbnails, write_thumbnail

    image = Image.new("RGB", (40, 30), "red")
    kept = write_thumbnail(tmp_path, "ab" + "0" * 62, image)
    orphan = write_thumbnail(tmp_path, "ab" + "1" * 62, image)
    writing, killed = kept.parent / f".{orphan.name}.x.tmp", kept.parent / f".{kept.name}.y.tmp"
    writing.write_bytes(b"half")
    killed.write_bytes(b"half")
    old = time.time() - STALE_TEMP_S - 60
    os.utime(killed, (old, old))
    assert remove_orphan_thumbnails(tmp_path, [kept.stem]) == 2
    assert sorted(p.name for p in kept.parent.iterdir()) == sorted([kept.name, writing.name])
