"""The Streamlit page, driven headless with streamlit.testing (the pixel test encoder)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from searchapp.config import load_settings
from tests.conftest import DATA
from tests.helpers import index_once, wait_for

st_testing = pytest.importorskip("streamlit.testing.v1")

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def _app(monkeypatch: pytest.MonkeyPatch, data_dir: Path):  # noqa: ANN202
    monkeypatch.setenv("SEARCHAPP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SEARCHAPP_ENCODER", "pixels")  # as the ``embedder`` fixture
    monkeypatch.setenv("SEARCHAPP_WEIGHTS", "random")
    monkeypatch.setenv("SEARCHAPP_PRECISION", "fp32")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return st_testing.AppTest.from_file(APP, default_timeout=180)


def _texts(at) -> str:  # noqa: ANN001
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [i.value for i in at.info] + [w.value for w in at.warning]
    parts += [s.value for s in at.success] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def _grid(at) -> dict:  # noqa: ANN001
    """What the page sent its photo grid (the component's data), or {} without a grid."""
    grids = [g for g in at.get("bidi_component") if g.proto.component_name == "searchapp.gallery"]
    return json.loads(grids[0].proto.json) if grids else {}


def _tiles(at) -> list[dict]:  # noqa: ANN001
    return _grid(at).get("tiles", [])


def _result_names(at) -> list[str]:  # noqa: ANN001
    """File names of the tiles, in grid order."""
    return [Path(t["path"]).name for t in _tiles(at)]


def _open_filters(at):  # noqa: ANN001, ANN202
    """Open the Filters popover: its widgets run only while it is open."""
    at.session_state["filters"] = True
    return at.run()


def _search(at, text: str, show_all: bool = True):  # noqa: ANN001, ANN202
    if "show_all" not in [t.key for t in at.toggle]:
        _open_filters(at)
    at.toggle(key="show_all").set_value(show_all)
    return at.text_input(key="query").input(text).run()


def _query_caption(at) -> str:  # noqa: ANN001
    return next(c.value for c in at.caption if c.value.startswith("Query:"))


@pytest.fixture(scope="module")
def shared_library(tmp_path_factory, embedder):  # noqa: ANN001, ANN201
    """One indexed copy of the sample photos for the tests that only read it."""
    base = tmp_path_factory.mktemp("ui")
    photos = base / "photos"
    shutil.copytree(DATA, photos, ignore=shutil.ignore_patterns("*.md"))
    settings = load_settings(data_dir=base / "lib", encoder="pixels", weights="random")
    index_once(settings, embedder, photos)
    return settings, photos


def test_empty_library_offers_to_add_a_folder_and_index_it(
    monkeypatch, tmp_path, settings, photos
) -> None:  # noqa: ANN001
    from searchapp.indexer.lock import WriterLock

    at = _app(monkeypatch, settings.data_dir).run()
    assert not at.exception
    assert f"searchapp --data-dir {settings.data_dir} index PATH" in _texts(at)
    assert "Random model weights" in at.warning[0].value
    fix = f"start it without either:\n\n```\nsearchapp --data-dir {settings.data_dir} ui\n```"
    assert fix in at.warning[0].value  # how to fix it, for this library

    # a folder without photos is not kept unless asked (issue 12: /etc was accepted)
    empty = tmp_path / "no photos here"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    at.text_input(key="add-path").input(empty.as_uri())  # a file manager's link: file:///...%20
    at.button(key="add-index").click().run()
    assert not at.exception
    assert any("No photos found in" in w.value for w in at.warning), _texts(at)
    assert not (settings.data_dir / "library.sqlite3").exists(), "nothing was added"
    assert at.checkbox(key="add-anyway")  # the box the warning names, in the same run

    at.text_input(key="add-path").input(f'"{photos}"')  # pasted with its quotes
    with WriterLock(settings, "index"):  # another writer: one line, no waiting
        at.button(key="add-index").click().run()
    assert not at.exception
    assert any("is writing the library" in e.value for e in at.error)

    at.button(key="add-index").click().run()
    assert not at.exception
    assert "Indexing finished: added 16" in _texts(at), _texts(at)
    at.run()  # the rerun that follows at once (Status's folder check) took it away
    assert "Indexing finished: added 16" in _texts(at)
    assert not any("deleted or replaced" in w.value for w in at.warning)  # created, not lost
    assert len(at.tabs) == 2 and "index PATH" not in _texts(at)
    assert len(_tiles(at)) == 16  # the landing page is the library's timeline

    # a folder inside a photo folder: said to be covered (the CLI's words), nothing added
    (photos / "sub").mkdir()
    shutil.copy(photos / "coffee.png", photos / "sub" / "coffee2.png")
    at.session_state["tab"] = "Status"
    at.run()
    at.text_input(key="status-add-path").input(str(photos / "sub"))
    at.button(key="status-add-index").click().run()
    assert not at.exception
    covered = f"{photos / 'sub'} is inside the photo folder {photos}, which covers it already."
    assert any(covered in m.value.replace("\\", "") for m in at.success), _texts(at)


def test_landing_timeline_then_search_then_back(monkeypatch, shared_library) -> None:  # noqa: ANN001
    settings, photos = shared_library
    at = _app(monkeypatch, settings.data_dir).run()
    assert not at.exception
    assert _grid(at)["groups"] and len(_tiles(at)) == 16
    assert any(c.value == "16 photos, newest first" for c in at.caption)
    _search(at, "a cat", show_all=False)
    relevant = _result_names(at)
    assert relevant and "weaker matches hidden" in _texts(at)
    assert not _grid(at)["groups"]
    assert at.query_params["q"] == "a cat"
    at.button(key="show-all-inline").click().run()
    assert at.toggle(key="show_all").value
    everything = _result_names(at)
    assert len(everything) == 16 > len(relevant) and everything[: len(relevant)] == relevant
    assert all(t["score"] is not None for t in _tiles(at))
    at.text_input(key="negative").input("people").run()
    at.text_input(key="query").input("").run()  # clearing the box: the timeline again,
    assert _grid(at)["groups"] and len(_tiles(at)) == 16  # also with "less of" filled in
    assert "q" not in at.query_params
    assert any("type what to find" in c.value for c in at.caption)
    at.text_input(key="negative").input("")
    at.text_input(key="query").input("0:coffee").run()  # typed: runs as written, and says
    assert any("cancel out" in e.value for e in at.error)  # why it finds nothing
    at.text_input(key="query").input("a cat").run()
    at.text_input(key="negative").input("people").run()
    at.query_params["like"] = str(_tiles(at)[0]["photo_id"])
    at.run()
    at.button(key="clear-search").click().run()  # one click back to the timeline
    assert _grid(at)["groups"] and len(_tiles(at)) == 16
    assert at.text_input(key="query").value == at.text_input(key="negative").value == ""
    assert not {"q", "neg", "like"} & set(at.query_params)


def test_a_folded_grid_says_its_count_is_of_photos(monkeypatch, shared_library) -> None:  # noqa: ANN001
    settings, _ = shared_library
    at = _app(monkeypatch, settings.data_dir)
    at.query_params["fold"] = "1"
    at.run()
    assert "16 photos, newest first, near-identical ones folded" in _texts(at), _texts(at)
    newest = [t["photo_id"] for t in _tiles(at)]
    at.query_params["sort"] = "oldest"  # the timeline follows "oldest first" too
    at.run()
    assert "16 photos, oldest first, near-identical ones folded" in _texts(at), _texts(at)
    assert [t["photo_id"] for t in _tiles(at)] == newest[::-1]  # none has a date


def test_more_like_this_from_the_url_and_clear(monkeypatch, shared_library) -> None:  # noqa: ANN001
    settings, photos = shared_library
    at = _app(monkeypatch, settings.data_dir).run()
    target = _tiles(at)[0]
    at.query_params["like"] = str(target["photo_id"])
    at.run()
    assert not at.exception
    name = Path(target["path"]).name
    assert any(m.value.replace("\\", "") == f"**More like {name}**" for m in at.markdown)
    ids = [t["photo_id"] for t in _tiles(at)]
    assert ids and target["photo_id"] not in ids, "the photo itself is left out"
    for weight in ("0.5", "3"):  # the weight stepped through: one recent search, not three
        at.query_params["lw"] = weight
        at.run()
    at.query_params["lw"] = "-1"  # alone, "less like it" is no search: the card says which
    at.run()
    assert any(m.value.replace("\\", "") == f"**Less like {name}**" for m in at.markdown)
    assert "'Less of' and 'less like this' shape a search" in _texts(at)
    at.query_params["lw"] = "3"
    at.run()
    at.button(key="clear-like").click().run()
    assert _grid(at)["groups"] and "like" not in at.query_params
    [recent] = [e for e in at.get("button_group") if e.key == "recent"]
    chips = [o.content.replace("\\", "") for o in recent.proto.options]
    assert [c for c in chips if name in c] == [f"more like {name} ×3"], chips


def test_a_hand_made_link_shows_what_it_asks_and_never_breaks(monkeypatch, shared_library) -> None:  # noqa: ANN001
    """A weight the slider does not offer snaps to the nearest on its side (it showed
    "much less like this"); a year, a file type or a size the Filters box would not list
    stays in effect when the box opens; a year 0 or an id past SQLite's is dropped."""
    settings, photos = shared_library
    at = _app(monkeypatch, settings.data_dir).run()
    target = _tiles(at)[0]["photo_id"]
    at.query_params.update({"like": f"{target},99999999999999999999", "lw": "0.7"})
    at.run()
    assert not at.exception and at.select_slider(key="like_weight").value == 0.5
    assert (at.query_params["like"], at.query_params["lw"]) == (str(target), "0.5")
    at.button(key="clear-like").click().run()
    wanted = {"when": "1999", "types": "BMP", "min_side": "20000"}
    at.query_params.update({**wanted, "min_side": "50000"})
    at.run()
    assert not at.exception and not _tiles(at)
    _open_filters(at)
    assert not at.exception
    assert {k: at.query_params.get(k) for k in wanted} == wanted
    # the default sort names what it does on the timeline too (it said "Best match" there)
    assert at.selectbox(key="sort").value == "relevance"
    assert at.selectbox(key="sort").options[0] == "Best match (timeline: newest first)"
    for bad in ({"when": "0001"}, {"when": "custom", "since": "0001-01-01"}):
        at.query_params.clear()
        at.query_params.update(bad)
        at.run()
        assert not at.exception and len(_tiles(at)) == 16


def test_combined_query_and_a_new_upload_starts_at_like_this(monkeypatch, shared_library) -> None:  # noqa: ANN001
    settings, photos = shared_library
    at = _app(monkeypatch, settings.data_dir).run()
    _search(at, "a cat")
    text_only = _result_names(at)
    at.text_input(key="query").input("a cat + 2:grass - people").run()
    assert not at.exception
    assert _query_caption(at) == "Query: a cat + 2 × grass - people"
    assert _result_names(at) != text_only

    coffee = (photos / "coffee.png").read_bytes()
    at.file_uploader[0].set_value(("query.png", coffee, "image/png")).run()
    at.text_input(key="negative").input("cars, trees").run()
    assert not at.exception
    assert _query_caption(at) == (
        "Query: a cat + 2 × grass - people - cars - trees + uploaded image"
    )
    mixed = [t["score"] for t in _tiles(at)]
    slider = next(s for s in at.select_slider if s.key.startswith("upload_weight-"))
    slider.set_value(3.0).run()
    assert "3 × uploaded image" in _query_caption(at)
    assert [t["score"] for t in _tiles(at)] != mixed
    assert _result_names(at)[0] == "coffee.png"  # the image now dominates the query

    # issue 12: replacing the image left the slider at the old weight while the query
    # used +1; a new image now starts at "like this", shown and used alike
    slider = next(s for s in at.select_slider if s.key.startswith("upload_weight-"))
    slider.set_value(-2.0).run()
    assert "- 2 × uploaded image" in _query_caption(at)
    rocket = (photos / "rocket.jpg").read_bytes()
    at.file_uploader[0].set_value(("other.jpg", rocket, "image/jpeg")).run()
    assert not at.exception
    [slider] = [s for s in at.select_slider if s.key.startswith("upload_weight-")]
    assert slider.value == 1.0
    assert _query_caption(at).endswith("+ uploaded image")


def test_image_upload_searches_by_image(monkeypatch, shared_library) -> None:  # noqa: ANN001
    settings, photos = shared_library
    at = _app(monkeypatch, settings.data_dir).run()
    data = (photos / "coffee.png").read_bytes()
    at.file_uploader[0].set_value(("query.png", data, "image/png")).run()
    assert not at.exception
    assert any(m.value == "**Like query.png**" for m in at.markdown)
    names = _result_names(at)
    assert names and names[0] == "coffee.png"  # the same image is its own best match

    import io

    import pillow_heif

    pillow_heif.register_heif_opener()
    for fmt, mime in (("HEIF", "image/heic"), ("WEBP", "image/webp")):
        out = io.BytesIO()
        Image.open(photos / "coffee.png").convert("RGB").save(out, format=fmt, quality=90)
        name = f"phone.{'heic' if fmt == 'HEIF' else 'webp'}"
        at.file_uploader[0].set_value((name, out.getvalue(), mime)).run()
        assert not at.exception and not at.error
        assert any(m.value == f"**Like {name}**" for m in at.markdown)
        assert _result_names(at)[0] == "coffee.png", fmt

    # a file that is no image: one line saying why, the timeline as without it, no traceback
    at.file_uploader[0].set_value(("not_really.png", b"plain text", "image/png")).run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("Cannot search by not\\_really.png: not an image"), error
    assert not any(m.value.startswith("**Like") for m in at.markdown)
    at.session_state["tab"] = "Status"  # Streamlit drops the uploader's file there: the
    at.run()  # bad one is not kept either, so its error (with no card to clear) is gone
    at.session_state["tab"] = "Photos"
    at.run()
    assert not at.exception and not at.error and _grid(at)["groups"]


def test_an_image_search_survives_a_visit_to_status(monkeypatch, shared_library) -> None:  # noqa: ANN001
    """Streamlit drops the uploader's file while Status is open: the page keeps the image
    and its weight, searches by it still, and its card's Clear (or the uploader's x) ends it."""
    settings, photos = shared_library
    at = _app(monkeypatch, settings.data_dir).run()
    at.file_uploader[0].set_value(("query.png", (photos / "coffee.png").read_bytes(), "image/png"))
    at.run()
    next(s for s in at.select_slider if s.key.startswith("upload_weight-")).set_value(2.0).run()
    shown = _result_names(at)
    at.session_state["tab"] = "Status"
    at.run()
    at.session_state["tab"] = "Photos"
    at.run()
    assert not at.exception and _result_names(at) == shown
    [slider] = [s for s in at.select_slider if s.key.startswith("upload_weight-")]
    assert slider.value == 2.0 and any(m.value == "**Like query.png**" for m in at.markdown)
    at.text_input(key="query").input("a cat").run()
    assert _query_caption(at) == "Query: a cat + 2 × uploaded image"
    at.button(key="clear-upload").click().run()
    assert not at.exception and not any("Like query.png" in m.value for m in at.markdown)
    assert not any("uploaded image" in c.value for c in at.caption)
    at.text_input(key="query").input("").run()
    assert _grid(at)["groups"], "nothing left to search by: the timeline"
    at.file_uploader[0].set_value(("again.png", (photos / "coins.png").read_bytes(), "image/png"))
    at.run()
    assert any(m.value == "**Like again.png**" for m in at.markdown)
    at.file_uploader[0].set_value(None).run()  # the uploader's own x
    assert not at.exception and _grid(at)["groups"]


def test_crafted_path_outside_the_roots_is_refused(monkeypatch, shared_library, tmp_path) -> None:  # noqa: ANN001
    settings, photos = shared_library
    outside = tmp_path / "private.png"
    shutil.copy(photos / "coffee.png", outside)
    at = _app(monkeypatch, settings.data_dir).run()
    for crafted in (str(outside), f"{photos}/../{outside.name}", "/etc/hostname"):
        _search(at, f"image:{crafted}")
        assert not at.exception
        assert any("not inside an indexed folder" in e.value for e in at.error), crafted
        assert not _result_names(at)
    _search(at, f"image:{photos / 'rocket.jpg'}")  # an indexed photo by path is fine
    assert not at.error and _result_names(at)


def test_a_file_name_query_finds_the_file_first(monkeypatch, shared_library) -> None:  # noqa: ANN001
    settings, _ = shared_library
    at = _app(monkeypatch, settings.data_dir).run()
    _search(at, "rocket.jpg", show_all=False)
    assert not at.exception
    tiles = _tiles(at)
    assert Path(tiles[0]["path"]).name == "rocket.jpg" and tiles[0]["by_name"]
    assert [Path(t["path"]).name for t in tiles].count("rocket.jpg") == 1
    # the counts add up to the tiles, and with the hidden ones to the library (16 photos):
    # the name match is not counted again among the model's results
    said = re.search(r"1 by file or folder name, then (\d+) relevant results?; (\d+) weaker",
                     _texts(at))  # fmt: skip
    assert said, _texts(at)
    relevant, hidden = map(int, said.groups())
    assert 1 + relevant == len(tiles) and 1 + relevant + hidden == 16, said.group(0)
    at.toggle(key="show_all").set_value(True).run()  # every photo: 1 by name, 15 more
    assert "1 by file or folder name, then 15 results" in _texts(at), _texts(at)
    assert len(_tiles(at)) == 16


def test_filters_change_results_and_an_empty_result_names_its_filter(
    monkeypatch, settings, embedder, photos
) -> None:  # noqa: ANN001
    sub = photos / "sub"
    sub.mkdir()
    for name in ("coffee.png", "rocket.jpg"):
        (photos / name).rename(sub / name)
    exif = Image.Exif()
    exif[306] = "2020:02:02 10:00:00"
    Image.open(sub / "rocket.jpg").save(sub / "dated.jpg", exif=exif)
    index_once(settings, embedder, photos)

    at = _app(monkeypatch, settings.data_dir).run()
    assert not at.exception
    assert "folder" not in [b.key for b in at.selectbox]  # closed: no filter widget runs
    folder = _open_filters(at).selectbox(key="folder")
    assert folder.format_func(str(sub)) == "photos/sub  (3)"
    assert folder.format_func(str(photos)) == "photos  (17)"
    folder.set_value(str(sub)).run()
    assert sorted(_result_names(at)) == ["coffee.png", "dated.jpg", "rocket.jpg"]
    assert at.query_params["folder"] == str(sub)
    _search(at, "a cup")
    assert sorted(_result_names(at)) == ["coffee.png", "dated.jpg", "rocket.jpg"]
    assert "results (filtered)" in _texts(at)  # beside the count, whether Filters is open or not

    at.multiselect(key="types").set_value(["PNG"]).run()
    assert _result_names(at) == ["coffee.png"]
    at.multiselect(key="types").set_value([])
    at.selectbox(key="folder").set_value("").run()
    assert len(_result_names(at)) == 17
    at.number_input(key="min_side").set_value(600).run()
    big = _result_names(at)
    assert 0 < len(big) < 17 and "coffee.png" not in big  # 600 x 400: out
    at.number_input(key="min_side").set_value(0).run()
    at.selectbox(key="when").set_value("2020").run()
    assert not at.exception
    assert _result_names(at) == ["dated.jpg"]

    # the year and the PNG type together leave nothing: the page says which filter did it
    at.multiselect(key="types").set_value(["PNG"]).run()
    assert not _result_names(at)
    warnings = [w.value for w in at.warning]
    said = [w.replace("\\", "") for w in warnings]
    assert "The date 2020-01-01 to 2020-12-31 leaves no photo here." in said, said
    assert "The file type PNG leaves no photo here." in said
    assert not any("No results" in i.value for i in at.info)  # not "try other words" too
    at.button(key="clear-the date").click().run()
    assert _result_names(at) and at.selectbox(key="when").value == ""


def test_status_lists_failed_files_and_retries_them(
    monkeypatch, settings, embedder, photos
) -> None:  # noqa: ANN001
    broken = photos / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    index_once(settings, embedder, photos)
    # new and vanished files since the run: pending, found by stat alone
    shutil.copy(photos / "rocket.jpg", photos / "new rocket.jpg")
    (photos / "coins.png").unlink()
    at = _app(monkeypatch, settings.data_dir)
    at.query_params["view"] = "status"  # a link to Status
    _status_checked(at)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Indexed"] == "16" and metrics["Failed"] == "1", metrics
    assert metrics["Pending"] == "1", metrics
    assert [m.delta for m in at.metric if m.label == "Pending"] == ["1 to remove"]
    assert not _result_names(at)  # the search tab is not run while the status tab is open
    table = at.dataframe[0].value
    assert list(table["file"]) == [str(broken)]
    assert "not an image" in table["reason"][0]
    assert any(t.value.startswith("Model: MobileCLIP-S2, weights random") for t in at.text)
    assert any("IndexIDMap2(IndexFlatIP), 16 vectors" in t.value for t in at.text)
    assert any(t.value.startswith("Last indexing run: index, done") for t in at.text)

    shutil.copy(photos / "rocket.jpg", broken)  # the file is fixed; "retry" picks it up
    at.button(key="retry").click().run()
    assert not at.exception
    assert at.success[0].value.startswith("Indexing finished: added 1"), _texts(at)
    _status_checked(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Indexed"] == "17" and metrics["Failed"] == "0"
    assert metrics["Pending"] == "1"  # retry read only the failed file
    assert not at.dataframe


def test_retry_with_more_failures_than_listed_reads_every_failed_file(
    monkeypatch, settings, embedder, tmp_path
) -> None:  # noqa: ANN001
    """Status lists the first FAILURES_SHOWN failed files; "retry" then retries every
    failed file, not only those listed: the one fixed beyond the list is indexed."""
    from searchapp.ui.status_view import FAILURES_SHOWN

    photos = tmp_path / "many"
    photos.mkdir()
    for i in range(FAILURES_SHOWN + 1):
        (photos / f"bad{i:03d}.jpg").write_bytes(b"not a jpeg at all")
    index_once(settings, embedder, photos)
    at = _app(monkeypatch, settings.data_dir)
    at.query_params["view"] = "status"  # a link to Status
    _status_checked(at)
    listed = set(at.dataframe[0].value["file"])
    assert len(listed) == FAILURES_SHOWN
    (beyond,) = [p for p in photos.iterdir() if str(p) not in listed]
    shutil.copy(DATA / "rocket.jpg", beyond)
    at.button(key="retry").click().run()
    assert not at.exception
    assert "Indexing finished: added 1" in _texts(at), _texts(at)
    # the 200 still failed, counted "unchanged" by the run: the library's number is said,
    # as a warning (a green "finished" read as if they were fixed)
    said = [w.value for w in at.warning]
    assert any(f"{FAILURES_SHOWN} file(s) in the library could not be read" in w for w in said)
    assert not at.success


def _status_checked(at) -> None:  # noqa: ANN001
    """Run the status tab until its background folder check has reported (the tab shows
    "…" for pending files until then; in the browser a fragment reruns it)."""

    def reported() -> bool:
        at.run()
        return {m.label: m.value for m in at.metric}.get("Pending") not in (None, "…")

    wait_for(reported, "the status tab's folder check", timeout_s=60)


def test_status_counts_missing_thumbnails_and_rebuilds_them(
    monkeypatch, settings, embedder, photos
) -> None:  # noqa: ANN001
    from searchapp.library import Library

    index_once(settings, embedder, photos)
    library = Library(settings, embedder)
    victim = library.timeline().tiles[0]
    thumb = library.thumbnail(victim.content_hash)
    thumb.unlink()
    at = _app(monkeypatch, settings.data_dir)
    at.query_params["view"] = "status"  # a link to Status
    _status_checked(at)
    assert any("1 photo has no thumbnail" in w.value for w in at.warning), _texts(at)
    at.button(key="rebuild-thumbs").click().run()
    assert not at.exception
    assert thumb.exists() and "Rebuilt 1 thumbnails." in _texts(at)
    _status_checked(at)
    assert not any("no thumbnail" in w.value for w in at.warning)


def test_status_opens_before_its_slow_folder_check_ends(
    monkeypatch, settings, embedder, photos
) -> None:  # noqa: ANN001
    """Issue 12: the tab's first open waited for a stat of every file (2.6 s at 100k)."""
    import threading

    from searchapp.library import Library

    index_once(settings, embedder, photos)
    release = threading.Event()
    real_pending = Library.pending

    def slow_pending(self):  # noqa: ANN001, ANN202
        release.wait(60)
        return real_pending(self)

    monkeypatch.setattr(Library, "pending", slow_pending)
    at = _app(monkeypatch, settings.data_dir)
    at.query_params["view"] = "status"  # a link to Status
    try:
        at.run()
        assert not at.exception
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Indexed"] == "16" and metrics["Pending"] == "…", metrics
    finally:
        release.set()
    _status_checked(at)
    assert {m.label: m.value for m in at.metric}["Pending"] == "0"


def test_status_says_a_missing_index_file_is_rebuilt(
    monkeypatch, settings, embedder, photos
) -> None:  # noqa: ANN001
    index_once(settings, embedder, photos)
    settings.index_path.unlink()  # photos indexed, no vector file: not "0 vectors"
    at = _app(monkeypatch, settings.data_dir)
    at.query_params["view"] = "status"  # a link to Status
    at.run()
    assert not at.exception
    lines = [t.value for t in at.text if t.value.startswith("Index: ")]
    assert lines == ["Index: file missing; searches rebuild it from the stored vectors in "
                     "memory; the next index run saves it"]  # fmt: skip
    assert {m.label: m.value for m in at.metric}["Indexed"] == "16"
    assert not settings.index_path.exists(), "the page only reads"


def test_status_shows_a_run_in_progress(monkeypatch, shared_library) -> None:  # noqa: ANN001
    from searchapp.indexer.lock import WriterLock
    from searchapp.store import Store

    settings, _ = shared_library
    store = Store(settings.db_path)
    run_id = store.start_run("index", total=40)
    store.update_run(run_id, total=40, done=10, stats={})
    try:
        with WriterLock(settings, "index"):
            at = _app(monkeypatch, settings.data_dir)
            at.query_params["view"] = "status"
            at.run()
            assert not at.exception
            live = [p for p in at.progress if p.text.startswith("Indexing in progress")]
            assert live and live[0].value == 25, [p.text for p in at.progress]
            assert "10 of 40 files" in live[0].text
            assert any(t.value.startswith("Writer: searchapp index (pid ") for t in at.text)
    finally:
        store.finish_run(run_id, "done", {})
        store.close()
    at.run()
    assert not [p for p in at.progress if p.text.startswith("Indexing in progress")]


def test_cli_ui_runs_streamlit_on_localhost(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    from searchapp import cli
    from searchapp.ui import launch

    seen = {}

    def fake_run(cmd, env, on_started=None, restart=""):  # noqa: ANN001, ANN202
        seen["cmd"], seen["env"], seen["restart"] = cmd, env, restart
        return 0

    monkeypatch.setattr(launch, "run_page", fake_run)
    rc = cli.main(
        ["--data-dir", str(tmp_path / "lib"), "--weights", "random", "ui", "--port", "9999"]
    )
    assert rc == 0
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "searchapp.ui.page_process", "run"] and cmd[4].endswith("server.py")
    assert seen["restart"] == f"searchapp --data-dir {tmp_path / 'lib'} ui --port 9999"

    def flag(name: str) -> str:
        return cmd[cmd.index(name) + 1]

    assert flag("--server.address") == "127.0.0.1"
    assert flag("--server.port") == "9999"
    assert flag("--browser.gatherUsageStats") == "false"
    assert flag("--server.maxUploadSize") == "20"
    assert flag("--server.enableXsrfProtection") == "true"
    assert flag("--client.toolbarMode") == "minimal"
    assert seen["env"]["SEARCHAPP_DATA_DIR"] == str((tmp_path / "lib").resolve())
    assert seen["env"]["SEARCHAPP_WEIGHTS"] == "random"

    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:  # another page on that port
        port = str(taken.getsockname()[1])
        seen.clear()
        rc = cli.main(["--data-dir", str(tmp_path / "lib"), "ui", "--port", port])
    assert rc == 1 and not seen, "refused before 'serving', Streamlit never started"


def test_cli_ui_open_without_a_graphical_browser_says_so_and_serves(
    monkeypatch, capsys, tmp_path
) -> None:  # noqa: ANN001
    from searchapp import cli
    from searchapp.ui import launch

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")  # where webbrowser would pick lynx or w3m, if any
    started = []
    monkeypatch.setattr(
        launch, "run_page", lambda cmd, env, on_started, restart: started.append(on_started) or 0
    )
    argv = ["--data-dir", str(tmp_path / "lib"), "--weights", "random", "ui", "--open"]
    assert cli.main(argv) == 0
    assert started == [None], "nothing to open the page with"
    err = capsys.readouterr().err
    assert "searchapp: no graphical browser to open; open the address above" in err
    assert "serving http://127.0.0.1:8501" in err


def test_page_url_is_loopback_where_the_server_binds_every_address() -> None:
    from searchapp.ui.launch import page_url

    assert page_url("0.0.0.0", 8501) == "http://127.0.0.1:8501/"
    assert page_url("::", 8501) == "http://[::1]:8501/"
    assert page_url("192.168.1.5", 80) == "http://192.168.1.5:80/"


def test_find_browser_never_picks_a_text_browser_in_the_terminal(monkeypatch) -> None:  # noqa: ANN001
    import webbrowser

    from searchapp.ui.launch import find_browser

    monkeypatch.delenv("BROWSER", raising=False)
    for found, picked in [
        (webbrowser.GenericBrowser("lynx"), False),  # what webbrowser finds with only TERM set
        (webbrowser.BackgroundBrowser("xdg-open"), True),
        (webbrowser.Chrome("google-chrome"), True),
    ]:
        monkeypatch.setattr(webbrowser, "get", lambda found=found: found)
        assert (find_browser() is found) is picked, found.name
    monkeypatch.setenv("BROWSER", "my-viewer")  # the user's own choice is always taken
    monkeypatch.setattr(webbrowser, "get", lambda: webbrowser.GenericBrowser("my-viewer"))
    assert find_browser().name == "my-viewer"


def test_a_library_deleted_while_the_page_runs_is_said_and_let_go(
    monkeypatch, settings, embedder, photos
) -> None:  # noqa: ANN001
    """The page held the deleted SQLite file open and went on showing its 16 photos, and
    "Add and index" then wrote a new library the page did not show (second user trial)."""
    index_once(settings, embedder, photos)
    at = _app(monkeypatch, settings.data_dir).run()
    assert len(_tiles(at)) == 16
    shutil.rmtree(settings.data_dir)
    at.run()
    assert not at.exception
    assert any("was deleted or replaced while this page ran" in w.value for w in at.warning)
    assert "No photos are indexed yet" in _texts(at) and not _tiles(at)


def test_recent_search_chips_tell_alike_searches_apart() -> None:
    """Two chips once both read "dog (all)": one of them was sorted oldest first."""
    from searchapp.ui.search_view import _recent_label

    label = lambda params: _recent_label(None, params).replace("\\", "")  # noqa: E731
    assert label({"q": "dog", "all": "1"}) == "dog (all)"
    assert label({"q": "dog", "all": "1", "sort": "oldest"}) == "dog (all, oldest)"
    assert label({"q": "dog", "when": "2023", "fold": "1"}) == "dog (folded, filtered)"
    assert label({"q": "x" * 50}) == "x" * 39 + "…"


def test_undecodable_file_names_never_break_the_page(
    monkeypatch, settings, embedder, tmp_path
) -> None:  # noqa: ANN001
    """Names that are not UTF-8 (Python hands them over as lone surrogates, which a web
    page cannot carry) show with a replacement character wherever the page names them:
    a "more like" query, recent searches, the folder filter, Status's failed files. The
    query caption raised UnicodeEncodeError ("surrogates not allowed")."""
    import os

    root = tmp_path / os.fsdecode(b"ph\xf6tos")  # a photo folder with such a name too
    odd = root / os.fsdecode(b"d\xe9j\xe0")
    odd.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 10, 10)).save(odd / os.fsdecode(b"caf\xe9.jpg"))
    Image.new("RGB", (64, 48), (10, 200, 10)).save(root / "plain.jpg")
    (root / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"not a jpeg")
    index_once(settings, embedder, root)
    at = _app(monkeypatch, settings.data_dir).run()
    assert not at.exception
    cafe = next(t for t in _tiles(at) if t["path"].endswith(".jpg") and "caf" in t["path"])
    plain = next(t for t in _tiles(at) if t["path"].endswith("plain.jpg"))
    at.query_params["like"] = f"{cafe['photo_id']},{plain['photo_id']}"
    at.run()
    assert not at.exception, at.exception
    assert "caf\ufffd.jpg" in _texts(at), _texts(at)
    at.query_params.pop("like")
    at.run()
    _open_filters(at)
    assert not at.exception, at.exception
    folder = at.selectbox(key="folder")
    assert "ph\ufffdtos/d\ufffdj\ufffd  (1)" in folder.options, folder.options
    folder.set_value(str(odd)).run()  # into the URL too, which cannot carry the raw name
    assert not at.exception, at.exception
    assert [Path(t["path"]).parent for t in _tiles(at)] == [odd]
    at.run()  # the next run reads the folder back from the URL: still the same one
    assert [Path(t["path"]).parent for t in _tiles(at)] == [odd]
    at.session_state["folder"] = ""
    at.query_params["view"] = "status"
    at.run()
    assert not at.exception, at.exception


