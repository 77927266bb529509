"""The one owner of a library's writes, and ``submit``, the one way to ask for a write.

A :class:`Writer` holds the open store, the vector index and the generation they share,
and saves the index file; nothing else writes rows or saves the index. It exists only
under the writer lock. :func:`submit` decides once, for the CLI and the page alike: take
the lock and run the command here, or hand it to the running watcher, whose daemon runs
the same ``Writer`` methods.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from searchapp.activity import WriterInfo, read_writer
from searchapp.config import Settings, command_for
from searchapp.errors import DiskFullError, RootError, WriterBusyError
from searchapp.indexer.commands import (
    AddRoots,
    Command,
    Outcome,
    RemoveRoot,
    absolute,
)
from searchapp.indexer.handoff import submit_request, wait_for_answer, withdraw_request
from searchapp.indexer.lock import WriterLock
from searchapp.indexer.pipeline import IndexRun, IndexStats, ProgressCallback, RemoteStage
from searchapp.model import ImageEncoder, LazyEmbedder, resolve_spec
from searchapp.plan import apply_root_observations, plan_changes
from searchapp.store import RootRecord, Store
from searchapp.vectors import open_index

log = logging.getLogger(__name__)

HANDOFF_NOTICE_S = 1.0  # how long a watcher may take to name itself in writer.json


class Writer:
    """Writes one library: roots, indexing runs, removals; keeps FAISS in step and saved.

    Made with the held ``lock`` (the proof that this process is the one writer); the
    model loads only when a run has a photo to embed.
    """

    def __init__(
        self, settings: Settings, lock: WriterLock, embedder: ImageEncoder | None = None
    ) -> None:
        self.settings = settings
        self.lock = lock
        self.store = Store(settings.db_path)  # a damaged library fails first, in one line
        self.remote: RemoteStage | None = None  # the Ray workers (--ray), opened on first use
        self._embedder = embedder
        # FAISS lacks (or still holds) photos the store has committed (or removed): set by
        # a run or removal that failed between the two; nothing saves it until rebuilt
        self._index_behind = False
        try:
            self._spec = None if embedder else resolve_spec(settings)  # resolved once
            self.model_id = embedder.model_id if embedder else self._spec.model_id
            self.dim = embedder.dim if embedder else self._spec.dim
            self.index = self._open_index()
        except BaseException:
            self.store.close()
            raise
        self.generation = self.index.generation

    @property
    def embedder(self) -> ImageEncoder:
        """The model, made at the first indexing run: adding or removing a folder needs
        none (nor torch, nor its device checks and notices)."""
        if self._embedder is None:
            ray = bool(self.settings.ray_address)
            self._embedder = LazyEmbedder(self.settings, embeds_here=not ray, spec=self._spec)
        return self._embedder

    # ------------------------------------------------------------ commands
    def run(self, command: Command, progress: ProgressCallback | None = None) -> Outcome:
        """Do one command (from this process or handed over by another)."""
        if isinstance(command, AddRoots):
            before = {r.path for r in self.store.list_roots()}
            roots = tuple(r.path for r in self.add_roots(command.paths))
            return Outcome(roots=roots, new_roots=tuple(r for r in roots if r not in before))
        if isinstance(command, RemoveRoot):
            root, removed = self.remove_root(command.path)
            return Outcome(roots=(root,), removed_photos=removed)
        self._open_remote()  # a cluster that cannot run fails before anything is written
        added = self.add_roots(command.add_roots)
        if not self.store.list_roots():
            raise RootError(
                "no photo folders yet; add one with: "
                f"{command_for(self.settings.data_dir)} index PATH"
            )
        paths = list(command.paths) if command.paths is not None else None
        stats = self.index_photos(paths, command.retry_failed, progress)
        return Outcome(stats=stats, roots=tuple(r.path for r in added))

    def add_roots(self, paths: Sequence[str]) -> list[RootRecord]:
        """Register folders (checked to be folders); the next index run reads them."""
        return [self.store.add_root(path) for path in paths]

    def index_photos(
        self,
        paths: list[str] | None = None,
        retry_failed: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IndexStats:
        """One indexing run over every root, or only ``paths``; the index is saved before
        the run is recorded as done."""
        remote = self._open_remote()
        self._catch_up()
        if retry_failed:
            self.store.clear_failures(paths)
        plan = plan_changes(self.store, self.embedder.model_id, paths)
        apply_root_observations(self.store, plan)
        run = IndexRun(
            self.settings,
            self.store,
            self.embedder,
            self.index,
            checkpoint=self.save,
            finish=self._save_if_stale,  # before the run's row says "done"
            remote=remote,
        )
        try:
            stats = run.run(plan, progress, self.lock.kind)
        except BaseException as err:
            self._index_behind = run.index_behind  # it was caught up before the run
            self._keep_committed(stopping=not isinstance(err, Exception))
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise DiskFullError(
                    f"the disk holding {self.settings.data_dir} is full; free some space and "
                    "run the command again (everything committed so far is kept)."
                ) from None
            raise
        return stats

    def _keep_committed(self, stopping: bool) -> None:
        """After a failed run, keep what was committed searchable.

        An index that lacks a committed batch is never saved under the store's generation:
        a process that is stopping leaves the file stale (the next open brings it up to date
        from the store); one that lives on (the watcher) does that now, or at its next save.
        """
        if stopping and self._index_behind:
            return
        try:
            self.save()  # rebuilds first where the index is behind
        except Exception as err:  # noqa: BLE001 - the run's own error is the one to raise
            log.warning("index: could not save the vector index after a failed run (%s); "
                        "the next open rebuilds it from the library", err)  # fmt: skip

    def _catch_up(self) -> None:
        """Reopen FAISS from its file, brought up to date from the store (and saved), if a
        failure left it out of step."""
        if self._index_behind:
            self.index = self._open_index()
            self.generation = self.index.generation
            self._index_behind = False

    def _open_remote(self) -> RemoteStage | None:
        """The Ray stage of ``--ray`` (kept for this Writer's life), or None."""
        if self.settings.ray_address and self.remote is None:
            from searchapp.indexer.ray_executor import open_ray_stage  # imports Ray

            spec = getattr(self.embedder, "spec", None) or resolve_spec(self.settings)
            self.remote = open_ray_stage(self.settings, spec)
        return self.remote

    def _save_if_stale(self) -> None:
        """Fit the index to its size (exact <-> approximate), then save it if out of date."""
        rebuilt = self.index.refit(self.store, self.settings.ann_threshold)
        stale = self.index.generation != self.store.generation()
        if rebuilt or stale or not self.settings.index_path.exists():
            self.save()
        self.generation = self.store.generation()

    def remove_root(self, path: str) -> tuple[str, int]:
        """Forget a folder and its photos; returns the folder and how many photos left."""
        self._catch_up()
        self._index_behind = True  # from just before the commit until FAISS forgets them
        try:
            root, ids = self.store.remove_root(absolute(path))
        except RootError:
            self._index_behind = False  # not a folder of this library: nothing removed
            raise
        self.index.remove(ids)
        self._index_behind = False
        self.save()
        return root.path, len(ids)

    def mark_root_online(self, root: RootRecord, online: bool) -> None:
        """Record that a folder went away (unmounted drive) or came back; photos are kept."""
        self.store.set_root_online(root.id, online)
        self.generation = self.store.generation()

    # ------------------------------------------------------------ the index file
    def save(self) -> None:
        """Write the vector index for the store's current generation (atomically)."""
        if self._index_behind:
            self._catch_up()  # rebuilt from the store, and saved
            return
        self.generation = self.store.generation()
        self.index.save(self.settings.index_path, self.generation)

    def reload_if_changed(self) -> bool:
        """Reopen the index when something else changed the library (a repair, an old client)."""
        if self.store.generation() == self.generation:
            return False
        self._index_behind = True  # whoever changed it, the store is the truth
        self._catch_up()
        return True

    def _open_index(self):  # noqa: ANN202 - VectorIndex
        return open_index(self.settings.index_path, self.store, self.model_id, self.dim)

    def close(self) -> None:
        try:
            if self.remote is not None:
                self.remote.close()
        finally:
            self.store.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def submit(
    settings: Settings,
    command: Command,
    *,
    kind: str = "index",
    progress: ProgressCallback | None = None,
    embedder: ImageEncoder | None = None,
    wait_s: float = 0.0,
    on_wait: Callable[[WriterInfo | None], None] | None = None,
    on_handoff: Callable[[WriterInfo], None] | None = None,
) -> Outcome:
    """Run ``command`` as the library's one writer, here or in the running watcher.

    Takes the writer lock and runs it in this process; when a watcher holds the lock, it
    runs the command instead (``on_handoff`` is told, ``progress`` is not called, and the
    outcome's ``done_by`` names it). Another writer is waited for up to ``wait_s``
    (``on_wait`` is told), then ``WriterBusyError``. ``kind`` names this process in
    ``writer.json`` and the runs table (index, ui).
    """
    lock = WriterLock(settings, kind)
    try:
        lock.acquire()
    except WriterBusyError:
        # twice: a watcher that stopped with the request unanswered is most often being
        # restarted (systemd), and the next one does it; else the lock is waited for
        for _ in range(2):
            outcome = _hand_to_watcher(settings, command, wait_s, on_handoff)
            if outcome is not None:
                return outcome
        lock.acquire(wait_s, on_wait)
    try:
        with Writer(settings, lock, embedder) as writer:
            return writer.run(command, progress)
    finally:
        lock.release()


def _hand_to_watcher(
    settings: Settings,
    command: Command,
    wait_s: float,
    on_handoff: Callable[[WriterInfo], None] | None,
) -> Outcome | None:
    """Have the running watcher run ``command``; None when no watcher holds the lock.

    None also when the watcher stopped before taking it (the caller then does it itself).
    Raises the watcher's error, or ``WriterBusyError`` after ``wait_s``.
    """
    holder = _watcher(settings)
    if holder is None:
        return None
    request = submit_request(settings, command)
    if on_handoff is not None:
        on_handoff(holder)

    def alive() -> bool:
        now = read_writer(settings)
        return now is not None and now.pid == holder.pid

    waited = max(wait_s, 1.0)
    outcome = wait_for_answer(settings, request, alive, waited)
    if outcome is not None:
        return replace(outcome, done_by=holder.pid)
    withdrawn = withdraw_request(settings, request)
    if not alive():  # it stopped, with the request taken or not, and never answered
        return None
    if withdrawn:
        raise WriterBusyError(
            f"the running watcher (pid {holder.pid}) did not take the request in "
            f"{waited:.0f} s; see: {command_for(settings.data_dir)} status"
        )
    raise WriterBusyError(
        f"the running watcher (pid {holder.pid}) did not finish in {waited:.0f} s; "
        f"it will still do the work; see: {command_for(settings.data_dir)} status"
    )


def _watcher(settings: Settings) -> WriterInfo | None:
    """The watcher holding the lock, allowing for the moment before it names itself."""
    deadline = time.monotonic() + HANDOFF_NOTICE_S
    while True:
        holder = read_writer(settings)
        if holder is not None or time.monotonic() >= deadline:
            return holder if holder is not None and holder.is_watcher else None
        time.sleep(0.1)


def watcher_running(settings: Settings) -> WriterInfo | None:
    """The running watcher, if any (for messages such as "the watcher indexes it")."""
    holder = read_writer(settings)
    return holder if holder is not None and holder.is_watcher else None


__all__ = ["Writer", "submit", "watcher_running"]
