"""The folder watcher in a thread, with real files, real filesystem events and a real store."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
import traceback
from pathlib import Path

import pytest
from watchdog.observers import Observer

from searchapp.decoder import hash_bytes
from searchapp.errors import WriterBusyError
from searchapp.indexer import daemon, watches
from searchapp.indexer.daemon import run_watch
from searchapp.library import Library
from searchapp.store import Store
from tests.helpers import wait_for, write_jpegs

TIMEOUT_S = 30.0


class Watcher:
    """``run_watch`` in a thread; ``stop()`` ends it and re-raises what it raised."""

    def __init__(self, settings, embedder, **kwargs) -> None:  # noqa: ANN001, ANN003
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(
            target=self._run, args=(settings, embedder, kwargs), name="watcher", daemon=True
        )
        self.thread.start()

    def _run(self, settings, embedder, kwargs) -> None:  # noqa: ANN001
        try:
            run_watch(settings, self.stop_event, embedder, **kwargs)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            traceback.print_exc()
            self.errors.append(err)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "watcher did not stop"
        assert not self.errors, self.errors


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's periodic looks (roots every 2 s, a polled tree every 5 s) sooner: the
    tests wait on their conditions, and waited out those periods (~10 s in all)."""
    monkeypatch.setattr(daemon, "ROOTS_POLL_S", 0.3)
    monkeypatch.setattr(watches, "POLLING_INTERVAL_S", 0.5)


@pytest.fixture()
def root(tmp_path: Path, photos: Path) -> Path:
    """A root with two sample photos."""
    folder = tmp_path / "root"
    folder.mkdir()
    for name in ("astronaut.jpg", "coffee.png"):
        shutil.copy2(photos / name, folder / name)
    return folder.resolve()


@pytest.fixture()
def store(settings):  # noqa: ANN001, ANN201
    s = Store(settings.db_path)
    yield s
    s.close()


@pytest.fixture()
def watching(settings, embedder, store, root):  # noqa: ANN001, ANN201
    """A watcher on ``root``, started and past its first reconcile."""
    store.add_root(root)
    watcher = Watcher(settings, embedder)
    wait_for(
        lambda: store.find_photo_by_path(root / "coffee.png") or watcher.errors, "first reconcile"
    )
    assert not watcher.errors, watcher.errors
    yield watcher
    watcher.stop()


def test_watcher_follows_add_modify_delete_rename(
    watching, settings, embedder, store, root, photos, caplog
) -> None:  # noqa: ANN001
    caplog.set_level(logging.INFO, logger="searchapp.indexer")
    caplog.set_level(logging.DEBUG, logger="searchapp.indexer.watches")  # what --verbose adds
    # a second watcher on the same library is refused at once
    with pytest.raises(WriterBusyError, match="already running"):
        run_watch(settings, threading.Event(), embedder)

    # copied in, plus files to ignore: it becomes searchable by its own image
    target = root / "sub" / "rocket.jpg"
    target.parent.mkdir()
    shutil.copy(photos / "rocket.jpg", target)
    (root / "ignored.jpg.part").write_bytes(target.read_bytes())
    (root / ".hidden.jpg").write_bytes(target.read_bytes())
    (root / "swap.jpg~").write_bytes(target.read_bytes())
    added = wait_for(lambda: store.find_photo_by_path(target), "the copied photo")
    assert added.status == "indexed", added.failure_reason
    search = Library(settings, embedder)
    wait_for(lambda: search.search_image(target, 3)[0].path == str(target), "search by its image")
    for name in ("ignored.jpg.part", ".hidden.jpg", "swap.jpg~"):
        assert store.find_photo_by_path(root / name) is None
    messages = [r.getMessage() for r in caplog.records]
    assert f"event: created {target}" in messages

    # the batch's INFO line follows its commit, so a reader can see the row before the line
    def batch_lines() -> list[str]:
        logged = [r.getMessage() for r in caplog.records]
        return [m for m in logged if m.startswith("watch: ") and "changed path(s): added" in m]

    wait_for(batch_lines, "one INFO line per batch")

    # modified in place: same row, new content, found by the new content
    shutil.copy(photos / "grace_hopper.jpg", target)
    new_hash = hash_bytes(target.read_bytes())
    updated = wait_for(
        lambda: (p := store.find_photo_by_path(target)) and p.content_hash == new_hash and p,
        "the modified photo",
    )
    assert updated.id == added.id
    wait_for(
        lambda: search.search_image(photos / "grace_hopper.jpg", 3)[0].path == str(target),
        "search by the new content",
    )

    # delete
    os.remove(root / "coffee.png")
    wait_for(lambda: store.find_photo_by_path(root / "coffee.png") is None, "the delete")

    # rename: same photo id, no model call
    before = store.find_photo_by_path(root / "astronaut.jpg")
    encoded = embedder.images_encoded
    os.rename(root / "astronaut.jpg", root / "sub" / "renamed.jpg")
    after = wait_for(lambda: store.find_photo_by_path(root / "sub" / "renamed.jpg"), "the rename")
    assert after.id == before.id
    assert store.find_photo_by_path(root / "astronaut.jpg") is None
    assert embedder.images_encoded == encoded
    assert store.counts()["photos"] == 2
    search.close()


