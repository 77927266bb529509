"""The staged pipeline: a pure plan, and each file read and decoded at most once."""

from __future__ import annotations

import os
import threading

import pytest

import searchapp.indexer.stages as stages
from searchapp.indexer.pipeline import IndexRun
from searchapp.plan import PendingFiles, apply_root_observations, count_pending, plan_changes
from searchapp.store import Store
from searchapp.vectors import open_index
from tests.helpers import index_once


def _roots(store: Store) -> list[tuple]:
    return [(r.id, r.path, r.online, store.root_device(r.id)) for r in store.list_roots()]


def test_plan_only_reads_and_the_writer_records_the_roots(settings, tmp_path):
    here, away = tmp_path / "here", tmp_path / "away"
    here.mkdir()
    (here / "a.jpg").write_bytes(b"not decoded by a plan")
    away.mkdir()
    store = Store(settings.db_path)
    kept, gone = store.add_root(here), store.add_root(away)
    device = os.stat(here).st_dev
    store.set_root_device(kept.id, device + 1)  # recorded on another drive than now
    away.rmdir()  # an unplugged drive: its folder is gone
    before, generation = _roots(store), store.generation()

    plan = plan_changes(store, "some-model")
    assert count_pending(store, "some-model").to_index == 1
    assert _roots(store) == before and store.generation() == generation  # nothing written
    seen = {r.root_id: r for r in plan.roots}
    assert plan.offline_roots == 1 and not seen[gone.id].online and seen[gone.id].was_online
    assert seen[kept.id].online and seen[kept.id].new_device == device
    with pytest.raises(TypeError):
        plan.missing[1] = None  # type: ignore[index]

    apply_root_observations(store, plan)
    online = {r.id: r.online for r in store.list_roots()}
    assert online == {kept.id: True, gone.id: False}
    assert store.root_device(kept.id) == device
    store.close()


def test_copy_of_a_taken_move_target_is_read_and_decoded_once_in_a_worker(
    settings, embedder, photos, monkeypatch
):
    index_once(settings, embedder, photos)
    content = (photos / "rocket.jpg").read_bytes()
    (photos / "rocket.jpg").unlink()  # gone: its content is a move target ...
    (photos / "a").mkdir()
    (photos / "a" / "rocket.jpg").write_bytes(content)  # ... taken by one new path
    (photos / "b").mkdir()
    (photos / "b" / "rocket.jpg").write_bytes(content)  # the other is a new duplicate

    reads: list[str] = []
    decodes: list[str] = []
    real_read, real_decode = stages.read_file, stages.decode_photo

    def counting_read(path):  # noqa: ANN001, ANN202
        reads.append(str(path))
        return real_read(path)

    def counting_decode(data, min_side, content_hash=None):  # noqa: ANN001, ANN202
        decodes.append(threading.current_thread().name)
        return real_decode(data, min_side, content_hash)

    monkeypatch.setattr(stages, "read_file", counting_read)
    monkeypatch.setattr(stages, "decode_photo", counting_decode)
    store = Store(settings.db_path)
    index = open_index(settings.index_path, store, embedder.model_id, embedder.dim)
    plan = plan_changes(store, embedder.model_id)
    missing = dict(plan.missing)
    stats = IndexRun(settings, store, embedder, index).run(plan)

    assert (stats.moved, stats.added, stats.embedded, stats.removed) == (1, 1, 0, 0)
    assert sorted(reads) == sorted(str(w.file.path) for w in plan.work)  # each read once
    assert len(decodes) == 1 and decodes[0].startswith("decode")  # the copy, in a worker
    assert dict(plan.missing) == missing and len(missing) == 1  # the run kept its own state
    ids = {store.find_photo_by_path(photos / d / "rocket.jpg").id for d in "ab"}
    assert set(missing) < ids  # the moved one kept its id
    assert sorted(index.ids().tolist()) == sorted(
        p.id for p in store.get_photos(list(range(1, 100))).values() if p.status == "indexed"
    )
    store.close()


def test_copies_of_a_content_whose_decode_failed_fail_with_it(
    settings, embedder, tmp_path, monkeypatch
):
    """The file that sends a content to the model fails (memory): its copies cannot reuse it."""
    from searchapp.errors import ImageDecodeError
    from tests.helpers import write_jpegs

    root = tmp_path / "copies"
    (first,) = write_jpegs(root, 1, seed=5)
    (root / "copy.jpg").write_bytes(first.read_bytes())

    def failing_prepare(image):  # noqa: ANN001, ANN202 - only the first copy is prepared
        raise ImageDecodeError("image needs more memory than is available")

    monkeypatch.setattr(embedder, "prepare", failing_prepare)
    stats = index_once(settings, embedder, root)
    assert (stats.failed, stats.added, stats.embedded) == (2, 0, 0)
    store = Store(settings.db_path)
    reasons = {p.path: p.failure_reason for p in store.failures()}
    assert set(reasons) == {str(first), str(root / "copy.jpg")}
    assert set(reasons.values()) == {"image needs more memory than is available"}
    store.close()


