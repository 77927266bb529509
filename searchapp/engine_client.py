"""Ask the running watcher's engine: search, encode a query, status. Torch-free.

The watcher (``searchapp watch``) serves HTTP+JSON on ``<data dir>/engine.sock`` (see
docs/API.md), or where there are no Unix sockets (Windows) on a loopback port whose
number and per-start token are in ``<data dir>/engine.json`` (0600). A client connects
with a short timeout; a refused or missing endpoint, a daemon killed mid-answer, an
answer that does not come in time, or a daemon serving another model all mean "no
engine": the methods return None and the caller does the work itself. An error about
the request (no such photo, a bad query) is raised as the same :class:`SearchAppError`
the in-process code would raise, so both paths say the same line.

This module imports only the standard library and the core's config and errors: the
CLI's fast path must not pay for numpy, FAISS or torch.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from searchapp import errors
from searchapp.config import Settings

log = logging.getLogger("searchapp.engine")

SOCKET_NAME = "engine.sock"
ENDPOINT_NAME = "engine.json"  # the loopback transport: {"port", "token", "pid"}, 0600
LOOPBACK = "127.0.0.1"
API = "/v1"
CONNECT_TIMEOUT_S = 0.5
# A daemon that accepted the connection is alive: a killed one resets it at once. The
# answer may still need the model loaded again after an idle unload (a few seconds).
ANSWER_TIMEOUT_S = 20.0


def socket_path(settings: Settings) -> Path:
    """Where the watcher of this library listens."""
    return settings.data_dir / SOCKET_NAME


def endpoint_path(settings: Settings) -> Path:
    """Where the watcher of this library writes its loopback port and token."""
    return settings.data_dir / ENDPOINT_NAME


def engine_transport(settings: Settings) -> str:
    """``unix`` or ``tcp``: what this library's engine listens on here."""
    if settings.engine_transport != "auto":
        return settings.engine_transport
    return "unix" if hasattr(socket, "AF_UNIX") else "tcp"


def model_identity(settings: Settings) -> dict[str, str]:
    """What must match between client and daemon for vectors to be comparable."""
    return {"encoder": settings.encoder, "model": settings.model, "weights": settings.weights}


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket: connect times out on its own, answers on another."""

    def __init__(self, path: Path, connect_s: float, answer_s: float) -> None:
        super().__init__("localhost", timeout=answer_s)
        self._path, self._connect_s = str(path), connect_s

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._connect_s)
            sock.connect(self._path)
            sock.settimeout(self.timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _LoopbackConnection(http.client.HTTPConnection):
    """HTTP/1.1 to a loopback port: connect times out on its own, answers on another."""

    def __init__(self, port: int, connect_s: float, answer_s: float) -> None:
        super().__init__(LOOPBACK, port, timeout=answer_s)
        self._connect_s = connect_s

    def connect(self) -> None:
        self.sock = socket.create_connection((LOOPBACK, self.port), self._connect_s)
        self.sock.settimeout(self.timeout)


def read_endpoint(path: Path) -> tuple[int, str] | None:
    """(port, token) from a loopback engine's file, or None when absent or unreadable."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return int(raw["port"]), str(raw["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class EngineStatus:
    """The daemon's answer to ``GET /v1/status``."""

    pid: int
    model_id: str
    model_loaded: bool
    idle_unload_s: float
    device: str
    precision: str

    def describe(self) -> str:
        """One line for people: which process holds the model, and whether it is loaded."""
        state = "loaded" if self.model_loaded else "not loaded (loads on the next query)"
        idle = f"unloads after {self.idle_unload_s:g} s idle" if self.idle_unload_s else "kept"
        return f"the watcher (pid {self.pid}) serves searches; its model is {state}; {idle}"


