"""Library.query: relevance cutoff, sort by date, paging, filters, mixed parts, guard."""

from __future__ import annotations

import io
import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.config import load_settings
from searchapp.errors import AccessDeniedError, QueryError, SearchAppError
from searchapp.library import Library, PhotoFilter, QueryPart, parse_query
from searchapp.relevance import relevant_count
from tests.conftest import DATA
from tests.helpers import index_once

DATES = {"dated_2019.jpg": "2019:07:01 12:00:00", "dated_2021.jpg": "2021:03:15 08:30:00",
         "dated_2023.jpg": "2023:11:20 18:45:00"}  # fmt: skip


def _save_dated(src: Path, target: Path, when: str) -> None:
    exif = Image.Exif()
    exif[306] = when  # DateTime: the decoder's fallback when there is no DateTimeOriginal
    Image.open(src).convert("RGB").save(target, "JPEG", quality=90, exif=exif)


@pytest.fixture(scope="module")
def lib(tmp_path_factory, embedder):  # noqa: ANN001, ANN201
    """The sample photos plus an identical and a resized copy of coffee.png and 3 dated JPEGs."""
    base = tmp_path_factory.mktemp("search")
    photos = base / "photos"
    shutil.copytree(DATA, photos, ignore=shutil.ignore_patterns("*.md"))
    shutil.copy(photos / "coffee.png", photos / "coffee_copy.png")
    Image.open(photos / "coffee.png").convert("RGB").resize((240, 160)).save(
        photos / "coffee_small.jpg", quality=92
    )
    for (name, when), src in zip(
        DATES.items(), ["rocket.jpg", "grass.png", "coins.png"], strict=True
    ):
        _save_dated(photos / src, photos / name, when)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    Image.open(photos / "coffee.png").convert("RGB").save(photos / "turned.jpg", exif=exif)
    settings = load_settings(data_dir=base / "lib", encoder="pixels", weights="random")
    index_once(settings, embedder, photos)
    service = Library(settings, embedder)
    yield service, photos
    service.close()


def _names(results) -> list[str]:  # noqa: ANN001
    return [Path(r.path).name for r in results]


def test_cutoff_keeps_copies_hides_the_tail_and_show_all_returns_k(lib) -> None:  # noqa: ANN001
    service, photos = lib
    query = [QueryPart("image", (photos / "coffee.png").read_bytes())]
    page = service.query(query, k=20, count_contents=True)
    names = _names(page.results)
    assert {"coffee.png", "coffee_copy.png", "coffee_small.jpg"} <= set(names)
    assert page.hidden > 0 and page.total == len(names) < service.index.ntotal
    assert page.total + page.hidden == service.index.ntotal
    assert not page.has_more
    everything = service.query(query, k=10, cutoff=False, count_contents=True)
    assert len(everything.results) == 10 and everything.hidden == 0
    assert everything.total == service.index.ntotal and everything.has_more
    # the page's counts: coffee.png and coffee_copy.png are one tile, so one content less
    assert (page.contents, page.hidden_contents) == (page.total - 1, page.hidden)
    assert everything.contents == everything.total - 1
    # "more like" coffee.png: it and its byte-identical copy are left out, and not counted
    like = service.query([QueryPart("photo", _id(service, photos / "coffee.png"))], k=40,
                         cutoff=False, count_contents=True)  # fmt: skip
    assert service.query(query, k=20).contents is None  # not counted unless asked
    assert like.total == service.index.ntotal - 2 and like.contents == like.total


def _id(service: Library, path: Path) -> int:
    return service.resolve_photo(str(path))


def test_cutoff_line_moves_with_each_query(lib) -> None:  # noqa: ANN001
    service, photos = lib
    lines = {
        service.query([QueryPart("image", str(photos / name))], k=5).threshold
        for name in ("coffee.png", "rocket.jpg", "cat_chelsea.png")
    }
    assert len(lines) == 3, "one fixed cutoff for every query"


def test_relevant_count_follows_the_distribution() -> None:
    standouts = np.array([0.95, 0.94, 0.93, 0.4, 0.39, 0.38, 0.37, 0.36, 0.35, 0.3])
    assert relevant_count(standouts) == 3
    five = np.array([0.9] * 5 + [0.2] * 20)
    assert relevant_count(five) == 5
    assert relevant_count(np.full(30, 0.5)) == 30  # nothing stands out: nothing hidden
    assert relevant_count(np.array([0.9, 0.1])) == 2  # too few to cut
    ties = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert relevant_count(ties, min_keep=2) == 4  # equal scores are not split