def test_renamed_folder_of_50_keeps_ids_and_vectors(settings, embedder, store, root) -> None:  # noqa: ANN001
    album = root / "album"
    write_jpegs(album, 50, seed=1)
    store.add_root(root)
    watcher = Watcher(settings, embedder)
    try:
        wait_for(lambda: store.counts()["photos"] == 52, "the first reconcile", 120)
        ids = {p.name: store.find_photo_by_path(p).id for p in album.iterdir()}
        encoded = embedder.images_encoded
        os.rename(album, root / "album 2025")
        moved = root / "album 2025"
        wait_for(
            lambda: all(store.find_photo_by_path(moved / n) for n in ids), "all 50 renamed paths"
        )
        assert {n: store.find_photo_by_path(moved / n).id for n in ids} == ids
        assert not any(store.find_photo_by_path(album / n) for n in ids)
        assert embedder.images_encoded == encoded, "a move must not call the model"
        assert store.counts()["photos"] == 52
    finally:
        watcher.stop()


def test_slow_chunked_write_is_indexed_once_complete(
    watching, embedder, store, root, photos
) -> None:  # noqa: ANN001
    data = (photos / "rocket.jpg").read_bytes()
    target = root / "slow.jpg"
    encoded = embedder.images_encoded
    chunks = 8
    step = len(data) // chunks + 1
    with open(target, "wb") as f:
        for i in range(chunks):
            f.write(data[i * step : (i + 1) * step])
            f.flush()
            # one pause longer than the quiet period: only the writer's close counts
            time.sleep(1.5 if i == 3 else 0.3)
            assert store.find_photo_by_path(target) is None, "read before the writer closed it"
    photo = wait_for(lambda: store.find_photo_by_path(target), "the slowly written photo")
    assert photo.status == "indexed", photo.failure_reason
    assert photo.size == len(data)
    assert photo.content_hash == hash_bytes(data)
    # anything still queued for the slow file is handed over before a later file is done
    shutil.copy(photos / "coins.png", root / "later.png")
    wait_for(lambda: store.find_photo_by_path(root / "later.png"), "a file written later")
    assert embedder.images_encoded == encoded + 2, "the slow file was read once"


class _OutOfWatches(Observer):
    """A native observer on a system whose inotify watch limit is used up."""

    def schedule(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_watch_limit_falls_back_to_polling(
    settings, embedder, store, root, tmp_path, photos, caplog
) -> None:  # noqa: ANN001
    other = tmp_path / "other"
    other.mkdir()
    store.add_root(root)
    store.add_root(other)
    caplog.set_level(logging.INFO, logger="searchapp.indexer")
    watcher = Watcher(settings, embedder, observer_factory=_OutOfWatches)
    try:
        wait_for(lambda: store.counts()["photos"] == 2, "the first reconcile")
        for folder in (root, other):
            shutil.copy(photos / "rocket.jpg", folder / "new.jpg")
        for folder in (root, other):
            wait_for(lambda f=folder: store.find_photo_by_path(f / "new.jpg"), "a polled file")
    finally:
        watcher.stop()
    limit = [r for r in caplog.records if "max_user_watches=524288" in r.getMessage()]
    assert len(limit) == 1, "the limit is reported once, with the fix"
    assert limit[0].levelno == logging.WARNING
    assert "polling" in limit[0].getMessage()


def test_vanished_root_is_offline_not_deleted(
    watching, settings, embedder, store, root, tmp_path, photos
) -> None:  # noqa: ANN001
    away = tmp_path / "unmounted"
    os.rename(root, away)  # what an unmount looks like from here
    wait_for(lambda: not store.find_root(root).online, "the root marked offline")
    assert store.counts()["photos"] == 2
    assert store.find_photo_by_path(root / "coffee.png") is not None
    assert Library(settings, embedder).search_image(photos / "coffee.png", 1)[0].path == str(
        root / "coffee.png"
    )
    shutil.copy(photos / "rocket.jpg", away / "while_away.jpg")
    (away / "astronaut.jpg").unlink()
    # a root added now is indexed after the daemon has looked at its roots again
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(photos / "grass.png", other / "grass.png")
    store.add_root(other)
    wait_for(lambda: store.find_photo_by_path(other.resolve() / "grass.png"), "another root")
    assert store.find_photo_by_path(root / "astronaut.jpg") is not None
    assert store.find_photo_by_path(root / "while_away.jpg") is None

    os.rename(away, root)  # plugged back in: reconciled, then watched again
    wait_for(lambda: store.find_root(root).online, "the root back online")
    wait_for(lambda: store.find_photo_by_path(root / "while_away.jpg"), "changes made while away")
    wait_for(lambda: store.find_photo_by_path(root / "astronaut.jpg") is None, "the delete")
    shutil.copy(photos / "coins.png", root / "after.png")
    wait_for(lambda: store.find_photo_by_path(root / "after.png"), "a new file after return")


def test_root_added_while_running_is_watched(watching, store, tmp_path, photos) -> None:  # noqa: ANN001
    new_root = tmp_path / "new root"
    new_root.mkdir()
    shutil.copy(photos / "coins.png", new_root / "coins.png")
    store.add_root(new_root)  # what `searchapp roots add` does from another process
    new_root = new_root.resolve()
    wait_for(lambda: store.find_photo_by_path(new_root / "coins.png"), "the new root indexed")
    shutil.copy(photos / "grass.png", new_root / "grass.png")
    wait_for(lambda: store.find_photo_by_path(new_root / "grass.png"), "a file in the new root")
