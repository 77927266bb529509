"""The folder watcher with real files, real filesystem events and a real store."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from indexer.watcher import run_watch
from searchapp.errors import WriterBusyError
from searchapp.store import Store

TIMEOUT_S = 20.0


def _wait_for(check: Callable[[], object], what: str) -> object:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {TIMEOUT_S:.0f} s waiting for {what}")


@pytest.fixture()
def watching(settings, embedder, photos, tmp_path: Path):  # noqa: ANN001, ANN201
    """A root with two photos, a watcher on it in a thread, and a reader on the store."""
    root = tmp_path / "root"
    root.mkdir()
    for name in ("astronaut.jpg", "coffee.png"):
        shutil.copy2(photos / name, root / name)
    store = Store(settings.db_path)
    store.add_root(root)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_watch(settings, stop, embedder)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    thread = threading.Thread(target=target, name="watcher", daemon=True)
    thread.start()
    root = root.resolve()
    _wait_for(lambda: store.find_photo_by_path(root / "coffee.png") or errors, "first reconcile")
    assert not errors, errors
    yield root, store
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive(), "watcher did not stop"
    assert not errors, errors
    store.close()


def test_watcher_follows_add_delete_rename(watching, settings, embedder, photos) -> None:  # noqa: ANN001
    root, store = watching

    # a second watcher on the same library is refused at once
    with pytest.raises(WriterBusyError, match="is writing the library"):
        run_watch(settings, threading.Event(), embedder)

    # copy in (written in two steps, like a slow copy), plus files to ignore
    data = (photos / "rocket.jpg").read_bytes()
    target = root / "sub" / "rocket.jpg"
    target.parent.mkdir()
    with open(target, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(0.3)
        f.write(data[len(data) // 2 :])
    (root / "ignored.jpg.part").write_bytes(data)
    (root / ".hidden.jpg").write_bytes(data)
    added = _wait_for(lambda: store.find_photo_by_path(target), "the copied photo")
    assert added.status == "indexed", added.failure_reason
    assert store.find_photo_by_path(root / "ignored.jpg.part") is None
    assert store.find_photo_by_path(root / ".hidden.jpg") is None

    # delete
    os.remove(root / "coffee.png")
    _wait_for(lambda: store.find_photo_by_path(root / "coffee.png") is None, "the delete")

    # rename: same photo id, no model call
    before = store.find_photo_by_path(root / "astronaut.jpg")
    encoded = embedder.images_encoded
    os.rename(root / "astronaut.jpg", root / "sub" / "renamed.jpg")
    after = _wait_for(lambda: store.find_photo_by_path(root / "sub" / "renamed.jpg"), "the rename")
    assert after.id == before.id
    assert store.find_photo_by_path(root / "astronaut.jpg") is None
    assert embedder.images_encoded == encoded
    assert store.counts()["photos"] == 2