def test_pages_join_up_to_the_single_query(lib) -> None:  # noqa: ANN001
    service, _ = lib
    parts = parse_query("a red kayak")
    whole = service.query(parts, k=15, cutoff=False).results
    pages = [service.query(parts, k=5, offset=o, cutoff=False) for o in (0, 5, 10)]
    assert [r.photo_id for p in pages for r in p.results] == [r.photo_id for r in whole]
    assert [r.rank for p in pages for r in p.results] == list(range(1, 16))
    assert all(p.has_more for p in pages)


def test_sort_by_date_reorders_only_the_relevant_results(lib) -> None:  # noqa: ANN001
    service, photos = lib
    parts = [QueryPart("image", str(photos / "dated_2021.jpg"))]
    newest = service.query(parts, k=50, cutoff=False, sort="newest").results
    dated = [r for r in newest if r.taken_at is not None]
    assert _names(dated) == ["dated_2023.jpg", "dated_2021.jpg", "dated_2019.jpg"]
    assert newest[: len(dated)] == dated, "undated photos come after dated ones"
    oldest = service.query(parts, k=50, cutoff=False, sort="oldest").results
    assert _names(oldest)[:3] == ["dated_2019.jpg", "dated_2021.jpg", "dated_2023.jpg"]
    relevant = service.query(parts, k=50).results
    by_date = service.query(parts, k=50, sort="newest").results
    assert {r.photo_id for r in by_date} == {r.photo_id for r in relevant}
    with pytest.raises(QueryError):
        service.query(parts, sort="sideways")


def test_filters_run_inside_the_search_so_k_is_filled(lib) -> None:  # noqa: ANN001
    service, _ = lib
    parts = parse_query("a dog")
    jpegs = service.query(parts, k=6, cutoff=False, flt=PhotoFilter(formats=("JPEG",))).results
    assert len(jpegs) == 6 and {r.format for r in jpegs} == {"JPEG"}
    after = datetime(2020, 1, 1).timestamp()
    recent = service.query(parts, k=10, cutoff=False, flt=PhotoFilter(taken_after=after))
    assert sorted(_names(recent.results)) == ["dated_2021.jpg", "dated_2023.jpg"]
    big = service.query(parts, k=50, cutoff=False, flt=PhotoFilter(min_width=600, min_height=600))
    assert big.results and all(r.width >= 600 and r.height >= 600 for r in big.results)
    assert len(big.results) < service.index.ntotal


def test_text_and_image_parts_mix(lib) -> None:  # noqa: ANN001
    service, photos = lib
    coffee = service.store.find_photo_by_path(photos / "coffee.png").id
    parts = parse_query(f"photo:{coffee} + 2:a cup - image:{photos / 'rocket.jpg'}")
    assert [(p.kind, p.weight) for p in parts] == [("photo", 1.0), ("text", 2.0), ("image", -1.0)]
    mixed = service.query(parts, k=5, cutoff=False).results
    alone = service.query([QueryPart("photo", coffee)], k=5, cutoff=False).results
    assert coffee not in [r.photo_id for r in mixed], "a query photo matches itself"
    rocket = service.store.find_photo_by_path(photos / "rocket.jpg").id
    assert service.search([QueryPart("photo", rocket)], k=1)[0].photo_id == rocket  # as before
    assert rocket not in [r.photo_id for r in service.search_like(rocket, k=30)]
    assert [r.score for r in mixed] != [r.score for r in alone]
    upload = (photos / "cat_chelsea.png").read_bytes()
    with_text = service.query([QueryPart("image", upload), QueryPart("text", "a cat", 0.5)], k=3)
    assert with_text.results
    with pytest.raises(QueryError):
        service.query([QueryPart("photo", coffee), QueryPart("photo", coffee, -1.0)])
    with pytest.raises(QueryError):
        parse_query("photo:abc")


def test_guard_refuses_paths_outside_the_roots(lib, tmp_path) -> None:  # noqa: ANN001
    service, photos = lib
    inside = service.guard_parts(parse_query(f"image:{photos / 'coffee.png'}"))
    assert inside[0].kind == "photo"
    outside = tmp_path / "secret.png"
    shutil.copy(photos / "coffee.png", outside)
    for crafted in (str(outside), f"{photos}/../{outside.name}", "/etc/hostname"):
        with pytest.raises(AccessDeniedError):
            service.guard_parts(parse_query(f"image:{crafted}"))
    link = photos / "link.png"
    os.symlink(outside, link)
    try:
        with pytest.raises(AccessDeniedError):
            service.preview_jpeg(link)
    finally:
        link.unlink()
    with pytest.raises(AccessDeniedError):
        service.preview_jpeg(outside)