def test_a_data_folder_whose_name_is_not_utf8_opens_the_page(
    monkeypatch, embedder, tmp_path
) -> None:  # noqa: ANN001
    """The page keeps its library and model per settings; Streamlit's cache hashed the
    settings as UTF-8 and stopped the page on such a data folder (UnicodeEncodeError)."""
    import os

    from searchapp.config import ENCODER_PIXELS

    settings = load_settings(
        data_dir=tmp_path / os.fsdecode(b"lib\xe9"), encoder=ENCODER_PIXELS, weights="random"
    )
    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(root / "red.jpg")
    index_once(settings, embedder, root)
    at = _app(monkeypatch, settings.data_dir).run()
    assert not at.exception, at.exception
    assert _result_names(at) == ["red.jpg"]
    assert "1 photo, newest first" in _texts(at)
    # the banner's command names the folder as bash can take it back
    assert "searchapp --data-dir $'" + str(tmp_path) + "/lib\\xe9' ui" in _texts(at)
    at.query_params["view"] = "status"
    at.run()
    assert not at.exception, at.exception
    assert f"Library: {tmp_path}/lib\ufffd" in [t.value for t in at.text]  # in Status


def test_a_library_error_in_a_view_is_its_one_line_not_a_traceback() -> None:
    def page() -> None:
        import streamlit as st

        from searchapp.errors import StoreError
        from searchapp.ui.markdown import say_errors

        @say_errors
        def view() -> None:
            st.write("before")
            raise StoreError("the library file is damaged; see: searchapp status")

        view()
        st.caption("the rest of the page")

    at = st_testing.AppTest.from_function(page).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["the library file is damaged; see: searchapp status"]
    assert [c.value for c in at.caption] == ["the rest of the page"]


