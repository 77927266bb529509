"""The page's photo routes: thumbnails, previews, originals, details, zips, "show folder".

They sit beside Streamlit's own routes in the same ``st.App`` (``server.py``), so the
``AccessGuard`` in front of every route checks them too. Tiles and the viewer load images
by URL (the browser caches them), never as data inside the page's messages:

- ``GET /photo/thumb/<hash>``: the cached thumbnail of a content; immutable;
- ``GET /photo/thumbs?h=<hash>,<hash>``: up to 60 of them in one body, their sizes in
  ``X-Thumb-Sizes`` (0: none), for a grid's first screen;
- ``GET /photo/preview/<id>``: a large EXIF-oriented JPEG (<= 1600 px), kept in memory;
- ``GET /photo/original/<id>``: the original through ``Library.photo_file`` (``?download=1``
  as an attachment);
- ``GET /photo/info/<id>``: the viewer's side panel as JSON;
- ``GET /photo/zip?ids=1,2``: chosen originals as one zip, streamed (at most 500);
- ``POST /photo/reveal/<id>``: open the containing folder in this computer's file manager.
"""

from __future__ import annotations

import functools
import io
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from searchapp.config import load_settings
from searchapp.errors import PhotoNotFoundError, SearchAppError
from searchapp.library import Library
from searchapp.ui.markdown import web_text


