"""One status report of a library, for ``searchapp status``, its ``--json`` and the page.

Built from the store, the index file's header (its vectors are not loaded), a stat-only
look at the photo folders and the writer lock's info file; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from searchapp.activity import WriterInfo, read_writer
from searchapp.config import Settings
from searchapp.plan import PendingFiles, count_pending, live_roots
from searchapp.store import RootRecord, RunRecord, Store
from searchapp.vectors import IndexFileError, catches_up, read_index_info

NO_INDEX = "none yet"
REBUILD_NOTE = "searches rebuild it from the stored vectors in memory; the next index run saves it"
# an approximate index is not retrained for this (27-85 s at a million vectors): the
# photos changed since its generation are applied to a loaded copy (vectors.open_index;
# a copy already held by a page or watcher after live_index.CATCH_UP_AFTER_S)
CATCH_UP_NOTE = (
    "searches apply the photos indexed or removed since from the stored vectors, without "
    "a rebuild (within 2 minutes where it was already loaded); the next index run saves it"
)
EMPTY_COUNTS = {"photos": 0, "failed": 0}
SNAPSHOT_TRIES = 5


@dataclass(frozen=True)
class IndexInfo:
    """The vector index file as it is on disk, and whether it matches the library."""

    type: str  # e.g. "exact: faiss IndexIDMap2(IndexFlatIP)", or "none yet"
    vectors: int  # vectors in the file; 0 when there is no readable file
    size_bytes: int
    path: str
    problem: str | None = None  # why the file does not match the library; None when it does
    generation: int = 0  # the library generation the file was saved for (0: no file)
    catches_up: bool = False  # an approximate file behind the library (see the note)

    @property
    def note(self) -> str | None:
        """One line for people when the file does not match the library, else None."""
        if self.problem is None:
            return None
        then = CATCH_UP_NOTE if self.catches_up else REBUILD_NOTE
        return f"file {self.problem}; {then}"


@dataclass(frozen=True)
class Failure:
    """A file that could not be indexed, and the one-line reason."""

    path: str
    reason: str


@dataclass(frozen=True)
class FailureGroup:
    """Failed files that share a reason (its per-file detail left out), first few named."""

    reason: str
    count: int
    examples: list[Failure]


@dataclass(frozen=True)
class StatusReport:
    """Everything ``status`` says about a library; :meth:`as_dict` is its ``--json``."""

    data_dir: str
    roots: list[RootRecord]
    photos: int
    failed: int
    pending: PendingFiles | None  # None when not asked for (it stats every file)
    failures: list[Failure]  # sorted by path; maybe only the first ``failed``
    model: str
    weights: str
    model_id: str
    random_weights: bool
    device: str  # where the model runs (auto resolved, checked against the machine)
    precision: str  # what it computes in, as it runs (never a precision it ignores)
    index: IndexInfo
    last_run: RunRecord | None
    writer: WriterInfo | None  # who holds the writer lock now

    @property
    def daemon(self) -> dict:
        """Whether a watcher runs, and since when; ``{"running": False}`` otherwise."""
        w = self.writer
        if w is None or not w.is_watcher:
            return {"running": False}
        return {"running": True, "pid": w.pid, "since": w.since,
                "last_activity": w.last_activity, "activity": w.activity}  # fmt: skip

    def failure_groups(self, per_reason: int = 3) -> list[FailureGroup]:
        """The listed failures by reason, largest group first, ``per_reason`` paths each."""
        groups: dict[str, list[Failure]] = {}
        for f in self.failures:
            groups.setdefault(reason_head(f.reason), []).append(f)
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [FailureGroup(r, len(fs), fs[:per_reason]) for r, fs in ordered]

    def as_dict(self) -> dict:
        pending = self.pending
        return {
            "roots": [{"path": r.path, "online": r.online} for r in self.roots],
            "photos": self.photos,
            "failed": self.failed,
            "pending": None
            if pending is None
            else {
                "to_index": pending.to_index,
                "to_remove": pending.to_remove,
                "to_embed": pending.to_embed,
            },
            "failures": [{"path": f.path, "reason": f.reason} for f in self.failures],
            "model": self.model,
            "weights": self.weights,
            "model_id": self.model_id,
            "random_weights": self.random_weights,
            "device": self.device,
            "precision": self.precision,
            "index": {
                "type": self.index.type,
                "vectors": self.index.vectors,
                "path": self.index.path,
                "bytes": self.index.size_bytes,
                "problem": self.index.problem,
            },
            "data_dir": self.data_dir,
            "last_run": self.last_run.__dict__ if self.last_run else None,
            "daemon": self.daemon,
            "writer": self.writer.__dict__ if self.writer else None,
        }


def reason_head(reason: str) -> str:
    """``damaged image (broken data stream)`` -> ``damaged image``: the kind of failure."""
    return reason.partition(" (")[0].strip() or reason


def build_status(
    settings: Settings,
    store: Store | None,
    model_id: str,
    *,
    device: str,
    precision: str,
    failures: int | None = None,
    pending: bool = True,
) -> StatusReport:
    """The report for this library; ``store`` None means no library file exists yet.

    ``device`` and ``precision`` are where and how the model runs (see
    :func:`searchapp.model.device_and_precision`).

    ``failures`` bounds how many failed files are listed (None: all); ``pending`` runs the
    stat-only diff of the folders (no file is read).
    """
    counts, index = _counts_and_index(settings, store, model_id)
    writer = read_writer(settings)
    runs = store.recent_runs(1) if store else []
    listed = store.failures(limit=failures) if store else []
    todo = None
    if pending:
        todo = count_pending(store, model_id) if store else PendingFiles(0, 0)
    return StatusReport(
        data_dir=str(settings.data_dir),
        # with ``pending`` the folders are read anyway: say which are there now (a drive
        # unplugged since the last run at once); without, as the last run saw them
        roots=(live_roots(store) if pending else store.list_roots()) if store else [],
        photos=counts["photos"],
        failed=counts["failed"],
        pending=todo,
        failures=[Failure(f.path, f.failure_reason or "unknown reason") for f in listed],
        model=settings.model,
        weights=settings.weights or "default",
        model_id=model_id,
        random_weights=settings.random_weights,
        device=device,
        precision=precision,
        index=index,
        last_run=settle_run(runs[0], writer) if runs else None,
        writer=writer,
    )


STOPPED_NOTE = "its process ended before it finished; the next run resumes the work"


def settle_run(run: RunRecord, writer: WriterInfo | None) -> RunRecord:
    """``run`` as it stands: a row still "running" whose process is gone (kill -9, a
    power cut) is "stopped"; only a live writer of that pid keeps it running."""
    if run.state != "running" or (writer is not None and writer.pid == run.pid):
        return run
    return replace(run, state="stopped", message=run.message or STOPPED_NOTE)


def _counts_and_index(
    settings: Settings, store: Store | None, model_id: str
) -> tuple[dict[str, int], IndexInfo]:
    """The photo counts and the index file, as of one generation.

    The counts come with their generation in one snapshot; a writer may save a newer file
    before the file is read, so the snapshot is taken again until the file is not ahead of
    it (a few tries: a file still ahead after them is reported as it is).
    """
    for _ in range(SNAPSHOT_TRIES):
        counts, generation = store.counts_at_generation() if store else (EMPTY_COUNTS, 0)
        index = describe_index_file(settings, model_id, generation, counts["photos"])
        if index.generation <= generation:
            break
    return counts, index


def describe_index_file(
    settings: Settings, model_id: str, generation: int, photos: int
) -> IndexInfo:
    """The index file against the library: current, or why it is not (and what the next
    search or index run does about it)."""
    path = str(settings.index_path)
    try:
        info = read_index_info(settings.index_path)
    except IndexFileError as err:
        problem = None if str(err) == "missing" and not photos else str(err)
        return IndexInfo(NO_INDEX, 0, 0, path, problem)
    problem, caught_up = None, False
    if info.model_id != model_id:  # readers rebuild it, whatever its kind
        problem = f"built for another model ({info.model_id})"
    elif info.generation != generation:
        problem = (
            f"stale ({info.count} vectors from generation {info.generation}, "
            f"library at generation {generation})"
        )
        caught_up = catches_up(info.kind, info.generation, generation)
    return IndexInfo(
        info.describe(), info.count, info.size_bytes, path, problem, info.generation, caught_up
    )


__all__ = [
    "Failure",
    "FailureGroup",
    "IndexInfo",
    "StatusReport",
    "build_status",
    "describe_index_file",
    "reason_head",
]
