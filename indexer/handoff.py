"""Work handed to the running watcher instead of writing beside it.

While ``searchapp watch`` holds the writer lock, other commands that would write the
library (``searchapp index``, ``roots remove``, the page's index button) drop a request
file in ``<data dir>/requests/`` and wait for the answer file the watcher writes after
doing the work itself. So there is still one writer, and nobody waits an hour for a
daemon that never lets go of the lock. Files are written to a temp name and renamed, so
neither side ever reads half a file.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from searchapp.atomic import write_atomic
from searchapp.config import Settings
from searchapp.datadir import make_private_dir

ANSWER_KEEP_S = 3600.0  # answers nobody collected (the caller died) are removed after this
POLL_S = 0.1


@dataclass(frozen=True)
class Request:
    """One piece of work for the watcher.

    ``action`` is ``index`` (``paths`` None: every root) or ``remove_root`` (``root``).
    """

    id: str
    action: str
    paths: list[str] | None = None
    retry_failed: bool = False
    root: str | None = None


def _folder(settings: Settings) -> Path:
    return settings.data_dir / "requests"


def _write_json(path: Path, value: dict) -> None:
    write_atomic(path, json.dumps(value).encode())


def submit_request(settings: Settings, action: str, **fields: object) -> Request:
    """Queue a request for the watcher and return it (its ``id`` names the answer)."""
    request = Request(id=uuid.uuid4().hex, action=action, **fields)
    folder = _folder(settings)
    make_private_dir(folder)
    _write_json(folder / f"{request.id}.request.json", asdict(request))
    return request


def withdraw_request(settings: Settings, request: Request) -> bool:
    """Take back a request the watcher has not started; True when it was still queued."""
    try:
        (_folder(settings) / f"{request.id}.request.json").unlink()
    except FileNotFoundError:
        return False
    return True


def wait_for_answer(
    settings: Settings, request: Request, is_alive: Callable[[], bool], timeout_s: float
) -> dict | None:
    """The watcher's answer, or None when it died or ``timeout_s`` passed without one."""
    answer = _folder(settings) / f"{request.id}.answer.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = json.loads(answer.read_text())
        except FileNotFoundError:
            if not is_alive():
                return _answer_after_death(answer)
            time.sleep(POLL_S)
            continue
        answer.unlink(missing_ok=True)
        return value
    return None


def _answer_after_death(answer: Path) -> dict | None:
    # the watcher may have answered just before it exited
    try:
        value = json.loads(answer.read_text())
    except (FileNotFoundError, ValueError):
        return None
    answer.unlink(missing_ok=True)
    return value


def take_requests(settings: Settings) -> list[Request]:
    """Queued requests, oldest first (the watcher's side)."""
    folder = _folder(settings)
    try:
        files = sorted(folder.glob("*.request.json"), key=_mtime)
    except OSError:
        return []
    out = []
    for path in files:
        try:
            out.append(Request(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)  # withdrawn meanwhile, or not ours
    return out


def answer_request(settings: Settings, request: Request, answer: dict) -> None:
    """Publish the answer, then drop the request (the watcher's side)."""
    folder = _folder(settings)
    _write_json(folder / f"{request.id}.answer.json", answer)
    (folder / f"{request.id}.request.json").unlink(missing_ok=True)


def remove_stale_answers(settings: Settings, now: float | None = None) -> None:
    """Delete answers whose caller never came for them."""
    now = time.time() if now is None else now
    for path in _folder(settings).glob("*.answer.json"):
        if now - _mtime(path) > ANSWER_KEEP_S:
            path.unlink(missing_ok=True)


def has_requests(settings: Settings) -> bool:
    """Cheap check the watcher makes several times a second."""
    try:
        with os.scandir(_folder(settings)) as entries:
            return any(e.name.endswith(".request.json") for e in entries)
    except OSError:
        return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