class _Json(JSONResponse):
    """JSON in ASCII: a file name's undecodable bytes (lone surrogates) go out as \\u
    escapes, which UTF-8 cannot carry (Starlette's own JSONResponse raised on them)."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


_HASH = re.compile(r"^[0-9a-f]{16,128}$")
ZIP_MAX_PHOTOS = 500  # the gallery says so before a bigger selection is asked for
ZIP_CHUNK = 1 << 20
UNREAD_NOTE = "NOT INCLUDED.txt"
IMMUTABLE = "private, max-age=31536000, immutable"
NO_STORE = {"Cache-Control": "no-store"}
PREVIEW_CACHE = {"Cache-Control": "private, max-age=600"}
# an original is served as the bytes it is, never as a page: no sniffing, no scripts
_ORIGINAL_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
    "Cache-Control": "private, no-cache",
}


@functools.cache
def _open_library() -> Library:
    return Library(load_settings())


def _library() -> Library:
    """The server process's own read-only library (the settings ``searchapp ui`` passed);
    one stat a request lets go of a library file that was deleted or replaced, whose ids
    would now name other photos."""
    library = _open_library()
    library.reopen_if_replaced()
    return library


@functools.lru_cache(maxsize=48)
def _preview(path: str, mtime_ns: int, content_hash: str) -> bytes:
    # the key holds what the index knows of the file: an edited photo is decoded again,
    # even one copied over with its old modification time kept (cp -p, rsync -t)
    return _library().preview_jpeg(path)


_ID = re.compile(r"[0-9]{1,18}")  # below SQLite's largest row id (2**63 - 1)


def _photo_id(text: object) -> int | None:
    return int(text) if _ID.fullmatch(str(text)) else None


def _record(request: Request):  # noqa: ANN202 - PhotoRecord | None
    photo_id = _photo_id(request.path_params["photo_id"])
    try:
        return None if photo_id is None else _library().photo(photo_id)
    except SearchAppError:  # no library yet, or a damaged one: nothing to serve
        return None


THUMBS_MAX = 60  # one screen of tiles, and a bound on what one request reads


async def thumbs(request: Request) -> Response:
    # a grid's first screen in one response: its ~24 thumbnails as one round trip instead
    # of four rounds on the browser's six connections; the sizes header splits the body
    hashes = request.query_params.get("h", "").split(",")
    if not 0 < len(hashes) <= THUMBS_MAX or not all(_HASH.match(h) for h in hashes):
        return _refused(404, f"ask for 1 to {THUMBS_MAX} content hashes")
    parts = [_thumb_bytes(h) or b"" for h in hashes]
    # kept only when whole: a thumbnail missing now (being made, or rebuilt from Status)
    # must come with the next load of this screen
    cache = IMMUTABLE if all(parts) else "no-store"
    return Response(
        b"".join(parts), media_type="application/octet-stream",
        headers={"Cache-Control": cache, "X-Thumb-Sizes": ",".join(str(len(p)) for p in parts)},
    )  # fmt: skip


def _thumb_bytes(content_hash: str) -> bytes | None:
    path = _library().thumbnail(content_hash)
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


async def thumb(request: Request) -> Response:
    # read on the event loop: a thumbnail is a few KB in the data folder, and a grid asks for
    # sixty at once; a sync route and FileResponse hop to a worker thread for the route, the
    # stat, the open and each read, which made each one wait ~50 ms in such a burst
    content_hash = request.path_params["content_hash"]
    data = _thumb_bytes(content_hash) if _HASH.match(content_hash) else None
    if data is None:
        return _refused(404, "no thumbnail; Status offers to rebuild missing ones")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": IMMUTABLE})


def preview(request: Request) -> Response:
    record = _record(request)
    if record is None:
        return _refused(404, "no such photo")
    try:
        data = _preview(record.path, record.mtime_ns, record.content_hash)
    except SearchAppError as err:
        return _refused(404, str(err))
    return Response(data, media_type="image/jpeg", headers=PREVIEW_CACHE)


def original(request: Request) -> Response:
    library = _library()
    record = _record(request)
    if record is None:
        return _refused(404, "no such photo")
    try:
        real = library.photo_file(record.path)
    except SearchAppError as err:
        return _refused(404, str(err))
    kind = mimetypes.guess_type(real.name)[0] or "application/octet-stream"
    if not kind.startswith("image/") or kind == "image/svg+xml":
        kind = "application/octet-stream"
    attach = "attachment" if request.query_params.get("download") else "inline"
    return FileResponse(
        real, media_type=kind, headers=_ORIGINAL_HEADERS, filename=web_text(real.name),
        content_disposition_type=attach,
    )  # fmt: skip


def info(request: Request) -> Response:
    photo_id = _photo_id(request.path_params["photo_id"])
    try:
        details = None if photo_id is None else _library().photo_info(photo_id)
    except SearchAppError as err:  # the library cannot be read: not "no such photo"
        return _refused(503, str(err))
    if details is None:
        return _refused(404, "no such photo")
    r = details.record
    return _Json(
        {
            "id": r.id,
            "name": Path(r.path).name,
            "path": r.path,
            "relative": details.relative,
            "folder": str(Path(details.relative).parent),
            "taken_at": r.taken_at,
            "camera": r.camera,
            "width": r.width,
            "height": r.height,
            "size": r.size,
            "format": r.format,
            "copies": details.copies,
            "gps": list(details.gps) if details.gps else None,
            "unavailable": details.unavailable,
        },  # fmt: skip
        headers=NO_STORE,
    )


def zip_photos(request: Request) -> Response:
    """The chosen originals as one zip, streamed: a file at a time, never whole in memory.

    Every photo is checked through the access guard before the first byte goes out; one
    refused, or more than ``ZIP_MAX_PHOTOS``, refuses the zip with a one-line message.
    With ``check=1`` only the checks run (the page shows a refusal, which a browser's
    download would drop without a word).
    """
    raw = request.query_params.get("ids", "")
    ids = list(dict.fromkeys(i for i in map(_photo_id, raw.split(",")) if i is not None))
    if not ids:
        return _refused(400, "Select one photo or more to download them as a zip.")
    if len(ids) > ZIP_MAX_PHOTOS:
        return _refused(
            413, f"{len(ids):,} photos chosen; a zip holds at most {ZIP_MAX_PHOTOS:,}: "
            "select fewer and download them in parts.",
        )  # fmt: skip
    library, names, files = _library(), set(), []
    for pid in ids:
        try:
            record = library.photo(pid)
        except SearchAppError as err:  # no library, or a damaged one, as the info route
            return _refused(503, str(err))
        if record is None:
            return _refused(404, f"Photo {pid} is no longer in the library; clear the selection.")
        try:
            real = library.photo_file(record.path)
        except PhotoNotFoundError:  # gone from its folder: the zip says so inside
            real = Path(record.path)
        except SearchAppError as err:
            return _refused(403, f"{Path(record.path).name} cannot be downloaded: {err}")
        files.append((real, _unique(_entry_name(record.path), names)))
    if request.query_params.get("check") == "1":  # the page asks first: a refused download says
        return Response("ok\n", media_type="text/plain", headers=NO_STORE)  # nothing
    return StreamingResponse(
        _zip_stream(files),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="photos.zip"', **NO_STORE},
    )  # fmt: skip


def _big(path: Path) -> bool:
    # sizes are written after the data here; past 2 GiB the entry needs zip64 from its start
    try:
        return path.stat().st_size >= zipfile.ZIP64_LIMIT
    except OSError:
        return False


def _refused(status: int, message: str) -> Response:
    """A one-line refusal; a name's undecodable bytes in it as U+FFFD (UTF-8 cannot carry
    them: the response raised instead)."""
    return Response(web_text(message) + "\n", status, media_type="text/plain", headers=NO_STORE)


class _Chunks(io.RawIOBase):
    """A write-only, unseekable sink: zipfile writes into it, the response takes what it
    holds after each piece (zipfile then records sizes after each file's data)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: ANN001 - bytes-like
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _zip_stream(files: list[tuple[Path, str]]) -> Iterator[bytes]:
    sink = _Chunks()
    unread: list[str] = []
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:  # photos do not compress
        for real, name in files:
            try:
                with (
                    real.open("rb") as src,
                    archive.open(name, "w", force_zip64=_big(real)) as dest,
                ):
                    while chunk := src.read(ZIP_CHUNK):
                        dest.write(chunk)
                        yield sink.take()
            except OSError:  # gone since the check (a drive unplugged): said inside the zip
                unread.append(name)
            yield sink.take()
        if unread:
            archive.writestr(UNREAD_NOTE, "Could not be read when the zip was made:\n"
                             + "\n".join(unread) + "\n")  # fmt: skip
    yield sink.take()


def _entry_name(path: str) -> str:
    # a Linux name may hold a backslash or a colon, which unzip tools elsewhere read as a
    # folder or a drive (an entry named "..", backslash, "x.jpg" would land outside)
    name = web_text(Path(path).name)  # undecodable bytes: zipfile writes UTF-8 names
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name) or "photo"


