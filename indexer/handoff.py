"""Commands handed to the running watcher instead of writing beside it.

While ``searchapp watch`` holds the writer lock, other processes that would write the
library (``searchapp index``, ``roots add/remove``, the page's index button) drop a request
file in ``<data dir>/requests/`` and wait for the answer file the watcher writes after
running the command through its own ``Writer``. So there is still one writer, and nobody
waits an hour for a daemon that never lets go of the lock.

The folder is input from outside the watcher, so its side is strict: a request is read
only from a regular file of at most ``MAX_REQUEST_BYTES`` whose name is ``<id>.request.json``
with a 32-hex-digit id that matches the id inside; exactly the file read is removed; an
answer is written only under such an id; nothing in a request can stop the watcher.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from searchapp.atomic import write_atomic
from searchapp.config import Settings
from searchapp.datadir import make_private_dir
from searchapp.errors import HandoffError, SearchAppError, error_class
from searchapp.indexer.commands import Command, Outcome, command_from_json, command_to_json

log = logging.getLogger(__name__)

ANSWER_KEEP_S = 3600.0  # answers nobody collected (the caller died) are removed after this
POLL_S = 0.1
MAX_REQUEST_BYTES = 64 * 1024
REQUEST_SUFFIX = ".request.json"
ANSWER_SUFFIX = ".answer.json"
_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Request:
    """One command for the watcher; ``id`` names its answer."""

    id: str
    command: Command


def requests_folder(settings: Settings) -> Path:
    return settings.data_dir / "requests"


def submit_request(settings: Settings, command: Command) -> Request:
    """Queue ``command`` for the watcher and return the request (the caller's side)."""
    request = Request(uuid.uuid4().hex, command)
    make_private_dir(requests_folder(settings))
    body = {"id": request.id, "command": command_to_json(command)}
    write_atomic(_request_path(settings, request.id), json.dumps(body).encode())
    return request


def withdraw_request(settings: Settings, request: Request) -> bool:
    """Take back a request the watcher has not started; True when it was still queued."""
    try:
        _request_path(settings, request.id).unlink()
    except FileNotFoundError:
        return False
    return True


def wait_for_answer(
    settings: Settings, request: Request, is_alive: Callable[[], bool], timeout_s: float
) -> Outcome | None:
    """The watcher's outcome; None when it died or ``timeout_s`` passed without one.

    Raises the watcher's error (its own class) when the command failed there.
    """
    path = _answer_path(settings, request.id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = _read_answer(path)
        if answer is not None:
            return _outcome(answer)
        if not is_alive():
            answer = _read_answer(path)  # it may have answered just before it exited
            return None if answer is None else _outcome(answer)
        time.sleep(POLL_S)
    return None


def _read_answer(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None  # not there yet (answers are renamed into place whole)
    path.unlink(missing_ok=True)
    return value if isinstance(value, dict) else {"ok": False, "error": "garbled answer"}


def _outcome(answer: dict) -> Outcome:
    if not answer.get("ok"):
        message = str(answer.get("error") or "the watcher could not do the work")
        raise error_class(answer.get("kind"))(message)  # its exit code, e.g. 2 for usage
    return Outcome.from_json(answer.get("outcome") or {})


# ---------------------------------------------------------------- the watcher's side
def take_requests(settings: Settings) -> list[Request]:
    """Queued well-formed requests, oldest first; malformed ones are answered and removed."""
    folder = requests_folder(settings)
    try:
        files = sorted((p for p in folder.iterdir() if p.name.endswith(REQUEST_SUFFIX)), key=_mtime)
    except OSError:
        return []
    out = []
    for path in files:
        request_id = path.name[: -len(REQUEST_SUFFIX)]
        try:
            out.append(_parse_request(path, request_id))
        except FileNotFoundError:
            continue  # withdrawn meanwhile
        except HandoffError as err:
            log.warning("watch: ignored a malformed request %r: %s", path.name, err)
            if _ID.fullmatch(request_id):
                _write_answer(settings, request_id, _failed(err))
        finally:
            path.unlink(missing_ok=True)  # exactly the file read, whatever it held
    return out


def _parse_request(path: Path, request_id: str) -> Request:
    if not _ID.fullmatch(request_id):
        raise HandoffError("the file name is not <32 hex digits>.request.json")
    try:
        value = json.loads(_read_small_file(path))
    except ValueError:
        raise HandoffError("not JSON") from None
    if not isinstance(value, dict) or value.get("id") != request_id:
        raise HandoffError("the id inside does not match the file name")
    return Request(request_id, command_from_json(value.get("command")))


def _read_small_file(path: Path) -> bytes:
    """A regular file's bytes, never following a link, blocking or reading past the cap."""
    try:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise  # withdrawn: not malformed
    except OSError as err:
        raise HandoffError(f"cannot be opened ({err.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REQUEST_BYTES:
            raise HandoffError(f"not a regular file of at most {MAX_REQUEST_BYTES} bytes")
        return os.read(fd, MAX_REQUEST_BYTES + 1)
    finally:
        os.close(fd)


def answer_request(
    settings: Settings,
    request: Request,
    outcome: Outcome | None,
    error: SearchAppError | None = None,
) -> None:
    """Publish what the command did (or why it failed, with its kind) for the caller."""
    if error is not None:
        answer = _failed(error)
    else:
        answer = {"ok": True, "outcome": (outcome or Outcome()).to_json()}
    _write_answer(settings, request.id, answer)


def _failed(error: SearchAppError) -> dict:
    return {"ok": False, "error": str(error), "kind": type(error).__name__}


def _write_answer(settings: Settings, request_id: str, answer: dict) -> None:
    write_atomic(_answer_path(settings, request_id), json.dumps(answer).encode())


def remove_stale_answers(settings: Settings, now: float | None = None) -> None:
    """Delete answers whose caller never came for them."""
    now = time.time() if now is None else now
    for path in requests_folder(settings).glob(f"*{ANSWER_SUFFIX}"):
        if now - _mtime(path) > ANSWER_KEEP_S:
            path.unlink(missing_ok=True)


def has_requests(settings: Settings) -> bool:
    """Cheap check the watcher makes several times a second."""
    try:
        with os.scandir(requests_folder(settings)) as entries:
            return any(e.name.endswith(REQUEST_SUFFIX) for e in entries)
    except OSError:
        return False


def _request_path(settings: Settings, request_id: str) -> Path:
    return requests_folder(settings) / f"{request_id}{REQUEST_SUFFIX}"


def _answer_path(settings: Settings, request_id: str) -> Path:
    if not _ID.fullmatch(request_id):  # the one guard against writing outside the folder
        raise HandoffError(f"bad request id {request_id!r}")
    return requests_folder(settings) / f"{request_id}{ANSWER_SUFFIX}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
