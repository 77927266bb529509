"""What a run has to do: the roots on disk diffed against the store by stat alone.

Shared by the indexer (its first step) and the status report (the pending count). The
plan only reads: no file is opened and nothing is written. What it saw of the roots
(mounted or not, on which device) travels in the plan; the writer records it with
:func:`apply_root_observations`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from searchapp.faults import fault_point
from searchapp.paths import is_under
from searchapp.scanner import ScannedFile, scan_paths, scan_root
from searchapp.store import STATUS_INDEXED, KnownFile, RootRecord, Store


@dataclass(frozen=True)
class WorkItem:
    """One file the run has to read: where it is now, and what the store knew of it."""

    root_id: int
    file: ScannedFile
    known: KnownFile | None


@dataclass(frozen=True)
class RootObservation:
    """What the plan saw of one root, for the writer to record."""

    root_id: int
    online: bool  # its folder is there and is not a mount point its drive left empty
    was_online: bool  # as the store had it
    new_device: int | None = None  # device of a non-empty root, when it differs from the stored


@dataclass(frozen=True)
class Plan:
    """What a run has to do: files to read, stored photos whose file is gone, roots seen."""

    work: tuple[WorkItem, ...] = ()
    missing: Mapping[int, KnownFile] = field(default_factory=lambda: MappingProxyType({}))
    unchanged: int = 0
    roots: tuple[RootObservation, ...] = ()

    @property
    def offline_roots(self) -> int:
        return sum(not r.online for r in self.roots)


def plan_changes(store: Store, model_id: str, paths: list[str] | None = None) -> Plan:
    """Diff the roots on disk against the store by stat alone; reads, never writes.

    ``paths`` limits the diff to files and folders at or below them.
    """
    work: list[WorkItem] = []
    missing: dict[int, KnownFile] = {}
    unchanged = 0
    roots: list[RootObservation] = []
    data_dir = os.path.realpath(store.db_path.parent)  # never its own photos
    for root in store.list_roots():
        seen = _observe(store, root)
        roots.append(seen)
        if not seen.online:
            continue  # unmounted drive: keep its photos, never read as deleted
        known = store.known_files(root.id, model_id)
        unchanged += _plan_root(work, missing, root.id, root.path, known, paths, data_dir)
    return Plan(tuple(work), MappingProxyType(missing), unchanged, tuple(roots))


def apply_root_observations(store: Store, plan: Plan) -> None:
    """Record what ``plan`` saw of the roots: which are online, the device of each."""
    for seen in plan.roots:
        if seen.online != seen.was_online:
            store.set_root_online(seen.root_id, seen.online)
        if seen.new_device is not None:
            store.set_root_device(seen.root_id, seen.new_device)


def live_roots(store: Store) -> list[RootRecord]:
    """The roots, each online as its folder is now (the store's flag is as the last run
    or watcher saw it: a drive unplugged since then is said at once)."""
    return [replace(r, online=_observe(store, r).online) for r in store.list_roots()]


def _observe(store: Store, root: RootRecord) -> RootObservation:
    """Whether the root's folder is there, and is not a mount point its drive left empty.

    An unmounted drive often leaves its mount point behind as an empty folder on another
    device; reading that as "every photo was deleted" would drop the whole library. The
    device of the last non-empty scan is kept in the store to tell the two apart.
    """
    try:
        device = os.stat(root.path).st_dev
        with os.scandir(root.path) as entries:
            empty = next(entries, None) is None
    except OSError:
        return RootObservation(root.id, False, root.online)  # gone, or not a folder
    known = store.root_device(root.id)
    if empty and known is not None and known != device:
        return RootObservation(root.id, False, root.online)  # its drive is away
    new_device = device if not empty and known != device else None
    return RootObservation(root.id, True, root.online, new_device)


def _plan_root(
    work: list[WorkItem],
    missing: dict[int, KnownFile],
    root_id: int,
    root_path: str,
    known: dict[str, KnownFile],
    paths: list[str] | None,
    data_dir: str,
) -> int:
    """Add a root's files to read to ``work`` and its gone photos to ``missing``.

    Returns how many files are unchanged.
    """
    unchanged = 0
    seen: set[str] = set()
    unreadable: list[str] = []
    scanned = scan_paths(root_path, paths, data_dir) if paths else scan_root(root_path, data_dir)
    for f in scanned:
        seen.add(f.path)
        fault_point("scan")
        if f.error:
            unreadable.append(f.path)
        k = known.get(f.path)
        if (
            k
            and k.size == f.size
            and k.mtime_ns == f.mtime_ns
            and (k.status != STATUS_INDEXED or k.embedded)
        ):
            unchanged += 1
        else:
            work.append(WorkItem(root_id, f, k))
    for path, k in known.items():
        if path in seen or _under_any(path, unreadable):
            continue  # present, or not visible right now (never read as deleted)
        if not paths or _under_any(path, paths):
            missing[k.id] = k
    return unchanged


def _under_any(path: str, folders: list[str]) -> bool:
    return any(is_under(path, f) for f in folders)


@dataclass(frozen=True)
class PendingFiles:
    """What the next run would do, by stat alone: files to read, photos whose file is gone;
    ``to_embed`` of the files to read are unchanged but have no vector of this model (the
    library was indexed with another)."""

    to_index: int
    to_remove: int
    to_embed: int = 0


def count_pending(store: Store, model_id: str) -> PendingFiles:
    """Compare the photo folders with the library without reading a photo or writing.

    Stat only, so a status view can call it when shown (docs/PERFORMANCE.md has its
    cost); it uses the caller's open (possibly read-only) store.
    """
    plan = plan_changes(store, model_id)
    to_embed = sum(_only_unembedded(w) for w in plan.work)
    return PendingFiles(len(plan.work), len(plan.missing), to_embed)


def _only_unembedded(item: WorkItem) -> bool:
    k, f = item.known, item.file
    return (
        k is not None and k.size == f.size and k.mtime_ns == f.mtime_ns
        and k.status == STATUS_INDEXED and not k.embedded
    )  # fmt: skip