def test_the_first_batch_is_small_so_the_first_photos_are_searchable_soon(
    settings, embedder, photos
):
    """A run commits FIRST_BATCH photos first, then whole batches (settings: batch size 8)."""
    from searchapp.indexer.commands import Index
    from searchapp.indexer.pipeline import FIRST_BATCH
    from searchapp.indexer.writer import submit

    seen: list[int] = []
    command = Index(add_roots=(str(photos.resolve()),))
    submit(settings, command, embedder=embedder, progress=lambda p: seen.append(p.done))
    assert seen[0] == FIRST_BATCH < settings.batch_size
    assert seen[1] == FIRST_BATCH + settings.batch_size and seen[-1] == 16


def test_a_run_cut_short_records_what_it_committed(settings, embedder, photos):
    """Files were counted as their batch was decoded: a run stopped after its first commit
    (a page reloaded under it) recorded 'added 6' with 4 stored. Now counted at commit."""
    from searchapp.indexer.commands import Index
    from searchapp.indexer.writer import submit

    def stop_after_first_commit(_progress) -> None:  # noqa: ANN001
        raise KeyboardInterrupt

    command = Index(add_roots=(str(photos.resolve()),))
    with pytest.raises(KeyboardInterrupt):
        submit(settings, command, embedder=embedder, progress=stop_after_first_commit)
    store = Store(settings.db_path)
    [run] = store.recent_runs(1)
    stored = store.counts()["photos"]
    store.close()
    assert run.state == "interrupted" and 0 < stored < 16
    assert run.stats["added"] == stored == run.done


def _fail_second_add(monkeypatch, failure: type[BaseException]) -> list[int]:  # noqa: ANN001
    """Make FAISS's second ``add`` (after the second batch's commit) raise ``failure``;
    returns the sizes of the adds tried (``monkeypatch.undo()`` puts the real one back)."""
    from searchapp.vectors import VectorIndex

    real_add, calls = VectorIndex.add, []

    def add_then_fail(self, ids, vectors):  # noqa: ANN001, ANN202
        calls.append(len(ids))
        if len(calls) == 2:
            raise failure("stopped after the second commit")
        return real_add(self, ids, vectors)

    monkeypatch.setattr(VectorIndex, "add", add_then_fail)
    return calls


def _assert_index_file_holds_every_committed_photo(settings, embedder) -> None:  # noqa: ANN001
    store = Store(settings.db_path)
    ids, _ = store.load_vectors(embedder.model_id)
    index = open_index(settings.index_path, store, embedder.model_id, embedder.dim)
    assert sorted(index.ids().tolist()) == sorted(ids.tolist())
    store.close()


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_a_run_stopped_between_commit_and_faiss_loses_no_committed_photo(
    settings, embedder, photos, monkeypatch, failure
):
    """Ctrl-C (or a FAISS error) after a batch's commit but before FAISS took it: the index
    file is never labelled with that commit's generation, so every committed photo stays
    searchable (the first batch's save used to hide the second batch for good)."""
    from searchapp.vectors import read_index_info

    calls = _fail_second_add(monkeypatch, failure)
    with pytest.raises(failure):
        index_once(settings, embedder, photos)
    monkeypatch.undo()
    store = Store(settings.db_path)
    assert len(store.load_vectors(embedder.model_id)[0]) == sum(calls) > calls[0]
    if failure is RuntimeError:  # the writer lived on: it rebuilt (and saved) at once
        assert read_index_info(settings.index_path).generation == store.generation()
    store.close()
    _assert_index_file_holds_every_committed_photo(settings, embedder)


def test_a_watcher_that_could_not_rebuild_saves_no_index_behind_the_store(
    settings, embedder, photos, monkeypatch
):
    """The run fails between commit and FAISS and the rebuild after it fails too (a full
    disk): the writer lives on (the watcher), and its later save (at close) rebuilds first
    instead of writing the index that lacks the batch."""
    import searchapp.indexer.writer as writer_module
    from searchapp.indexer.lock import WriterLock
    from searchapp.indexer.writer import Writer

    def open_fails(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device")

    lock = WriterLock(settings, "watch")
    lock.acquire()
    with Writer(settings, lock, embedder) as writer:
        writer.add_roots([str(photos.resolve())])
        _fail_second_add(monkeypatch, RuntimeError)
        monkeypatch.setattr(writer_module, "open_index", open_fails)
        with pytest.raises(RuntimeError):
            writer.index_photos()
        monkeypatch.undo()  # FAISS and the disk work again
        writer.save()  # what the watcher does when it stops
    lock.release()
    _assert_index_file_holds_every_committed_photo(settings, embedder)


def test_photos_indexed_with_another_model_are_pending_as_such(settings, embedder, photos):  # noqa: ANN001
    """status said "16 new or changed to index" of a library indexed with other weights:
    nothing was new; they only lack this model's vectors."""
    index_once(settings, embedder, photos)
    store = Store(settings.db_path, readonly=True)
    try:
        assert count_pending(store, embedder.model_id) == PendingFiles(0, 0, 0)
        assert count_pending(store, "another-model") == PendingFiles(16, 0, 16)
    finally:
        store.close()