def test_a_pasted_folder_is_read_as_the_folder_it_names(tmp_path) -> None:
    from searchapp.ui.indexing import typed_folder

    spaced = tmp_path / "Urlaub Italien"
    spaced.mkdir()
    for pasted in (f" '{spaced}' ", f'"{spaced}"', spaced.as_uri(), f"file://localhost{spaced}",
                   str(spaced).replace(" ", "\\ "), str(spaced)):  # fmt: skip
        assert typed_folder(pasted) == str(spaced), pasted
    assert typed_folder(f"file://nas{spaced}") == f"file://nas{spaced}"  # not this computer's
    odd = tmp_path / "a\\ b"  # a real name with a backslash stays as it is
    odd.mkdir()
    assert typed_folder(str(odd)) == str(odd)


def test_a_photo_folder_is_removed_from_status_after_a_second_click(
    monkeypatch, settings, embedder, tmp_path
) -> None:  # noqa: ANN001
    """Status listed the folders with no way to remove one but the CLI (second trial)."""
    from searchapp.ui.status_view import remove_key

    first, second = tmp_path / "first", tmp_path / "second"
    for folder, names in ((first, ("rocket.jpg", "coffee.png")), (second, ("coins.png",))):
        folder.mkdir()
        for name in names:
            shutil.copy(DATA / name, folder / name)
    index_once(settings, embedder, first, second)
    at = _app(monkeypatch, settings.data_dir).run()
    at.session_state["tab"] = "Status"
    at.run()
    at.button(key=remove_key(str(first))).click().run()
    assert any("Remove " in w.value and "the files stay" in w.value for w in at.warning)
    at.button(key="remove-root-no").click().run()  # kept: nothing happened
    assert not any("the files stay" in w.value for w in at.warning)
    assert not at.exception and str(first) in [t.value for t in at.text]  # still listed
    at.button(key=remove_key(str(first))).click().run()
    for tab in ("Photos", "Status"):  # left unconfirmed: not asked again on coming back
        at.session_state["tab"] = tab
        at.run()
    assert not any("the files stay" in w.value for w in at.warning)
    at.button(key=remove_key(str(first))).click().run()
    at.button(key="remove-root-yes").click().run()
    assert not at.exception
    said = _texts(at).replace("\\", "")
    assert f"Removed {first} and its 2 photos from the library; the files are untouched" in said
    assert (first / "rocket.jpg").exists()
    at.session_state["tab"] = "Photos"
    at.run()
    assert [Path(t["path"]).name for t in _tiles(at)] == ["coins.png"]


def test_a_data_folder_that_cannot_hold_a_library_is_said_at_once(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    """The page offered "Add and index" there and said why not only after the click (second
    trial: a read-only disk). Here the folder's parent is a file, which root cannot write
    into either (the test runs as root, for whom file modes do not count)."""
    from searchapp.datadir import can_create_in

    (tmp_path / "notes.txt").write_text("not a folder")
    data = tmp_path / "notes.txt" / "lib"
    assert can_create_in(tmp_path / "new" / "lib") and not can_create_in(data)
    at = _app(monkeypatch, data).run()
    assert not at.exception
    assert any(f"cannot create a library in {data}" in e.value.replace("\\", "") for e in at.error)
    assert not [t for t in at.text_input if t.key == "add-path"]  # nothing offered to click
