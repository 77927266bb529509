"""The engine: the watcher's model and library, served on ``<data dir>/engine.sock``.

HTTP+JSON (Starlette on uvicorn) over a Unix socket that only its owner can open: the
socket is 0600 inside the 0700 data folder, and it is bound here rather than by uvicorn,
which would make it 0666. Searches go through the daemon's own read-only ``Library``
(SQLite WAL reads never wait on the writer) and its one model, so the CLI and the page
need no model of their own. Endpoints and fields: docs/API.md.

Bad requests (not JSON, unknown fields, wrong types, too large, not an image) get a 4xx
JSON error naming the problem; nothing a client sends can stop the daemon.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from searchapp import errors
from searchapp.atomic import write_atomic
from searchapp.config import Settings, command_for
from searchapp.datadir import PRIVATE_FILE_MODE
from searchapp.engine_client import (
    API,
    LOOPBACK,
    endpoint_path,
    engine_transport,
    model_identity,
    read_endpoint,
    socket_path,
)
from searchapp.engine_requests import (
    EncodeRequest,
    SearchRequest,
    encode_request,
    parse_body,
    search_request,
)
from searchapp.library import Library
from searchapp.query import QueryPart, parse_query

log = logging.getLogger("searchapp.engine")

SMALL_BODY = 64 * 1024  # JSON around an upload: fields, filters, identity
_STATUS = {  # HTTP status of each error the library raises about a request
    errors.RequestError: 400,
    errors.AccessDeniedError: 403,
    errors.PhotoNotFoundError: 404,
    errors.QueryError: 422,
    errors.ImageDecodeError: 422,
}


class BodyTooLarge(errors.RequestError):
    """A body over the engine's limit (HTTP 413)."""


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status)


def _status_of(err: errors.SearchAppError) -> int:
    if isinstance(err, BodyTooLarge):
        return 413
    for kind in type(err).__mro__:
        if kind in _STATUS:
            return _STATUS[kind]
    return 503  # the library itself cannot answer: the client does the work and says why


class Engine:
    """The endpoints over one ``Library`` and its model; Starlette app in ``app``."""

    def __init__(self, settings: Settings, library: Library) -> None:
        self.settings = settings
        self.library = library
        self.max_body = settings.max_upload_mb * 2**20 * 4 // 3 + SMALL_BODY  # base64
        self.app = Starlette(
            routes=[
                Route(f"{API}/health", self.health, methods=["GET"]),
                Route(f"{API}/status", self.status, methods=["GET"]),
                Route(f"{API}/search", self.search, methods=["POST"]),
                Route(f"{API}/encode", self.encode, methods=["POST"]),
            ]
        )

    async def health(self, _request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "pid": os.getpid()})

    async def status(self, _request: Request) -> JSONResponse:
        return JSONResponse(self.model_state())

    def model_state(self) -> dict:
        """Which model this daemon serves and whether it is in memory now."""
        embedder = self.library.embedder
        return {
            "pid": os.getpid(),
            "identity": model_identity(self.settings),
            "model_id": self.library.model_id,
            "model_loaded": bool(getattr(embedder, "is_loaded", True)),
            "idle_unload_s": self.settings.idle_unload_s,
            "device": getattr(embedder, "device", "cpu"),
            "precision": getattr(embedder, "precision", "fp32"),
        }

    async def search(self, request: Request) -> JSONResponse:
        return await self._answer(request, search_request, self.run_search)

    async def encode(self, request: Request) -> JSONResponse:
        return await self._answer(request, encode_request, self.run_encode)

    async def _answer(
        self, request: Request, parse: Callable[[dict], object], run: Callable[[object], dict]
    ) -> JSONResponse:
        try:
            body = parse_body(await self._read_body(request))
            if body.get("identity") != model_identity(self.settings):
                return _error(409, "OtherModel", "this watcher serves another model.")
            typed = parse(body)
            return JSONResponse(await run_in_threadpool(run, typed))
        except errors.SearchAppError as err:
            return _error(_status_of(err), type(err).__name__, str(err))
        except Exception as err:  # noqa: BLE001 - one bad request never stops the daemon
            log.exception("engine: request failed")
            return _error(500, "InternalError", f"the watcher failed: {err}")

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge(self._too_large())
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(self._too_large())
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> str:
        return (
            f"the request is over the watcher's limit ({self.max_body // 2**20} MB); send a "
            "smaller image or raise SEARCHAPP_MAX_UPLOAD_MB for the watcher."
        )

    def run_search(self, req: SearchRequest) -> dict:
        """One page of results, as ``Library.query`` gives it (blocking; a worker thread)."""
        if req.like is not None:
            parts = [QueryPart("photo", self.library.resolve_photo(req.like))]
        else:
            parts = _parts(req)
        skip = req.like is not None if req.skip_query_photos is None else req.skip_query_photos
        page = self.library.query(
            parts, k=req.k, offset=req.offset, flt=req.filters, cutoff=req.cutoff,
            sort=req.sort, skip_query_photos=skip,
        )  # fmt: skip
        return {
            "results": [r.as_dict() for r in page.results],
            "total": page.total,
            "hidden": page.hidden,
            "threshold": page.threshold,
            "offset": page.offset,
            "sort": page.sort,
            "model_id": self.library.model_id,
        }

    def run_encode(self, req: EncodeRequest) -> dict:
        """The query vector of a text or an image (blocking; a worker thread)."""
        vector = self.library.encode(_parts(req))
        return {"vector": vector.tolist(), "model_id": self.library.model_id, "dim": len(vector)}


