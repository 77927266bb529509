"""The hand-off folder is input from outside the watcher: nothing in it may stop or misuse it."""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from pathlib import Path

import pytest

from searchapp.config import load_settings
from searchapp.errors import HandoffError
from searchapp.indexer.commands import (
    AddRoots,
    Index,
    RemoveRoot,
    command_from_json,
    command_to_json,
)
from searchapp.indexer.handoff import requests_folder, submit_request, take_requests
from searchapp.indexer.lock import WriterLock
from searchapp.indexer.writer import submit
from tests.conftest import DATA
from tests.test_watcher_daemon import Daemon, daemons, photo_count, searchapp, wait_for

__all__ = ["daemons"]  # the fixture, used by name below


def test_commands_round_trip_and_strangers_are_refused() -> None:
    for command in (
        AddRoots(("/photos/a", "/photos/b")),
        Index(paths=("/photos/a/x.jpg",), retry_failed=True, add_roots=("/photos/c",)),
        Index(),
        RemoveRoot("/photos/a"),
    ):
        assert command_from_json(json.loads(json.dumps(command_to_json(command)))) == command
    for bad in (
        None,
        [],
        {"type": "format_disk"},
        {"type": "index", "paths": "/x"},
        {"type": "index", "retry_failed": "yes"},
        {"type": "index", "paths": ["relative/path"]},
        {"type": "remove_root"},
        {"type": "remove_root", "path": "/x", "also": 1},
        {"type": "add_roots", "paths": ["/ok", 3]},
    ):
        try:
            command_from_json(bad)
        except HandoffError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def _drop(folder: Path, name: str, body: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def test_malformed_requests_are_answered_removed_and_never_escape(tmp_path) -> None:  # noqa: ANN001
    settings = load_settings(data_dir=tmp_path / "lib", weights="random")
    folder = requests_folder(settings)
    good_id, other_id = uuid.uuid4().hex, uuid.uuid4().hex
    index_json = {"type": "index"}
    _drop(folder, f"{good_id}.request.json", {"id": "a/b", "command": index_json})
    _drop(folder, f"{other_id}.request.json", {"id": "../../../x", "command": index_json})
    _drop(folder, "wrong-name.request.json", {"id": uuid.uuid4().hex, "command": index_json})
    _drop(folder, f"{uuid.uuid4().hex}.request.json", "{not json")
    _drop(folder, f"{uuid.uuid4().hex}.request.json", "x" * 100_000)
    os.mkfifo(folder / f"{uuid.uuid4().hex}.request.json")  # would block a plain open()
    os.symlink("/dev/zero", folder / f"{uuid.uuid4().hex}.request.json")
    queued = submit_request(settings, Index(retry_failed=True))

    taken = take_requests(settings)

    assert [r.id for r in taken] == [queued.id]  # only the well-formed one
    assert taken[0].command == Index(retry_failed=True)
    left = sorted(p.name for p in folder.iterdir())
    assert not [n for n in left if n.endswith(".request.json")]  # every file read is gone
    # the two requests with a proper file name get an error answer under that name only
    assert f"{good_id}.answer.json" in left and f"{other_id}.answer.json" in left
    assert not json.loads((folder / f"{good_id}.answer.json").read_text())["ok"]
    assert not (tmp_path / "x.answer.json").exists()
    assert not list(tmp_path.rglob("x.answer.json"))
    assert take_requests(settings) == []  # nothing is served again


def test_daemon_survives_hostile_requests_and_still_serves(tmp_path, photos, daemons) -> None:  # noqa: ANN001
    lib, root = tmp_path / "lib", tmp_path / "root"
    root.mkdir()
    (root / "coffee.png").write_bytes((photos / "coffee.png").read_bytes())
    daemon = Daemon(lib, root)
    daemons.append(daemon)
    daemon.wait_started()
    folder = lib / "requests"
    rid = uuid.uuid4().hex
    _drop(folder, f"{rid}.request.json", {"id": "a/b", "command": {"type": "index"}})
    _drop(folder, "mismatch.request.json", {"id": rid, "command": {"type": "index"}})
    _drop(folder, f"{uuid.uuid4().hex}.request.json", {"id": "x", "command": "rm -rf"})
    wait_for(lambda: not list(folder.glob("*.request.json")), "the bad requests removed")
    assert daemon.proc.poll() is None, daemon.output()

    (root / "coins.png").write_bytes((photos / "coins.png").read_bytes())
    out = searchapp(lib, "index")  # handed to the same daemon, which still answers
    assert out.returncode == 0, out.stderr
    assert f"done by the watcher, pid {daemon.proc.pid}" in out.stdout
    assert photo_count(lib) == 2
    assert "malformed request" in daemon.output()
    assert "Traceback" not in daemon.output()
    assert daemon.terminate() == 0


def test_a_request_taken_by_a_watcher_that_stops_is_done_by_the_caller(
    tmp_path, pixel_embedder
) -> None:  # noqa: ANN001
    """The watcher took the request (its file is gone) and stopped before running it: the
    caller was told the watcher "will still do the work", which it never would."""
    settings = load_settings(data_dir=tmp_path / "lib", weights="random", encoder="pixels")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(DATA / "rocket.jpg", photos / "rocket.jpg")
    holding = threading.Event()

    def watch_take_then_stop() -> None:  # the lock is its thread's (filelock counts per thread)
        with WriterLock(settings, "watch"):
            holding.set()
            wait_for(lambda: take_requests(settings), "the request")
        # stopped: what it took is never answered

    thread = threading.Thread(target=watch_take_then_stop)
    thread.start()
    try:
        holding.wait(30)
        outcome = submit(
            settings, Index(add_roots=(str(photos),)), embedder=pixel_embedder, wait_s=30
        )
    finally:
        thread.join()
    assert outcome.done_by is None and outcome.stats.added == 1  # done here, after all


def test_the_watcher_s_error_reaches_the_caller_as_its_own_kind(tmp_path) -> None:  # noqa: ANN001
    """Every error came back a plain SearchAppError: a usage error's exit code 2 was lost."""
    from searchapp.errors import RootError, SearchAppError, UsageError
    from searchapp.indexer.handoff import answer_request, wait_for_answer

    settings = load_settings(data_dir=tmp_path / "lib", weights="random")
    for error, kind in ((UsageError("bad"), UsageError), (RootError("gone"), RootError),
                        (ValueError("not ours"), SearchAppError)):  # fmt: skip
        request = submit_request(settings, Index())
        sent = error if isinstance(error, SearchAppError) else SearchAppError(str(error))
        answer_request(settings, request, None, sent)
        with pytest.raises(kind, match=str(error)) as raised:
            wait_for_answer(settings, request, lambda: True, 5)
        assert type(raised.value) is kind


def test_a_folder_that_is_not_there_is_said_before_any_hand_off(tmp_path) -> None:  # noqa: ANN001
    """With a watcher running, ``index /typo`` said "the watcher is indexing for us;
    waiting..." and handed the typo over before saying it is not a folder."""
    from tests.helpers import run_cli

    settings = load_settings(data_dir=tmp_path / "lib", weights="random")
    holding, done = threading.Event(), threading.Event()

    def watch() -> None:
        with WriterLock(settings, "watch"):
            holding.set()
            done.wait(30)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        holding.wait(30)
        for args in (["index", str(tmp_path / "typo")], ["roots", "add", str(tmp_path / "x")]):
            proc = run_cli(settings.data_dir, *args)
            assert proc.returncode == 1 and "is not a folder" in proc.stderr, proc.stderr
            assert "waiting" not in proc.stderr and not list(requests_folder(settings).glob("*"))
    finally:
        done.set()
        thread.join()
