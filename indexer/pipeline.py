"""One indexing run as stages, each a bounded window ahead of the next.

read and hash (worker threads) -> resolve (this thread: moves, duplicates, stored vectors)
-> decode and thumbnail, only files that need pixels (worker threads) -> embed (model
lanes) -> commit in order, one SQLite transaction per batch, then the FAISS index. A run
killed at any instant resumes where it stopped. The run never saves the FAISS file: it
calls ``checkpoint`` when a save is due, and its caller saves at the end or on failure.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from searchapp.config import Settings
from searchapp.faults import fault_point, pace, trace
from searchapp.indexer.resolver import Resolver, vector_of
from searchapp.indexer.stages import (
    Claim,
    Decoded,
    DecodeStage,
    Failed,
    Hashed,
    Moved,
    Ready,
    Resolved,
    ToDecode,
    Touched,
    VectorSource,
    read_and_hash,
)
from searchapp.model import ImageEncoder, set_torch_threads
from searchapp.plan import Plan, WorkItem
from searchapp.store import BatchWrite, FailureWrite, MoveWrite, Store
from searchapp.thumbnails import remove_orphan_thumbnails
from searchapp.vectors import VectorIndex

SAVE_EVERY_S = 60.0
MAX_LANES = 4  # past this, more threads per lane beat more lanes (memory, cache)
HASH_AHEAD = 1  # batches read and hashed ahead of the resolver
DECODE_AHEAD = 2  # batches decoding ahead of the model (as many as before the stages split)
# the first batch of a run is this small, so its photos are committed (searchable, on the
# progress bar) a few seconds after the model is ready instead of after a whole batch
FIRST_BATCH = 4


FILE_COUNTS = ("added", "updated", "moved", "removed", "unchanged", "failed")  # per file


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
    workers: int = 0  # Ray workers decoding and embedding (0: this machine, no Ray)

    def summary(self) -> str:
        return (
            f"added {self.added}, updated {self.updated}, moved {self.moved}, "
            f"removed {self.removed}, unchanged {self.unchanged}, failed {self.failed}"
        )

    def as_dict(self) -> dict:
        return asdict(self)

    def add_batch(self, batch: IndexStats) -> None:
        """Count a committed batch's files (kept apart until its commit, so a run cut
        short records what it wrote, not what it had decoded)."""
        for name in FILE_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(batch, name))


@dataclass(frozen=True)
class Progress:
    """What a progress bar needs: files done of total, and the rate."""

    done: int
    total: int
    images_per_s: float
    stats: IndexStats


ProgressCallback = Callable[[Progress], None]
ResolvedBatch = tuple[Claim, list[Hashed | Failed], list[Resolved]]
ReadyBatch = tuple[Claim, list[Resolved], list[Ready]]


class RemoteStage(Protocol):
    """Decode, thumbnail and embed somewhere else (a Ray cluster); batches come back in order.

    A ``Decoded`` item it returns carries its ``vector`` when its content was embedded.
    """

    @property
    def workers(self) -> int: ...

    def ready(self, batches: Iterator[ResolvedBatch]) -> Iterator[ReadyBatch]: ...

    def close(self) -> None: ...


@dataclass
class _Chunk:
    """One batch between decode and commit: what to write, and what the model does."""

    claim: Claim
    batch: BatchWrite
    size: int
    sources: dict[str, VectorSource] = field(default_factory=dict)  # rows' contents
    embed: list[str] = field(default_factory=list)  # contents sent to the model, in order
    pixels: np.ndarray | None = None  # the model's input for ``embed``
    vectors: Future | None = None
    counts: IndexStats = field(default_factory=IndexStats)  # its files, counted at commit


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
        """True once a minute: a long run has the FAISS file saved as it goes."""
        if time.monotonic() - self.last_save <= SAVE_EVERY_S:
            return False
        self.last_save = time.monotonic()
        return True


class IndexRun:
    """Carries out a plan with one embedder and keeps the FAISS index (in memory) in step.

    ``checkpoint`` is called when a periodic save of the FAISS file is due; ``finish``
    after the last commit and before the run is marked done, so that a reader who sees
    "done" finds the file saved (the Writer refits and saves there). Saving after a
    failure is the caller's.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: ImageEncoder,
        index: VectorIndex,
        *,
        checkpoint: Callable[[], None] | None = None,
        finish: Callable[[], None] | None = None,
        remote: RemoteStage | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.index = index
        self.checkpoint = checkpoint
        self.finish = finish
        self.remote = remote  # decode+embed there; the embedder then only names the model
        self.model_id = embedder.model_id
        # True from just before a batch's commit until FAISS has taken it: an index saved
        # then would be labelled with a generation whose photos it lacks (the Writer
        # reopens its file instead, which vectors.open_index brings up to date)
        self.index_behind = False

    def run(
        self, plan: Plan, progress: ProgressCallback | None = None, kind: str = "index"
    ) -> IndexStats:
        """Index what ``plan`` found; ``kind`` names who ran it in the runs table.

        The plan is not changed. Orphan vectors and thumbnails are dropped at the end.
        """
        started = time.monotonic()
        stats = IndexStats(unchanged=plan.unchanged, offline_roots=plan.offline_roots)
        run_id = self.store.start_run(kind)
        threads = set_torch_threads(model_threads(self.settings))
        try:
            self._process(plan, stats, _Counter(len(plan.work), run_id, started, progress))
            self.store.delete_orphan_embeddings()
            remove_orphan_thumbnails(self.settings.thumbs_dir, self.store.referenced_hashes())
            if self.finish is not None:
                self.finish()  # the index file is saved before the run's row says "done"
        except BaseException as err:
            stats.seconds = time.monotonic() - started
            state = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            with suppress(Exception):  # the original error is the one to report
                self.store.finish_run(run_id, state, stats.as_dict(), str(err)[:300])
            raise
        finally:
            set_torch_threads(threads)
        stats.seconds = time.monotonic() - started
        self.store.finish_run(run_id, "done", stats.as_dict())
        return stats

    # ------------------------------------------------------------ the stages
    def _process(self, plan: Plan, stats: IndexStats, counter: _Counter) -> None:
        if plan.work and self.remote is None:
            self.embedder.start_loading()  # the weights load while the first batches decode
        resolver = Resolver(self.store, self.model_id, plan.missing)
        # a remote batch comes back embedded: it is committed at once
        lanes = 0 if self.remote else model_lanes(self.settings, self.embedder.device)
        workers = ThreadPoolExecutor(decode_workers(self.settings), thread_name_prefix="decode")
        model = ThreadPoolExecutor(max(1, lanes), thread_name_prefix="model")
        in_flight: deque[_Chunk] = deque()
        resolved_batches = self._resolved(plan.work, resolver, workers)
        if self.remote is not None:
            stats.workers = self.remote.workers
            batches = self.remote.ready(resolved_batches)
        else:
            batches = self._decoded(resolved_batches, workers)
        try:
            for claim, resolved, ready in batches:
                chunk = self._assemble(claim, resolver.settle(claim, resolved, ready))
                in_flight.append(self._embed(chunk, model))
                # one more than the lanes is queued, so no lane idles while a batch is written
                if len(in_flight) > lanes:
                    self._commit(in_flight.popleft(), resolver, stats, counter)
            while in_flight:
                self._commit(in_flight.popleft(), resolver, stats, counter)
        finally:  # interrupted: drop queued work
            model.shutdown(wait=True, cancel_futures=True)
            workers.shutdown(wait=True, cancel_futures=True)
        gone = resolver.gone()
        if gone:
            removals = BatchWrite(model_id=self.model_id, removed_ids=gone)
            self._write(removals, {}, IndexStats(removed=len(gone)), stats)
        if counter.progress and not plan.work:
            counter.progress(Progress(0, 0, 0.0, stats))

    def _hashed(
        self, work: Sequence[WorkItem], pool: ThreadPoolExecutor
    ) -> Iterator[list[Hashed | Failed]]:
        """Read and hash in worker threads, batch by batch in order."""
        pending: deque[list[Future]] = deque()
        for start, stop in batch_spans(len(work), self.settings.batch_size):
            pending.append([pool.submit(read_and_hash, w) for w in work[start:stop]])
            if len(pending) > HASH_AHEAD:
                yield [f.result() for f in pending.popleft()]
        while pending:
            yield [f.result() for f in pending.popleft()]

    def _resolved(
        self, work: Sequence[WorkItem], resolver: Resolver, pool: ThreadPoolExecutor
    ) -> Iterator[ResolvedBatch]:
        """Resolve each hashed batch here (the resolver's one thread), in order."""
        for hashed in self._hashed(work, pool):
            claim, resolved = resolver.resolve(hashed)
            yield claim, hashed, resolved

    def _decoded(
        self, batches: Iterator[ResolvedBatch], pool: ThreadPoolExecutor
    ) -> Iterator[ReadyBatch]:
        """Decode what needs pixels in worker threads, a bounded window ahead."""
        decode = DecodeStage(
            self.settings.thumbs_dir,
            self.embedder.preprocess_config.image_size,
            self.embedder.prepare,
        )
        pending: deque[tuple[Claim, list[Resolved], list]] = deque()
        for claim, hashed, resolved in batches:
            slots = [
                pool.submit(decode, r, h.data) if isinstance(r, ToDecode) else r
                for h, r in zip(hashed, resolved, strict=True)
            ]
            pending.append((claim, resolved, slots))
            if len(pending) > DECODE_AHEAD:
                yield _collect(*pending.popleft())
        while pending:
            yield _collect(*pending.popleft())

    def _assemble(self, claim: Claim, items: list[Ready]) -> _Chunk:
        """Turn a decoded batch into one transaction's writes and the model's work."""
        chunk = _Chunk(claim, BatchWrite(model_id=self.model_id), len(items))
        pixels = []
        counts = chunk.counts
        for item in items:
            f = item.work.file
            if isinstance(item, Failed):
                chunk.batch.failed.append(
                    FailureWrite(item.work.root_id, f.path, f.size, f.mtime_ns, item.reason)
                )
                counts.failed += 1
            elif isinstance(item, Touched):
                chunk.batch.touched.append((item.photo_id, f.size, f.mtime_ns))
                counts.unchanged += 1
            elif isinstance(item, Moved):
                move = MoveWrite(item.photo_id, item.work.root_id, f.path, f.size, f.mtime_ns)
                chunk.batch.moved.append(move)
                counts.moved += 1
            else:
                self._add_row(chunk, item, pixels)
        if self.remote is not None and pixels:
            chunk.vectors = Future()  # embedded remotely: the vectors are here already
            chunk.vectors.set_result(np.stack(pixels))
        else:
            chunk.pixels = np.stack(pixels) if pixels else None
        return chunk

    @staticmethod
    def _add_row(chunk: _Chunk, item: Decoded, pixels: list) -> None:
        chunk.batch.indexed.append(item.photo)
        chunk.sources[item.photo.content_hash] = item.source
        if item.work.known is None:
            chunk.counts.added += 1
        else:
            chunk.counts.updated += 1
        # the model's input, or (remote) its output: a batch holds one kind
        model_input = item.vector if item.vector is not None else item.pixels
        if model_input is not None:
            chunk.embed.append(item.photo.content_hash)
            pixels.append(model_input)

    def _embed(self, chunk: _Chunk, pool: ThreadPoolExecutor) -> _Chunk:
        """Hand the batch's new contents to a free model lane."""
        if chunk.pixels is not None:
            chunk.vectors = pool.submit(self.embedder.encode_prepared, chunk.pixels)
            chunk.pixels = None
        return chunk

    def _commit(
        self, chunk: _Chunk, resolver: Resolver, stats: IndexStats, counter: _Counter
    ) -> None:
        """Wait for a batch's vectors and write it: batches commit in the order they came."""
        if chunk.vectors is not None:
            vecs = chunk.vectors.result()
            stats.embedded += len(chunk.embed)
            trace("embedded", chunk.embed)
            fault_point("embed")
            chunk.claim.vectors.update(zip(chunk.embed, vecs, strict=True))
        chunk.batch.vectors = chunk.claim.vectors
        rows = {h: vector_of(source, h) for h, source in chunk.sources.items()}
        self._write(chunk.batch, rows, chunk.counts, stats)
        resolver.committed(chunk.claim)  # later batches read these vectors from the store
        pace()
        if self.remote is not None:  # a worker may have gone (a node lost) since the start
            stats.workers = self.remote.workers
        counter.add(chunk.size, self.store, stats)
        if self.checkpoint is not None and counter.save_due():
            self.checkpoint()

    def _write(
        self,
        batch: BatchWrite,
        vectors: dict[str, np.ndarray],
        counts: IndexStats,
        stats: IndexStats,
    ) -> None:
        """Commit one batch, then bring the FAISS index in step with it. The batch's
        ``counts`` join the run's ``stats`` right after the commit (a failure after it
        still records the batch's files)."""
        if not batch:
            stats.add_batch(counts)
            return
        self.index_behind = True  # from before the commit: an interrupt may land just after
        result = self.store.write_batch(batch)
        stats.add_batch(counts)
        fault_point("after-commit")
        if result.removed:
            self.index.remove(np.asarray(result.removed, dtype=np.int64))
        if result.upserted:
            ids = np.fromiter(result.upserted, dtype=np.int64, count=len(result.upserted))
            self.index.add(ids, np.stack([vectors[h] for h in result.upserted.values()]))
        self.index_behind = False