def _parts(req: SearchRequest | EncodeRequest) -> list[QueryPart]:
    if req.text is not None:
        if isinstance(req, SearchRequest):
            return parse_query(req.text)  # the query language, as the CLI and page send it
        return [QueryPart("text", req.text)]
    if req.image_bytes is not None:
        return [QueryPart("image", req.image_bytes)]
    return [QueryPart("image", str(req.image_path))]


class EngineServer:
    """Serves an :class:`Engine` in a background thread until :meth:`stop`: on the Unix
    socket, or on a loopback port behind a per-start token (``engine_transport``)."""

    def __init__(self, engine: Engine) -> None:
        import uvicorn

        self.engine = engine
        self.transport = engine_transport(engine.settings)
        where = socket_path if self.transport == "unix" else endpoint_path
        self.path = where(engine.settings)
        self._token = secrets.token_urlsafe(32)
        app = engine.app if self.transport == "unix" else TokenGuard(engine.app, self._token)
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off",
            limit_concurrency=64, timeout_keep_alive=5, h11_max_incomplete_event_size=SMALL_BODY,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (replacing a stale socket or endpoint file) and serve in a daemon thread."""
        if self.transport == "unix":
            sock = bind_private_socket(self.path)
        else:
            sock = bind_loopback()
            port = sock.getsockname()[1]
            endpoint = {"port": port, "token": self._token, "pid": os.getpid()}
            write_atomic(self.path, json.dumps(endpoint).encode())  # 0600: only this user
        self._thread = threading.Thread(target=self._run, args=(sock,), name="engine", daemon=True)
        self._thread.start()
        log.info("engine: serving searches on %s", self.path)

    def _run(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[sock]))
        except Exception:  # noqa: BLE001 - searches fall back to the clients; indexing goes on
            log.exception("engine: the search server stopped")
        finally:
            sock.close()

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and remove the socket or endpoint (clients then work alone)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.transport == "unix":
            _remove_socket(self.path)
        elif (read_endpoint(self.path) or (0, ""))[1] == self._token:
            self.path.unlink(missing_ok=True)  # ours, not a later watcher's
        self.engine.library.close()


class TokenGuard:
    """The loopback transport's gate (ASGI): every request carries this start's token and
    names the loopback host. Only this user can read the token's file (0600 in the 0700
    data folder); a web page can neither read it nor send the header to another origin."""

    def __init__(self, app: Callable, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").rsplit(b":", 1)[0]
            given = headers.get(b"authorization", b"")
            if host not in (b"127.0.0.1", b"localhost") or not hmac.compare_digest(
                given, self.expected
            ):
                refused = _error(401, "Unauthorized", "this watcher answers its own user only.")
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def bind_loopback() -> socket.socket:
    """A listening socket on a free loopback port (never the machine's network address)."""
    # protocol named: asyncio sets TCP_NODELAY only on connections of an IPPROTO_TCP socket,
    # and without it a kept-alive answer's body waits 40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((LOOPBACK, 0))
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_private_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, 0600; a stale one (nobody listening) replaced.

    The mode is set before ``listen``: until then a connect is refused, so nobody gets in
    through a wider mode. A socket where someone still answers is not taken over.
    """
    if _answers(path):
        raise errors.WriterBusyError(
            f"another process already serves {path}; stop it first (see: "
            f"{command_for(path.parent)} status)."
        )
    _remove_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, PRIVATE_FILE_MODE)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(str(path))
    except OSError:  # missing, refused (stale), not a socket
        return False
    finally:
        probe.close()
    return True


def _remove_socket(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode):
        path.unlink(missing_ok=True)
    else:
        raise errors.ConfigError(f"{path} is not a socket; remove it so the watcher can serve.")


__all__ = ["Engine", "EngineServer", "TokenGuard", "bind_loopback", "bind_private_socket"]