class EngineClient:
    """A client of one library's engine; cheap to make, one connection per call."""

    def __init__(
        self,
        settings: Settings,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.path = socket_path(settings)
        self.connect_timeout_s = connect_timeout_s
        self.answer_timeout_s = answer_timeout_s

    def available(self) -> bool:
        """Whether a daemon answers health checks for this library and model."""
        return self.status() is not None

    def status(self) -> EngineStatus | None:
        """The daemon's model state, or None when no daemon (for this model) answers."""
        body = self._call("GET", "status", None)
        if body is None:
            return None
        try:
            return EngineStatus(
                int(body["pid"]), str(body["model_id"]), bool(body["model_loaded"]),
                float(body["idle_unload_s"]), str(body["device"]), str(body["precision"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            log.info("engine: unexpected status answer; ignoring the daemon")
            return None

    def search(self, request: dict) -> dict | None:
        """``POST /v1/search`` (fields in docs/API.md); the answer, or None: do it here."""
        return self._call("POST", "search", request)

    def encode_text(self, text: str) -> list[float] | None:
        """The daemon's vector for a text, or None."""
        return self._vector({"text": text})

    def encode_image(self, data: bytes) -> list[float] | None:
        """The daemon's vector for an image's bytes, or None."""
        return self._vector({"image_base64": base64.b64encode(data).decode("ascii")})

    def _vector(self, request: dict) -> list[float] | None:
        body = self._call("POST", "encode", request)
        if body is None:
            return None
        vector = body.get("vector")
        return vector if isinstance(vector, list) else None

    def _connection(self) -> tuple[http.client.HTTPConnection, dict[str, str]] | None:
        """A connection to the daemon and the headers it needs, or None: no daemon."""
        times = (self.connect_timeout_s, self.answer_timeout_s)
        if engine_transport(self.settings) == "unix":
            if not self.path.exists():
                return None  # no daemon: not even a socket to try
            return _UnixConnection(self.path, *times), {}
        endpoint = read_endpoint(endpoint_path(self.settings))
        if endpoint is None:
            return None
        port, token = endpoint
        return _LoopbackConnection(port, *times), {"Authorization": f"Bearer {token}"}

    def _call(self, method: str, name: str, request: dict | None) -> dict | None:
        found = self._connection()
        if found is None:
            return None
        conn, headers = found
        payload = None
        if request is not None:
            payload = json.dumps({**request, "identity": model_identity(self.settings)})
        try:
            conn.request(method, f"{API}/{name}", body=payload, headers=headers | _headers(payload))
            answer = conn.getresponse()
            status, raw = answer.status, answer.read()
        except (OSError, http.client.HTTPException) as err:
            log.info("engine: no answer from %s (%s); working in this process", self.path, err)
            return None
        finally:
            conn.close()
        return _decode(status, raw, method == "GET" and self._other_model(raw))

    def _other_model(self, raw: bytes) -> bool:
        # GET requests carry no identity; the client compares the daemon's own
        try:
            theirs = json.loads(raw).get("identity")
        except (ValueError, AttributeError):
            return True
        return theirs != model_identity(self.settings)


def _headers(payload: str | None) -> dict[str, str]:
    return {"Content-Type": "application/json"} if payload is not None else {}


def _decode(status: int, raw: bytes, other_model: bool) -> dict | None:
    """The JSON answer; an error about the request is raised as the in-process error."""
    try:
        body = json.loads(raw)
    except ValueError:
        log.info("engine: answer is not JSON (HTTP %d); working in this process", status)
        return None
    if not isinstance(body, dict):
        return None
    if status == 200:
        if other_model:
            log.info("engine: the watcher serves another model; working in this process")
            return None
        return body
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    kind, message = str(error.get("kind", "")), str(error.get("message", ""))
    if status in (401, 409) or status >= 500 or not message:  # not ours to answer: work here
        log.info("engine: HTTP %d %s %s; working in this process", status, kind, message)
        return None
    raise errors.error_class(kind, errors.QueryError)(message)


__all__ = [
    "ANSWER_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "SOCKET_NAME",
    "EngineClient",
    "EngineStatus",
    "model_identity",
    "endpoint_path",
    "engine_transport",
    "read_endpoint",
    "socket_path",
]
