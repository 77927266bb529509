"""What a run has to do: the roots on disk diffed against the store by stat alone.

Shared by the indexer (its first step) and the status report (the pending count); no
file is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from searchapp.faults import fault_point
from searchapp.paths import is_under
from searchapp.scanner import ScannedFile, scan_paths, scan_root
from searchapp.store import STATUS_INDEXED, KnownFile, RootRecord, Store


@dataclass
class WorkItem:
    """One file the run has to read: where it is now, and what the store knew of it."""

    root_id: int
    file: ScannedFile
    known: KnownFile | None


@dataclass
class Plan:
    """What a run has to do: files to read, stored photos whose file is gone."""

    work: list[WorkItem] = field(default_factory=list)
    missing: dict[int, KnownFile] = field(default_factory=dict)  # photo id -> gone file
    unchanged: int = 0
    offline_roots: int = 0


def plan_changes(
    store: Store, model_id: str, paths: list[str] | None = None, *, record_online: bool = True
) -> Plan:
    """Diff the roots on disk against the store by stat alone (no file is read).

    ``record_online`` stores which roots are mounted; a read-only look (the status page's
    pending count) passes False.
    """
    plan = Plan()
    for root in store.list_roots():
        online = _is_scannable(store, root, record_online)
        if record_online and online != root.online:
            store.set_root_online(root.id, online)
        if not online:
            plan.offline_roots += 1  # unmounted drive: keep its photos, never read as deleted
            continue
        _plan_root(plan, root.id, root.path, store.known_files(root.id, model_id), paths)
    return plan


def _is_scannable(store: Store, root: RootRecord, record: bool) -> bool:
    """Whether the root's folder is there, and is not a mount point its drive left empty.

    An unmounted drive often leaves its mount point behind as an empty folder on another
    device; reading that as "every photo was deleted" would drop the whole library. The
    device of the last non-empty scan is kept in meta (``record``) to tell the two apart.
    """
    try:
        device = os.stat(root.path).st_dev
        with os.scandir(root.path) as entries:
            empty = next(entries, None) is None
    except OSError:
        return False  # gone, or not a folder
    known = store.root_device(root.id)
    if empty and known is not None and known != device:
        return False  # its drive is away: keep its photos
    if record and not empty and known != device:
        store.set_root_device(root.id, device)
    return True


def _plan_root(
    plan: Plan, root_id: int, root_path: str, known: dict[str, KnownFile], paths: list[str] | None
) -> None:
    seen: set[str] = set()
    unreadable: list[str] = []
    for f in scan_paths(root_path, paths) if paths else scan_root(root_path):
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
            plan.unchanged += 1
        else:
            plan.work.append(WorkItem(root_id, f, k))
    for path, k in known.items():
        if path in seen or _under_any(path, unreadable):
            continue  # present, or not visible right now (never read as deleted)
        if not paths or _under_any(path, paths):
            plan.missing[k.id] = k


def _under_any(path: str, folders: list[str]) -> bool:
    return any(is_under(path, f) for f in folders)


@dataclass(frozen=True)
class PendingFiles:
    """What the next run would do, by stat alone: files to read, photos whose file is gone."""

    to_index: int
    to_remove: int


def count_pending(store: Store, model_id: str) -> PendingFiles:
    """Compare the photo folders with the library without reading a photo or writing.

    Stat only (about 2 s for 100,000 files), so a status view can call it when shown; it
    uses the caller's open (possibly read-only) store.
    """
    plan = plan_changes(store, model_id, record_online=False)
    return PendingFiles(len(plan.work), len(plan.missing))
