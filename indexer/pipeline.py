"""One indexing run: scan roots, diff against the store, decode, embed, write in batches.

Decoding (read, hash, draft-decode, resize, thumbnail) runs in worker threads while the
model embeds the previous batch. Each batch is one SQLite transaction, so a run killed
at any instant resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from searchapp.config import Settings
from searchapp.decoder import decode_photo, hash_bytes, read_file
from searchapp.errors import ImageDecodeError
from searchapp.faults import fault_point, trace
from searchapp.model import ImageEncoder, set_torch_threads
from searchapp.plan import Plan, WorkItem, plan_changes
from searchapp.store import (
    STATUS_INDEXED,
    BatchWrite,
    FailureWrite,
    MoveWrite,
    PhotoWrite,
    Store,
)
from searchapp.thumbnails import remove_orphan_thumbnails, write_thumbnail
from searchapp.vectors import VectorIndex

SAVE_EVERY_S = 60.0
MAX_LANES = 4  # past this, more threads per lane beat more lanes (memory, cache)


@dataclass
class IndexStats:
    """Counts of one run; ``embedded`` counts model calls (images sent to the model)."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    embedded: int = 0
    offline_roots: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"added {self.added}, updated {self.updated}, moved {self.moved}, "
            f"removed {self.removed}, unchanged {self.unchanged}, failed {self.failed}"
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """What a progress bar needs: files done of total, and the rate."""

    done: int
    total: int
    images_per_s: float
    stats: IndexStats


ProgressCallback = Callable[[Progress], None]


@dataclass
class _Decoded:
    work: WorkItem
    content_hash: str | None = None
    pixels: np.ndarray | None = None
    photo: PhotoWrite | None = None
    failure: str | None = None


@dataclass
class _Chunk:
    """One batch between classification and commit: what to write, what the model does."""

    batch: BatchWrite
    to_embed: list[_Decoded]
    size: int
    vectors: Future | None = None


@dataclass
class _Counter:
    """Files done, written to the runs table and reported after every commit."""

    total: int
    run_id: int
    started: float
    progress: ProgressCallback | None
    done: int = 0
    last_save: float = field(default_factory=time.monotonic)

    def add(self, files: int, store: Store, stats: IndexStats) -> None:
        self.done += files
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        store.update_run(self.run_id, total=self.total, done=self.done, stats=stats.as_dict())
        if self.progress:
            self.progress(Progress(self.done, self.total, rate, stats))

    def save_due(self) -> bool:
        """True once a minute: a long run saves the FAISS file as it goes."""
        if time.monotonic() - self.last_save <= SAVE_EVERY_S:
            return False
        self.last_save = time.monotonic()
        return True