def test_preview_is_oriented_and_bounded(lib) -> None:  # noqa: ANN001
    service, photos = lib

    data = service.preview_jpeg(photos / "coffee.png", max_side=300)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (300, 200)
    with Image.open(io.BytesIO(service.preview_jpeg(photos / "turned.jpg"))) as im:
        assert im.size == (400, 600), "EXIF orientation not applied"


def test_facets_details_thumbnails_and_status(lib) -> None:  # noqa: ANN001
    library, photos = lib
    facets = library.facets()
    assert facets.roots == [str(photos)] and facets.folders == [str(photos)]
    assert {"JPEG", "PNG"} <= set(facets.formats)
    assert facets.taken_first == datetime(2019, 7, 1, 12).timestamp()
    assert facets.taken_last == datetime(2023, 11, 20, 18, 45).timestamp()
    assert library.facets(root="/elsewhere").folders == []

    hit = library.search_image(photos / "coffee.png", k=1)[0]
    record = library.photo(hit.photo_id)
    assert record.path == hit.path and (record.width, record.height) == (600, 400)
    assert library.photo(10**9) is None
    thumb = library.thumbnail(hit.content_hash)
    assert thumb is not None and thumb.exists() and library.thumbnail("0" * 64) is None

    report = library.status(pending=False)
    assert (report.photos, report.failed, report.pending) == (library.photo_count(), 0, None)
    assert report.index.problem is None and report.index.vectors == report.photos
    assert report.as_dict()["index"]["type"] == "exact: faiss IndexIDMap2(IndexFlatIP)"


def test_more_like_this_never_loads_the_model(lib) -> None:  # noqa: ANN001
    library, photos = lib
    fresh = Library(library.settings)  # no embedder given: it would load on demand
    try:
        coffee = fresh.resolve_photo(str(photos / "coffee.png"))
        assert _names(fresh.search_like(coffee, k=1)) == ["coffee_small.jpg"]
        assert fresh._embedder is None, "a 'more like this' query loaded the model"
    finally:
        fresh.close()


def test_photo_count_follows_each_write(settings, embedder, photos, tmp_path) -> None:  # noqa: ANN001
    """The count is kept between calls (the page asks on every rerun) and counted again
    after each write another process commits."""
    index_once(settings, embedder, photos)
    library = Library(settings)
    first = library.photo_count()
    assert first == library.photo_count() > 0
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(DATA / "coffee.png", more / "coffee again.png")
    Image.open(DATA / "rocket.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(more / "r.jpg")
    index_once(settings, embedder, more)
    assert library.photo_count() == first + 2
    library.close()


def test_a_library_embedded_by_another_model_says_so(lib) -> None:  # noqa: ANN001
    """Searching with another --model found nothing and said nothing: now one line naming
    the model that embedded the photos and how to embed them with this one."""
    settings = lib[0].settings.with_overrides(encoder="clip", model="MobileCLIP-S1")
    library = Library(settings)
    try:
        with pytest.raises(QueryError) as said:
            library.search_text("a cat")
        assert str(said.value) == (
            "this library's photos were embedded by pixels-test-v1, not "
            "MobileCLIP-S1/random-seed0; search with that model (SEARCHAPP_ENCODER=pixels), or "
            f"embed them again with this one: searchapp --data-dir {settings.data_dir} "
            "--model MobileCLIP-S1 --weights random index"
        )
    finally:
        library.close()


def test_a_query_image_that_is_missing_or_no_image_is_named(lib, tmp_path) -> None:  # noqa: ANN001
    """It said "file vanished before it could be read" (the indexer's words) with no path."""
    with pytest.raises(QueryError, match=f"no such file: {tmp_path / 'nope.jpg'}"):
        lib[0].search_image(tmp_path / "nope.jpg")
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(SearchAppError, match=f"cannot search by {tmp_path / 'notes.jpg'}: "):
        lib[0].search_image(tmp_path / "notes.jpg")


def test_more_like_a_photo_leaves_out_its_copies(lib) -> None:  # noqa: ANN001
    """Its byte-identical copies scored 1.000 and filled the first places (new-user trial):
    they are that photo again. A resized copy is another picture and comes first."""
    library, photos = lib
    coffee = library.resolve_photo(str(photos / "coffee.png"))
    names = _names(library.search_like(coffee, 5))
    assert "coffee.png" not in names and "coffee_copy.png" not in names
    assert names[0] == "coffee_small.jpg"