def _unique(name: str, taken: set[str]) -> str:
    # compared without case: unpacked on Windows or macOS, "a.JPG" would overwrite "a.jpg"
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}).{ext}" if dot else f"{name} ({n})"
    taken.add(candidate.casefold())
    return candidate


def reveal(request: Request) -> Response:
    library = _library()
    record = _record(request)
    if record is None:
        return _Json({"ok": False, "message": "This photo is no longer in the library."})
    try:
        folder = library.photo_file(record.path).parent
    except SearchAppError as err:
        return _Json({"ok": False, "message": str(err)})
    try:
        ok, message = reveal_folder(folder)
    except OSError as err:  # the opener is there but would not start
        ok, message = False, f"Could not open the folder ({err.strerror or err}); copy the path."
    return _Json({"ok": ok, "message": message})


def reveal_folder(folder: Path) -> tuple[bool, str]:
    """Open ``folder`` in this computer's file manager; (False, why) where that cannot be."""
    if sys.platform == "win32":
        os.startfile(folder)  # type: ignore[attr-defined]  # noqa: S606
        return True, "Opened in Explorer."
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if sys.platform != "darwin" and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False, "No desktop on the computer running searchapp; copy the path instead."
    if shutil.which(opener) is None:
        return False, f"No file manager here ({opener} is missing); copy the path instead."
    proc = subprocess.Popen(
        [opener, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    # Its own session: stopping the page (its process group) leaves the file manager open.
    # Reaped in the background: the opener returns soon, and leaves no zombie behind.
    threading.Thread(target=proc.wait, name="searchapp-reveal", daemon=True).start()
    return True, "Opened on the computer running searchapp."


def library_state(request: Request) -> Response:  # noqa: ARG001 - a route's signature
    """What the grid polls (``gallery.js``) to offer photos indexed since it was drawn:
    the library's generation and its indexed photos, one cheap read."""
    library = _library()
    try:
        state = {"generation": library.generation(), "photos": library.photo_count()}
    except SearchAppError as err:
        return _refused(503, str(err))
    return _Json(state, headers=NO_STORE)


def media_routes() -> list[Route]:
    """The routes above, for ``st.App(routes=...)``."""
    return [
        Route("/photo/thumb/{content_hash}", thumb),
        Route("/photo/thumbs", thumbs),
        Route("/photo/preview/{photo_id:int}", preview),
        Route("/photo/original/{photo_id:int}", original),
        Route("/photo/info/{photo_id:int}", info),
        Route("/photo/zip", zip_photos),
        Route("/photo/reveal/{photo_id:int}", reveal, methods=["POST"]),
        Route("/photo/library", library_state),
    ]