class IndexRun:
    """Indexes every root of a store with one embedder and keeps the FAISS index in step."""

    def __init__(
        self, settings: Settings, store: Store, embedder: ImageEncoder, index: VectorIndex
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.index = index
        self.model_id = embedder.model_id
        self.min_side = embedder.preprocess_config.image_size
        self._stored: set[str] = set()
        self._embedding: set[str] = set()  # contents sent to the model, not yet written

    def run(
        self,
        progress: ProgressCallback | None = None,
        paths: list[str] | None = None,
        kind: str = "index",
    ) -> IndexStats:
        """Index all roots (``paths`` limits the scan to files/folders below a root).

        ``kind`` names who ran it in the runs table (index, watch, ui).
        """
        started = time.monotonic()
        stats = IndexStats()
        run_id = self.store.start_run(kind)
        threads = set_torch_threads(model_threads(self.settings))
        try:
            plan = plan_changes(self.store, self.model_id, paths)
            stats.unchanged, stats.offline_roots = plan.unchanged, plan.offline_roots
            self._process(plan, stats, progress, run_id, started)
            self._finish(stats)
        except BaseException as err:
            stats.seconds = time.monotonic() - started
            state = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            try:
                self.index.save(self.settings.index_path, self.store.generation())
                self.store.finish_run(run_id, state, stats.as_dict(), str(err)[:300])
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        finally:
            set_torch_threads(threads)
        stats.seconds = time.monotonic() - started
        self.store.finish_run(run_id, "done", stats.as_dict())
        return stats

    # ------------------------------------------------------------ processing
    def _process(
        self,
        plan: Plan,
        stats: IndexStats,
        progress: ProgressCallback | None,
        run_id: int,
        started: float,
    ) -> None:
        moved_from = {
            k.content_hash: k
            for k in plan.missing.values()
            if k.content_hash and k.status == STATUS_INDEXED
        }
        total = len(plan.work)
        if total:
            self.embedder.start_loading()  # the weights load while the first batches decode
        lanes = model_lanes(self.settings, self.embedder.device)
        counter = _Counter(total, run_id, started, progress)
        in_flight: deque[_Chunk] = deque()
        self._embedding.clear()
        model_pool = ThreadPoolExecutor(lanes, thread_name_prefix="model")
        try:
            for decoded in self._decoded(plan.work, moved_from):
                in_flight.append(self._submit(decoded, model_pool, moved_from, plan, stats))
                # one more than the lanes is queued, so no lane idles while a batch is written
                if len(in_flight) > lanes:
                    self._commit(in_flight.popleft(), stats, counter)
            while in_flight:
                self._commit(in_flight.popleft(), stats, counter)
        finally:
            model_pool.shutdown(wait=True, cancel_futures=True)  # interrupted: drop queued work
        gone = list(plan.missing)
        if gone:
            batch = BatchWrite(model_id=self.model_id, removed_ids=gone)
            self._write(batch)
            stats.removed += len(gone)
        if progress and total == 0:
            progress(Progress(0, 0, 0.0, stats))

    def _submit(
        self,
        decoded: list[_Decoded],
        pool: ThreadPoolExecutor,
        moved_from: dict,
        plan: Plan,
        stats: IndexStats,
    ) -> _Chunk:
        """Classify a decoded batch and hand what needs the model to a free model lane."""
        chunk = _Chunk(BatchWrite(model_id=self.model_id), [], len(decoded))
        # one query per batch, not per photo: which contents have (or are getting) a vector
        self._stored = self._embedding | self.store.embedded_hashes(
            [d.content_hash for d in decoded if d.content_hash], self.model_id
        )
        for d in decoded:
            self._classify(d, chunk.batch, chunk.to_embed, moved_from, plan, stats)
        if chunk.to_embed:
            self._embedding.update(d.content_hash for d in chunk.to_embed)
            pixels = np.stack([d.pixels for d in chunk.to_embed])
            chunk.vectors = pool.submit(self.embedder.encode_prepared, pixels)
        return chunk

    def _commit(self, chunk: _Chunk, stats: IndexStats, counter: _Counter) -> None:
        """Wait for a batch's vectors and write it: batches commit in the order they came."""
        if chunk.vectors is not None:
            vecs = chunk.vectors.result()
            stats.embedded += len(chunk.to_embed)
            trace("embedded", [d.content_hash for d in chunk.to_embed])
            fault_point("embed")
            for d, v in zip(chunk.to_embed, vecs, strict=True):
                chunk.batch.vectors[d.content_hash] = v
        self._write(chunk.batch)
        # later batches that share a content read its vector from the store now
        self._embedding.difference_update(chunk.batch.vectors)
        counter.add(chunk.size, self.store, stats)
        if counter.save_due():
            self.index.save(self.settings.index_path, self.store.generation())

    def _decoded(self, work: list[WorkItem], moved_from: dict) -> Iterator[list[_Decoded]]:
        """Decode in worker threads, in order, a bounded window ahead of the model."""
        workers = decode_workers(self.settings)
        size = self.settings.batch_size
        with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
            pending = []
            for i in range(0, len(work), size):
                pending.append(
                    [pool.submit(self._decode_one, w, moved_from) for w in work[i : i + size]]
                )
                if len(pending) > 2:
                    yield [f.result() for f in pending.pop(0)]
            for futures in pending:
                yield [f.result() for f in futures]

    def _decode_one(self, w: WorkItem, moved_from: dict) -> _Decoded:
        if w.file.error:
            return _Decoded(w, failure=f"folder cannot be read ({w.file.error.lower()})")
        try:
            fault_point("decode")
            data = read_file(w.file.path)
            chash = hash_bytes(data)
            if chash in moved_from or (
                w.known and w.known.content_hash == chash and w.known.embedded
            ):
                return _Decoded(w, content_hash=chash)  # no decode needed: same content
            photo = decode_photo(data, self.min_side, chash)
            write_thumbnail(self.settings.thumbs_dir, chash, photo.image)
            pixels = self.embedder.prepare(photo.image)
        except ImageDecodeError as err:
            return _Decoded(w, failure=str(err))
        return _Decoded(
            w,
            content_hash=chash,
            pixels=pixels,
            photo=PhotoWrite(
                w.root_id,
                w.file.path,
                len(data),
                w.file.mtime_ns,
                chash,
                photo.width,
                photo.height,
                photo.format,
                photo.taken_at,
                photo.camera,
            ),
        )

    def _classify(
        self,
        d: _Decoded,
        batch: BatchWrite,
        to_embed: list[_Decoded],
        moved_from: dict,
        plan: Plan,
        stats: IndexStats,
    ) -> None:
        w = d.work
        if d.failure is not None:
            batch.failed.append(
                FailureWrite(w.root_id, w.file.path, w.file.size, w.file.mtime_ns, d.failure)
            )
            stats.failed += 1
            return
        if d.photo is None and w.known and w.known.content_hash == d.content_hash:
            batch.touched.append((w.known.id, w.file.size, w.file.mtime_ns))
            stats.unchanged += 1
            return
        if d.photo is None and d.content_hash in moved_from and w.known is None:
            old = moved_from.pop(d.content_hash)
            plan.missing.pop(old.id, None)
            batch.moved.append(
                MoveWrite(old.id, w.root_id, w.file.path, w.file.size, w.file.mtime_ns)
            )
            stats.moved += 1
            return
        if d.photo is None:  # hash matched a move target that another file took: decode now
            d = self._decode_one(WorkItem(w.root_id, w.file, None), {})
            if d.failure is not None or d.photo is None:
                self._classify(d, batch, to_embed, {}, plan, stats)
                return
        batch.indexed.append(d.photo)
        if w.known is None:
            stats.added += 1
        else:
            stats.updated += 1
        if d.content_hash not in self._stored:
            self._stored.add(d.content_hash)  # a duplicate later in the chunk reuses it
            to_embed.append(d)

    def _write(self, batch: BatchWrite) -> None:
        if not batch:
            return
        result = self.store.write_batch(batch)
        fault_point("after-commit")
        if result.removed:
            self.index.remove(np.asarray(result.removed, dtype=np.int64))
        if result.upserted:
            ids = np.fromiter(result.upserted, dtype=np.int64)
            vecs = self._vectors_for([result.upserted[i] for i in ids], batch.vectors)
            self.index.add(ids, vecs)

    def _vectors_for(self, hashes: list[str], fresh: dict[str, np.ndarray]) -> np.ndarray:
        missing = [h for h in set(hashes) if h not in fresh]
        stored = self.store.vectors_for_hashes(missing, self.model_id) if missing else {}
        return np.stack([fresh[h] if h in fresh else stored[h] for h in hashes])

    def _finish(self, stats: IndexStats) -> None:
        self.store.delete_orphan_embeddings()
        remove_orphan_thumbnails(self.settings.thumbs_dir, self.store.referenced_hashes())
        generation = self.store.generation()
        rebuilt = self.index.refit(self.store)  # exact <-> approximate past the size threshold
        if rebuilt or self.index.generation != generation or not self.settings.index_path.exists():
            self.index.save(self.settings.index_path, generation)  # else: nothing changed


def decode_workers(settings: Settings) -> int:
    """Decode threads: half the cores, at least two.

    Decoding a 12 MP JPEG in draft mode costs about a third of embedding it; two decoders
    on 2 cores keep both model lanes fed (22 vs 21 images/s with one, 288 photos).
    """
    return settings.decode_workers or max(2, (os.cpu_count() or 2) // 2)


def model_lanes(settings: Settings, device: str) -> int:
    """Batches the model works on at once, each in its own thread.

    On CPU, single-threaded lanes beat one multi-threaded call: two lanes of one thread
    embed at 33 ms per image on 2 cores, one call on two threads at 39 ms (MobileCLIP-S2,
    bf16), and a lane fills the gaps a decoder leaves. A GPU takes one batch at a time.
    """
    if settings.model_lanes:
        return settings.model_lanes
    if device != "cpu":
        return 1
    return max(1, min(MAX_LANES, os.cpu_count() or 2))


def model_threads(settings: Settings) -> int:
    """Torch threads for each lane: the cores shared by the lanes (decoders mostly wait)."""
    if settings.torch_threads:
        return settings.torch_threads
    return max(1, (os.cpu_count() or 2) // model_lanes(settings, "cpu"))
