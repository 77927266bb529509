"""The viewer's and the selection's server actions (``ui/media.py``), over real HTTP.

The ``/photo/*`` routes run in a uvicorn server on a loopback port in this process (so the
process tree the "open folder" action leaves behind is this test's own), over an indexed
copy of ``data/``; the guard in front of them is tested in ``test_ui_guard*.py``.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import sqlite3
import sys
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from searchapp.config import load_settings
from searchapp.ui import media
from tests.conftest import DATA
from tests.helpers import PIXELS_ENV, free_port, holds_for, index_once, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory, pixel_embedder):  # noqa: ANN001, ANN201
    import uvicorn
    from starlette.applications import Starlette

    base = tmp_path_factory.mktemp("media")
    photos, outside = base / "photos", base / "outside"
    shutil.copytree(DATA, photos / "2023", ignore=shutil.ignore_patterns("*.md"))
    shutil.copy(photos / "2023" / "coffee.png", photos / "coffee.png")  # a second coffee.png
    outside.mkdir()
    shutil.copy(DATA / "rocket.jpg", outside / "private.jpg")
    shutil.copy(DATA / "grass.png", photos / "swapped.png")
    (photos / "odd").mkdir()  # a name that is not UTF-8 (a lone surrogate in Python)
    shutil.copy(DATA / "coins.png", photos / "odd" / os.fsdecode(b"caf\xe9.png"))
    settings = load_settings(data_dir=base / "lib", encoder="pixels", weights="random")
    index_once(settings, pixel_embedder, photos)
    # indexed, then swapped for a link to a file outside every photo folder
    (photos / "swapped.png").unlink()
    (photos / "swapped.png").symlink_to(outside / "private.jpg")

    with pytest.MonkeyPatch.context() as env:
        for name, value in {**PIXELS_ENV, "SEARCHAPP_DATA_DIR": str(settings.data_dir)}.items():
            env.setenv(name, value)
        media._open_library.cache_clear()  # the route's library comes from these settings
        port = free_port()
        web = uvicorn.Server(
            uvicorn.Config(Starlette(routes=media.media_routes()), host="127.0.0.1", port=port,
                           log_level="warning", lifespan="off")
        )  # fmt: skip
        thread = threading.Thread(target=web.run, daemon=True)
        thread.start()
        wait_for(lambda: web.started, "the media routes' server")
        with sqlite3.connect(settings.db_path) as db:
            rows = db.execute("SELECT id, path FROM photos WHERE status = 'indexed'").fetchall()
        ids = {Path(path).relative_to(photos).as_posix(): pid for pid, path in rows}
        try:
            yield SimpleNamespace(port=port, ids=ids, photos=photos, base=base, settings=settings)
        finally:
            web.should_exit = True
            thread.join(timeout=30)
            media._open_library.cache_clear()


def _call(server, method: str, path: str) -> tuple[int, str, bytes]:  # noqa: ANN001
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def _reveal(server, name: str) -> dict:  # noqa: ANN001
    status, kind, body = _call(server, "POST", f"/photo/reveal/{server.ids[name]}")
    assert status == 200 and kind == "application/json"
    return json.loads(body)


def _children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def test_open_folder_without_a_desktop_says_so_in_one_line(server, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    before = {p.pid for p in _children()}
    answer = _reveal(server, "2023/rocket.jpg")
    assert answer == {
        "ok": False,
        "message": "No desktop on the computer running searchapp; copy the path instead.",
    }
    monkeypatch.setenv("DISPLAY", ":0")  # a desktop, but no opener on the PATH
    monkeypatch.setenv("PATH", str(server.base / "empty"))
    answer = _reveal(server, "2023/rocket.jpg")
    assert not answer["ok"] and answer["message"] == (
        "No file manager here (xdg-open is missing); copy the path instead."
    )
    assert {p.pid for p in _children()} == before, "nothing was started"
    assert _call(server, "GET", f"/photo/reveal/{server.ids['2023/rocket.jpg']}")[0] == 405


@pytest.mark.skipif(sys.platform != "linux", reason="the opener checked is xdg-open")
def test_open_folder_starts_the_file_manager_detached_and_reaps_it(server, monkeypatch) -> None:  # noqa: ANN001
    bin_dir, seen = server.base / "bin", server.base / "opened.json"
    bin_dir.mkdir(exist_ok=True)
    opener = bin_dir / "xdg-open"
    opener.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'folder': sys.argv[1], 'sid': os.getsid(0)}}, open({str(seen)!r}, 'w'))\n"
    )
    opener.chmod(0o755)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    answer = _reveal(server, "2023/rocket.jpg")
    assert answer == {"ok": True, "message": "Opened on the computer running searchapp."}
    opened = json.loads(wait_for(lambda: seen.exists() and seen.read_text(), "the opener"))
    assert opened["folder"] == str(server.photos / "2023")
    assert opened["sid"] != os.getsid(0), "its own session: stopping the page leaves it be"

    def an_opener(p: psutil.Process) -> bool:
        try:
            return "xdg-open" in " ".join(p.cmdline() or [p.name()]) or (
                p.status() == psutil.STATUS_ZOMBIE
            )
        except psutil.NoSuchProcess:  # reaped between the listing and this look
            return False

    def no_opener_left() -> bool:  # exited and reaped: not even a zombie in our tree
        return not [p for p in _children() if an_opener(p)]

    wait_for(no_opener_left, "the opener to be reaped")
    holds_for(no_opener_left, "no stray opener", 0.5)


def test_open_folder_refuses_a_photo_outside_the_photo_folders(server, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DISPLAY", ":0")
    before = {p.pid for p in _children()}
    answer = _reveal(server, "swapped.png")  # now a link to a file outside every root
    assert not answer["ok"] and "not inside an indexed folder" in answer["message"]
    assert "\n" not in answer["message"]
    gone = json.loads(_call(server, "POST", "/photo/reveal/999999")[2])
    assert gone == {"ok": False, "message": "This photo is no longer in the library."}
    assert {p.pid for p in _children()} == before


def test_a_zip_of_several_photos_streams_with_their_names(server) -> None:  # noqa: ANN001
    chosen = ["2023/rocket.jpg", "2023/coffee.png", "coffee.png", "2023/grass.png"]
    ids = ",".join(str(server.ids[n]) for n in chosen)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/photo/zip?ids={ids}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "application/zip"
        assert resp.getheader("Transfer-Encoding") == "chunked", "streamed, not built whole"
        assert resp.getheader("Content-Disposition") == 'attachment; filename="photos.zip"'
        body = resp.read()
    finally:
        conn.close()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["rocket.jpg", "coffee.png", "coffee (2).png", "grass.png"]
        for name, source in zip(archive.namelist(), chosen, strict=True):
            assert archive.read(name) == (server.photos / source).read_bytes()


def test_a_zip_refuses_photos_outside_the_guard_and_too_many(server, monkeypatch) -> None:  # noqa: ANN001
    ok = server.ids["2023/rocket.jpg"]
    status, kind, body = _call(server, "GET", f"/photo/zip?ids={ok},{server.ids['swapped.png']}")
    assert status == 403 and kind.startswith("text/plain")
    text = body.decode()
    assert text.startswith("swapped.png cannot be downloaded: ") and text.count("\n") == 1
    assert "not inside an indexed folder" in text
    # the page asks first (check=1): the same refusal, and "ok" without a zip when allowed
    checked = _call(server, "GET", f"/photo/zip?ids={ok},{server.ids['swapped.png']}&check=1")
    assert checked[:2] == (403, kind) and checked[2] == body
    assert _call(server, "GET", f"/photo/zip?ids={ok}&check=1")[::2] == (200, b"ok\n")

    monkeypatch.setattr(media, "ZIP_MAX_PHOTOS", 2)
    three = ",".join(
        str(server.ids[n]) for n in ("2023/rocket.jpg", "coffee.png", "2023/grass.png")
    )
    status, _, body = _call(server, "GET", f"/photo/zip?ids={three}")
    assert status == 413
    assert body.decode() == (
        "3 photos chosen; a zip holds at most 2: select fewer and download them in parts.\n"
    )
    assert _call(server, "GET", "/photo/zip?ids=")[0] == 400


def test_a_screen_of_thumbnails_comes_in_one_response(server) -> None:  # noqa: ANN001
    """``/photo/thumbs``: the thumbnails asked for, in order, their sizes in a header (0 for
    a content without one); anything but 1 to 60 hashes is refused."""
    with sqlite3.connect(server.base / "lib" / "library.sqlite3") as db:
        hashes = [h for (h,) in db.execute("SELECT DISTINCT content_hash FROM photos"
                                           " WHERE content_hash IS NOT NULL LIMIT 3")]  # fmt: skip
    asked = [hashes[0], "0" * 32, hashes[1], hashes[2]]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/photo/thumbs?h=" + ",".join(asked))
        resp = conn.getresponse()
        body, sizes = resp.read(), [int(n) for n in resp.getheader("X-Thumb-Sizes").split(",")]
    finally:
        conn.close()
    assert resp.status == 200 and sizes[1] == 0 and len(sizes) == 4
    assert resp.getheader("Cache-Control") == "no-store", "one is missing: not kept"
    parts, at = [], 0
    for n in sizes:
        parts.append(body[at : at + n])
        at += n
    assert at == len(body)
    for h, part in zip(asked, parts, strict=True):
        if h != "0" * 32:
            assert part == _call(server, "GET", f"/photo/thumb/{h}")[2] and part[:2] == b"\xff\xd8"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/photo/thumbs?h=" + ",".join(hashes))
        assert conn.getresponse().getheader("Cache-Control") == media.IMMUTABLE
    finally:
        conn.close()
    assert _call(server, "GET", "/photo/thumbs?h=" + ",".join([hashes[0]] * 61))[0] == 404
    assert _call(server, "GET", "/photo/thumbs?h=../secret")[0] == 404
    assert _call(server, "GET", "/photo/thumbs")[0] == 404


def _accepted_nodelay(bind) -> int:  # noqa: ANN001 - Streamlit's _bind_socket
    import socket

    listener = bind("127.0.0.1", 0, 8)
    client = socket.create_connection(listener.getsockname()[:2])
    listener.setblocking(True)
    accepted, _ = listener.accept()
    try:
        return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        for s in (accepted, client, listener):
            s.close()


def test_the_page_server_listens_with_nagle_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """``searchapp ui`` runs Streamlit through ``page_process``, whose listening socket, and
    so every connection it accepts, sends at once (TCP_NODELAY): Streamlit's own socket
    leaves it off, and a thumbnail's body then waited for the browser's delayed ACK (40 ms)
    on a kept-alive connection."""
    from streamlit.web.server.starlette import starlette_server

    from searchapp.ui.page_process import turn_nagle_off

    monkeypatch.setattr(starlette_server, "_bind_socket", starlette_server._bind_socket)
    assert _accepted_nodelay(starlette_server._bind_socket) == 0  # Streamlit alone
    assert turn_nagle_off()
    assert _accepted_nodelay(starlette_server._bind_socket) != 0


def test_ids_beyond_the_library_and_gone_files_get_a_clear_answer(server) -> None:  # noqa: ANN001
    huge = "99999999999999999999"  # past SQLite's integers: not a crash, not found
    for route in ("original", "preview", "info"):
        assert _call(server, "GET", f"/photo/{route}/{huge}")[0] == 404
    assert _call(server, "GET", f"/photo/zip?ids=%C2%B2,{huge}")[0] == 400
    photo = server.photos / "2023" / "astronaut.jpg"
    photo.rename(server.base / "astronaut.away")  # moved away since it was indexed
    try:
        gone = server.ids["2023/astronaut.jpg"]
        status, kind, body = _call(server, "GET", f"/photo/original/{gone}")
        assert status == 404 and kind.startswith("text/plain")
        assert "astronaut.jpg is no longer there" in body.decode()
        ids = f"{server.ids['2023/rocket.jpg']},{gone}"
        status, _, body = _call(server, "GET", f"/photo/zip?ids={ids}")
        assert status == 200, "the others still come, the zip says what is missing"
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.namelist() == ["rocket.jpg", media.UNREAD_NOTE]
            assert "astronaut.jpg" in archive.read(media.UNREAD_NOTE).decode()
    finally:
        (server.base / "astronaut.away").rename(photo)


def test_zip_entry_names_unpack_safely_everywhere() -> None:
    taken: set[str] = set()
    names = ["/p/..\\..\\evil.jpg", "/p/a:b.jpg", "/p/IMG.jpg", "/p/img.JPG", "/p/img.jpg"]
    assert [media._unique(media._entry_name(n), taken) for n in names] == [
        ".._.._evil.jpg", "a_b.jpg", "IMG.jpg", "img (2).JPG", "img (3).jpg",
    ]  # fmt: skip


def test_a_photo_copied_over_with_its_old_time_gets_a_new_preview(server, pixel_embedder) -> None:  # noqa: ANN001
    """``cp -p`` or ``rsync -t`` over a photo keeps its modification time: the viewer's
    preview must still be the new picture (the cache is keyed by the indexed content)."""
    photo = server.photos / "edited" / "photo.png"
    photo.parent.mkdir()
    try:
        shutil.copy(DATA / "coffee.png", photo)  # 600x400
        index_once(server.settings, pixel_embedder, server.photos)
        first_id, first = _preview_size(server, photo)
        kept = photo.stat()
        shutil.copy(DATA / "coins.png", photo)  # 384x303
        os.utime(photo, ns=(kept.st_atime_ns, kept.st_mtime_ns))
        index_once(server.settings, pixel_embedder, server.photos)
        again_id, again = _preview_size(server, photo)
        assert again_id == first_id, "the same file, updated in place"
        assert first == (600, 400) and again == (384, 303)
    finally:  # the module's library as the other tests know it
        shutil.rmtree(photo.parent)
        index_once(server.settings, pixel_embedder, server.photos)


def _preview_size(server, photo: Path) -> tuple[int, tuple[int, int]]:  # noqa: ANN001
    """(photo id, size of the viewer's preview) of an indexed photo."""
    from PIL import Image

    with sqlite3.connect(server.settings.db_path) as db:
        (pid,) = db.execute("SELECT id FROM photos WHERE path = ?", (str(photo),)).fetchone()
    status, _, body = _call(server, "GET", f"/photo/preview/{pid}")
    assert status == 200, body
    return pid, Image.open(io.BytesIO(body)).size


def test_the_library_state_the_grid_polls(server) -> None:  # noqa: ANN001
    """``/photo/library``: the generation and indexed photos, as the Library says them."""
    from searchapp.library import Library

    status, kind, body = _call(server, "GET", "/photo/library")
    assert status == 200 and kind == "application/json"
    with Library(server.settings) as library:
        assert json.loads(body) == {"generation": library.generation(),
                                    "photos": library.photo_count()}  # fmt: skip


def test_a_name_that_is_not_utf8_is_served_everywhere(server) -> None:  # noqa: ANN001
    """Its details (JSON), its original as a download, and a zip: each raised
    UnicodeEncodeError on the name's lone surrogate (a 500 or a broken stream)."""
    pid = server.ids["odd/caf\uf8ffe9.png"]  # the store's escape of the byte 0xe9
    status, kind, body = _call(server, "GET", f"/photo/info/{pid}")
    assert status == 200 and kind == "application/json"
    assert json.loads(body)["name"] == os.fsdecode(b"caf\xe9.png")  # the exact name back
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/photo/original/{pid}?download=1")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == (DATA / "coins.png").read_bytes()
        assert "caf%EF%BF%BD.png" in resp.getheader("Content-Disposition")
    finally:
        conn.close()
    status, _, body = _call(server, "GET", f"/photo/zip?ids={pid}")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert status == 200 and archive.namelist() == ["caf\ufffd.png"]
    (server.photos / "odd" / os.fsdecode(b"caf\xe9.png")).unlink()  # a refusal naming it
    status, _, body = _call(server, "GET", f"/photo/preview/{pid}")
    assert status == 404 and "caf\ufffd.png" in body.decode(), body


def test_the_routes_let_go_of_a_library_that_was_replaced(
    tmp_path, pixel_embedder, monkeypatch
) -> None:  # noqa: ANN001
    """Ids restart at 1 in a new library file: the routes' long-lived library kept reading
    the deleted one, so photo 1 named the old library's first photo."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, name in ((first, "rocket.jpg"), (second, "coffee.png")):
        folder.mkdir()
        shutil.copy(DATA / name, folder / name)
    settings = load_settings(data_dir=tmp_path / "lib", encoder="pixels", weights="random")
    for name, value in {**PIXELS_ENV, "SEARCHAPP_DATA_DIR": str(settings.data_dir)}.items():
        monkeypatch.setenv(name, value)
    media._open_library.cache_clear()
    try:
        index_once(settings, pixel_embedder, first)
        assert Path(media._library().photo(1).path).name == "rocket.jpg"
        shutil.rmtree(settings.data_dir)  # the user starts over with another folder
        index_once(settings, pixel_embedder, second)
        assert Path(media._library().photo(1).path).name == "coffee.png"
    finally:
        media._open_library.cache_clear()