def _collect(
    claim: Claim, resolved: list[Resolved], slots: list
) -> tuple[Claim, list[Resolved], list[Ready]]:
    return claim, resolved, [s.result() if isinstance(s, Future) else s for s in slots]


def decode_workers(settings: Settings, cpus: int | None = None) -> int:
    """Decode threads: half the cores, at least two.

    Decoding a 12 MP JPEG in draft mode costs about a third of embedding it; two decoders
    keep both model lanes fed (docs/PERFORMANCE.md, "Tuning choices").
    """
    return settings.decode_workers or max(2, (cpus or os.cpu_count() or 2) // 2)


def model_lanes(settings: Settings, device: str, cpus: int | None = None) -> int:
    """Batches the model works on at once, each in its own thread.

    On CPU, single-threaded lanes beat one multi-threaded call (no OpenMP barriers, and a
    lane fills the gaps a decoder leaves; docs/PERFORMANCE.md, "Tuning choices"). A GPU
    takes one batch at a time, whatever ``model_lanes`` says: its passes are serialized
    (two threads in one model crash PyTorch on MPS). ``cpus``: the cores this model may
    use (a Ray worker's share of its machine); default, this machine's.
    """
    if device != "cpu":
        return 1
    if settings.model_lanes:
        return settings.model_lanes
    return max(1, min(MAX_LANES, cpus or os.cpu_count() or 2))


def model_threads(settings: Settings, cpus: int | None = None) -> int:
    """Torch threads for each lane: the cores shared by the lanes (decoders mostly wait)."""
    if settings.torch_threads:
        return settings.torch_threads
    return max(1, (cpus or os.cpu_count() or 2) // model_lanes(settings, "cpu", cpus))


def batch_spans(count: int, size: int, first: int = FIRST_BATCH) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` of each batch of ``count`` items: a small first one, then ``size``."""
    start, stop = 0, min(count, first, size)
    while start < count:
        yield start, stop
        start, stop = stop, min(count, stop + size)
