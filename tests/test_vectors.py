"""The vector index: exact below the size threshold, IVF-SQ8 above it, same interface."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from searchapp.live_index import LiveIndex
from searchapp.store import BatchWrite, FailureWrite, PhotoWrite, Store
from searchapp.vectors import KIND_FLAT, KIND_IVF, VectorIndex, open_index, read_index_info

DIM = 512
MODEL = "test-model"
THRESHOLD = 5_000


def clustered(n: int, seed: int = 0, clusters: int = 64) -> np.ndarray:
    """Unit vectors around random centres, like photo embeddings of many scenes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.9 * rng.normal(size=(n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> set[int]:
    return set(ids[np.argsort(-(vecs @ q))[:k]].tolist())


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    both = clustered(6_060)  # queries come from the same scenes as the photos
    vecs, queries = both[:6_000], both[6_000:]
    ids = np.arange(1, len(vecs) + 1, dtype=np.int64) * 3  # ids are not row numbers
    return ids, vecs, queries


@pytest.fixture(scope="module")
def ivf(data) -> VectorIndex:  # noqa: ANN001
    ids, vecs, _ = data
    return VectorIndex.build(ids, vecs, MODEL, DIM, generation=7, threshold=THRESHOLD)


def test_kind_follows_the_threshold(data, ivf) -> None:  # noqa: ANN001
    ids, vecs, _ = data
    small = VectorIndex.build(ids[:4_000], vecs[:4_000], MODEL, DIM, threshold=THRESHOLD)
    assert small.kind == KIND_FLAT and small.ntotal == 4_000
    assert ivf.kind == KIND_IVF and ivf.ntotal == 6_000
    assert 1 <= ivf.nprobe <= ivf.index.nlist
    assert sorted(ivf.ids().tolist()) == sorted(ids.tolist())
    # 8-bit codes take about a quarter of the float32 vectors' bytes
    assert ivf.memory_bytes() < 0.4 * small.memory_bytes() * 6_000 / 4_000


def test_approximate_recall_against_exact(data, ivf) -> None:  # noqa: ANN001
    ids, vecs, queries = data
    recalls = []
    for q in queries:
        _, found = ivf.search(q, 10)
        recalls.append(len(set(found.tolist()) & exact_top(vecs, ids, q, 10)) / 10)
    assert np.mean(recalls) >= 0.95


def test_filtered_search_returns_only_allowed_ids(data, ivf) -> None:  # noqa: ANN001
    ids, vecs, queries = data
    rng = np.random.default_rng(2)
    small = rng.choice(ids, 150, replace=False)  # exact over the subset's codes
    large = rng.choice(ids, 3_000, replace=False)  # IVF with an id selector, more probes
    mask_small, mask_large = np.isin(ids, small), np.isin(ids, large)
    for q in queries[:20]:
        _, found = ivf.search(q, 10, small)
        assert set(found.tolist()) <= set(small.tolist()) and len(found) == 10
        truth = exact_top(vecs[mask_small], ids[mask_small], q, 10)
        assert len(set(found.tolist()) & truth) >= 9
        _, found = ivf.search(q, 10, large)
        assert set(found.tolist()) <= set(large.tolist()) and len(found) == 10
        truth = exact_top(vecs[mask_large], ids[mask_large], q, 10)
        assert len(set(found.tolist()) & truth) >= 8
    assert len(ivf.search(queries[0], 10, np.array([], np.int64))[1]) == 0
    assert ivf.search(queries[0], 10, np.array([10**9], np.int64))[1].tolist() == []


def test_save_load_round_trip(tmp_path: Path, ivf, data) -> None:  # noqa: ANN001
    _, _, queries = data
    path = tmp_path / "vectors.faiss"
    ivf.save(path, 7)
    loaded = VectorIndex.load(path, MODEL)
    assert (loaded.kind, loaded.nprobe, loaded.ntotal, loaded.generation) == (
        KIND_IVF,
        ivf.nprobe,
        ivf.ntotal,
        7,
    )
    for q in queries[:5]:
        assert loaded.search(q, 10)[1].tolist() == ivf.search(q, 10)[1].tolist()


@pytest.mark.parametrize("header", [b'{"model_id": "test-model"}', b"[1, 2]", b'"text"'])
def test_a_header_that_is_json_but_not_ours_is_damage(tmp_path: Path, header: bytes) -> None:
    """It raised KeyError or AttributeError past ``load``'s checks: no rebuild, no search."""
    import struct

    from searchapp.vectors import MAGIC, IndexFileError

    path = tmp_path / "vectors.faiss"
    vecs = clustered(4)
    VectorIndex.build(np.arange(1, 5), vecs, MODEL, DIM, generation=1).save(path, 1)
    raw = path.read_bytes()
    body = raw[20 + struct.unpack_from("<I", raw, 8)[0] :]  # the vectors, kept whole
    path.write_bytes(MAGIC + struct.pack("<I", len(header)) + header
                     + struct.pack("<Q", len(body)) + body)  # fmt: skip
    for read in (lambda: VectorIndex.load(path, MODEL), lambda: read_index_info(path)):
        with pytest.raises(IndexFileError, match="damaged"):
            read()


def test_add_remove_reconstruct_on_the_approximate_index(data) -> None:  # noqa: ANN001
    ids, vecs, _ = data
    index = VectorIndex.build(ids, vecs, MODEL, DIM, threshold=THRESHOLD)
    removed = ids[:100]
    assert index.remove(removed) == 100
    assert index.ntotal == len(ids) - 100
    assert index.reconstruct(int(removed[0])) is None
    assert not set(index.search(vecs[0], 10)[1].tolist()) & set(removed.tolist())
    new_vec = vecs[1:2] + 0.01 * vecs[2:3]
    new_vec /= np.linalg.norm(new_vec)
    index.add(np.array([999_999]), new_vec)
    assert index.search(new_vec[0], 1)[1].tolist() == [999_999]
    assert float(index.reconstruct(999_999) @ new_vec[0]) > 0.99  # 8-bit codes, near exact
    index.add(np.array([999_999]), vecs[:1])  # replacing keeps one entry per id
    assert index.ntotal == len(ids) - 100 + 1


def _store_with(tmp_path: Path, count: int) -> Store:
    store = Store(tmp_path / "library.sqlite3")
    root = store.add_root(tmp_path)
    vecs = clustered(count, seed=3)
    batch = BatchWrite(model_id=MODEL)
    for i, v in enumerate(vecs):
        h = f"{i:032x}"
        batch.indexed.append(PhotoWrite(root.id, str(tmp_path / f"{i}.jpg"), 1, 1, h, 4, 3, "JPEG"))
        batch.vectors[h] = v
    store.write_batch(batch)
    return store


def _approximate_library(tmp_path: Path) -> tuple[Store, Path, VectorIndex]:
    """600 photos and their approximate index, saved for the store's generation."""
    store = _store_with(tmp_path, 600)
    path = tmp_path / "v.faiss"
    index = VectorIndex.build_from_store(store, MODEL, DIM, threshold=500)
    index.save(path, store.generation())
    return store, path, index


def _write_photos(store: Store, tmp_path: Path, count: int, seed: int) -> None:
    batch = BatchWrite(model_id=MODEL)
    for i, v in enumerate(clustered(count, seed=seed)):
        h, name = f"{seed:08x}{i:024x}", str(tmp_path / f"s{seed}-{i}.jpg")
        batch.indexed.append(PhotoWrite(1, name, 1, 1, h, 4, 3, "JPEG"))
        batch.vectors[h] = v
    store.write_batch(batch)


def test_a_commit_during_a_readers_rebuild_is_followed(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The writer's last commit lands while a reader rebuilds from the store (after the
    vectors were read): the reader must still come to hold it. Labelled with the newer
    generation, the rebuilt index looked current and stayed without those photos."""
    store = _store_with(tmp_path, 50)
    live = LiveIndex(tmp_path / "missing.faiss", store, MODEL, DIM, check_every=0.0)
    assert live.get().ntotal == 50
    _write_photos(store, tmp_path, 5, seed=7)
    load_vectors = store.load_vectors

    def read_then_commit(model_id: str):  # noqa: ANN202
        vectors = load_vectors(model_id)
        _write_photos(store, tmp_path, 3, seed=8)  # the writer's last batch
        monkeypatch.setattr(store, "load_vectors", load_vectors)
        return vectors

    monkeypatch.setattr(store, "load_vectors", read_then_commit)
    assert live.get().ntotal == 55  # the rebuild the commit raced
    assert live.get().ntotal == 58  # and the next look sees it
    store.close()


def test_a_stale_approximate_file_is_caught_up_not_rebuilt(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A writer stopped after commits its file never took (kill -9 past the approximate
    threshold): the next reader and the next writer apply the photos changed since the
    file's generation (new, changed in place, removed, failed) to it, and train nothing."""
    store, path, _ = _approximate_library(tmp_path)
    by_path = {r.path: r.id for r in store.get_photos(store.indexed_ids(MODEL).tolist()).values()}
    changed_id, removed_id, failed_id = by_path[str(tmp_path / "7.jpg")], 1, 2
    old_vector, new_vector = store.photo_vector(changed_id, MODEL), clustered(1, seed=11)[0]
    batch = BatchWrite(model_id=MODEL, removed_ids=[removed_id])
    batch.indexed.append(PhotoWrite(1, str(tmp_path / "7.jpg"), 2, 2, "c" * 32, 4, 3, "JPEG"))
    batch.vectors["c" * 32] = new_vector
    failed = store.get_photos([failed_id])[failed_id]
    batch.failed.append(FailureWrite(1, failed.path, 3, 3, "cannot identify image file"))
    store.write_batch(batch)
    _write_photos(store, tmp_path, 5, seed=4)
    monkeypatch.setattr("searchapp.vectors.build_ivf", _no_training)
    stale = VectorIndex.load(path, MODEL)
    assert stale.catch_up(store) == 1 + 2 + 5  # read: the changed, the gone, the new
    monkeypatch.setattr(VectorIndex, "build_from_store", _no_training)

    for reader in (open_index(path, store, MODEL, DIM, save=False),
                   LiveIndex(path, store, MODEL, DIM).get()):  # fmt: skip
        assert reader.kind == KIND_IVF and reader.generation == store.generation()
        assert np.array_equal(np.sort(reader.ids()), store.indexed_ids(MODEL))
        assert removed_id not in reader.ids() and failed_id not in reader.ids()
        now = reader.reconstruct(changed_id)  # 8-bit codes: near its new vector, not the old
        assert float(now @ new_vector) > 0.9 and float(now @ old_vector) < 0.5
    assert read_index_info(path).generation < store.generation()  # readers save nothing
    writer = open_index(path, store, MODEL, DIM)
    assert read_index_info(path).generation == writer.generation == store.generation()
    assert writer.ntotal == 600 - 2 + 5
    writer.save(path, store.generation() + 5)  # ahead: a store put back from a backup
    with pytest.raises(AssertionError, match="rebuilt"):  # its rows may be older: rebuilt
        open_index(path, store, MODEL, DIM, save=False)
    store.close()


@pytest.mark.parametrize("tries", [1, 3])
def test_a_photo_removed_during_a_catch_up_stays_out(tmp_path: Path, monkeypatch, tries) -> None:  # noqa: ANN001
    """A writer commits between a catch-up's reads: a photo read as new and then removed
    must not be added. Repeated reads see one moment (3 tries); with one, the index keeps
    only photos still indexed at the last read and takes the older generation."""
    store, path, _ = _approximate_library(tmp_path)
    _write_photos(store, tmp_path, 3, seed=5)  # new since the file
    victim = int(store.vectors_since(MODEL, store.generation() - 1)[0][0])
    before = store.generation()
    indexed_ids = store.indexed_ids

    def removed_first(model_id: str) -> np.ndarray:
        store.write_batch(BatchWrite(model_id=MODEL, removed_ids=[victim]))
        monkeypatch.setattr(store, "indexed_ids", indexed_ids)
        return indexed_ids(model_id)

    monkeypatch.setattr(store, "indexed_ids", removed_first)
    monkeypatch.setattr("searchapp.vectors.CATCH_UP_TRIES", tries)
    index = VectorIndex.load(path, MODEL)
    index.catch_up(store)
    assert victim not in index.ids()
    assert np.array_equal(np.sort(index.ids()), store.indexed_ids(MODEL))
    assert index.generation == (before if tries == 1 else store.generation())
    store.close()


def test_a_file_saved_after_the_store_was_read_is_current(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The writer commits and saves between a reader's look at the store and its load of
    the file: the file is ahead of what was read, and current; nothing is redone."""
    store, path, _ = _approximate_library(tmp_path)
    current = store.generation()
    reads = [current - 1]  # what the store said just before the writer's commit
    real = store.generation
    monkeypatch.setattr(store, "generation", lambda: reads.pop() if reads else real())
    monkeypatch.setattr(VectorIndex, "build_from_store", _no_training)
    monkeypatch.setattr(VectorIndex, "catch_up", _no_training)
    assert open_index(path, store, MODEL, DIM, save=False).generation == current
    store.close()


def test_live_index_catches_up_a_file_no_writer_saves(tmp_path: Path) -> None:
    """The writer commits, then is killed before its next save: a reader holding the
    approximate index waits ``catch_up_after`` for a new file, then catches up itself."""
    store, path, _ = _approximate_library(tmp_path)
    waiting = LiveIndex(path, store, MODEL, DIM, check_every=0.0)  # the default: 2 minutes
    overdue = LiveIndex(path, store, MODEL, DIM, check_every=0.0, catch_up_after=0.0)
    held = waiting.get()
    assert overdue.get().ntotal == 600
    _write_photos(store, tmp_path, 5, seed=6)
    assert waiting.get() is held  # a running writer would save within the minute
    overdue.get()  # starts the reload and catch-up in the background
    overdue.wait(30)
    assert overdue.get().ntotal == 605 and overdue.get().generation == store.generation()
    store.close()


def _no_training(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a stale approximate index was rebuilt instead of caught up")


def test_refit_switches_kind_both_ways(tmp_path: Path) -> None:
    store = _store_with(tmp_path, 600)
    index = open_index(tmp_path / "v.faiss", store, MODEL, DIM)
    assert index.kind == KIND_FLAT
    assert index.refit(store, threshold=500) and index.kind == KIND_IVF
    assert not index.refit(store, threshold=500)  # stays: no flapping at the same size
    assert index.refit(store, threshold=2_000) and index.kind == KIND_FLAT
    assert index.ntotal == 600
    store.close()


def test_live_index_serves_the_old_index_until_the_new_file_is_loaded(tmp_path: Path) -> None:
    store, path, writer = _approximate_library(tmp_path)
    live = LiveIndex(path, store, MODEL, DIM, check_every=0.0)
    first = live.get()
    assert first.kind == KIND_IVF and first.ntotal == 600
    # the writer adds photos: the store moves on before the file does
    batch = BatchWrite(model_id=MODEL)
    extra = clustered(5, seed=4)
    for i, v in enumerate(extra):
        h = f"e{i:031x}"
        batch.indexed.append(PhotoWrite(1, str(tmp_path / f"e{i}.jpg"), 1, 1, h, 4, 3, "JPEG"))
        batch.vectors[h] = v
    result = store.write_batch(batch)
    assert live.get() is first  # stale file, large index: keep serving, no rebuild here
    writer.add(np.fromiter(result.upserted, np.int64), extra)
    writer.save(path, store.generation())  # 5 more vectors: a new size, seen without waiting
    served = live.get()  # answers at once; the reload runs in the background
    assert served.ntotal in (600, 605)
    live.wait(30)
    assert live.get().ntotal == 605
    store.close()


def test_live_index_sees_a_new_file_of_the_same_size_and_time(tmp_path: Path) -> None:
    """Two saves within one clock tick, the second of the same size (a photo replaced by
    another): only the inode tells the files apart, and the reader must load the new one."""
    store, path, writer = _approximate_library(tmp_path)
    before = path.stat()
    live = LiveIndex(path, store, MODEL, DIM, check_every=0.0)
    assert live.get().ntotal == 600
    _write_photos(store, tmp_path, 1, seed=9)  # a new photo in; an old one leaves the index
    new_id = max(store.load_vectors(MODEL)[0].tolist())
    writer.remove([1])
    writer.add(np.asarray([new_id], np.int64), clustered(1, seed=9))
    writer.save(path, store.generation())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    live.get()  # starts the background reload
    live.wait(30)
    assert new_id in live.get().ids().tolist()
    store.close()
