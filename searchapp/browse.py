"""Browsing a library: tiles for the grid (copies folded into one), the timeline, folder
choices with counts, file-name matches, and one photo's details for the viewer.

Pure functions over the store's browsing reads (:mod:`searchapp.store_browse`);
:class:`searchapp.library.Library` exposes them to front-ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from searchapp.query import fold_name
from searchapp.records import PhotoFilter, PhotoRecord

if TYPE_CHECKING:
    from searchapp.store import Store

NO_DATE = "No date"
_GPS_IFD = 0x8825


@dataclass(frozen=True)
class Tile:
    """One tile of the grid: a photo, or one content held by ``copies`` files."""

    photo_id: int
    content_hash: str | None
    path: str
    relative: str  # the path below its photo folder (root)
    taken_at: float | None
    width: int | None
    height: int | None
    size: int
    format: str | None
    copies: int = 1
    score: float | None = None  # None on the timeline and for name matches
    by_name: bool = False  # found by its file or folder name
    similar: int = 0  # near-identical photos folded into this tile (see fold_similar)

    @property
    def month(self) -> str:
        """The timeline's group header: "March 2024", or "No date"."""
        return month_label(self.taken_at)


@dataclass(frozen=True)
class TimelinePage:
    """All photos newest first (copies folded), one page of it."""

    tiles: list[Tile]
    total: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.tiles) < self.total


@dataclass(frozen=True)
class FolderOption:
    """A folder to filter by: its photos (its own and below), and how to show its path."""

    path: str
    label: str  # the root's name, then the path below it: "Pictures/2023/Juli"
    count: int


@dataclass(frozen=True)
class PhotoInfo:
    """What the viewer's side panel shows of one photo."""

    record: PhotoRecord
    relative: str
    root: str | None
    copies: list[str] = field(default_factory=list)
    gps: tuple[float, float] | None = None
    unavailable: str | None = None  # why the original cannot be read now (gone, offline)


def month_label(taken_at: float | None) -> str:
    return datetime.fromtimestamp(taken_at).strftime("%B %Y") if taken_at else NO_DATE


def root_paths(store: Store) -> dict[int, str]:
    return {r.id: r.path for r in store.list_roots()}


def relative_path(path: str, root: str | None) -> str:
    """``path`` below ``root`` (the root's own name first), or the path as it is.

    Plain string work on the stored paths (absolute, resolved): a page of tiles asks for
    120 of these, and ``PurePath.relative_to`` made that 13 ms of every query."""
    if root is None:
        return path
    name = PurePath(root).name or root
    if path == root:
        return name
    prefix = root if root.endswith(os.sep) else root + os.sep
    return os.path.join(name, path[len(prefix) :]) if path.startswith(prefix) else path


def tile_of(record: PhotoRecord, roots: dict[int, str], copies: int = 1, **extra: object) -> Tile:
    return Tile(
        record.id, record.content_hash, record.path,
        relative_path(record.path, roots.get(record.root_id)), record.taken_at,
        record.width, record.height, record.size, record.format, copies, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def fold_copies(
    store: Store,
    ranked: list[tuple[PhotoRecord, float | None]],
    flt: PhotoFilter | None = None,
    *,
    as_ranked: bool = False,
) -> list[Tile]:
    """Ranked photos as tiles, each content once (at its best rank), with its copy count,
    shown by :func:`shown_copies` (``as_ranked``: by the copy ranked first, as a name
    match must be)."""
    roots = root_paths(store)
    hashes = sorted({r.content_hash for r, _ in ranked if r.content_hash})
    counts = store.copy_counts(hashes) if hashes else {}
    firsts: dict[str, tuple[PhotoRecord, float | None]] = {}
    for record, score in ranked:
        firsts.setdefault(record.content_hash or f"id:{record.id}", (record, score))
    shown = [r for r, _ in firsts.values()]
    if not as_ranked:
        shown = shown_copies(store, shown, flt)
    scores = [s for _, s in firsts.values()]
    return [
        tile_of(r, roots, counts.get(r.content_hash or "", 1), score=s)
        for r, s in zip(shown, scores, strict=True)
    ]


def shown_copies(
    store: Store, records: list[PhotoRecord], flt: PhotoFilter | None
) -> list[PhotoRecord]:
    """Each content by its oldest file, then first path (among those passing ``flt``): most
    often the original, where the newest-first timeline showed the last copy made
    ("dupes/copy 2.jpg") and the copy indexed first could be a backup; and the same copy
    however much of a list is read, so "load more" keeps it."""
    hashes = [r.content_hash for r in records if r.content_hash]
    firsts = store.first_copies(hashes, flt) if hashes else {}
    wanted = [firsts.get(r.content_hash or "", r.id) for r in records]
    found = store.get_photos([i for i, r in zip(wanted, records, strict=True) if i != r.id])
    return [found.get(i, r) for i, r in zip(wanted, records, strict=True)]


SIMILAR_COSINE = 0.95  # resized or re-encoded copies and bursts; not merely the same scene


def with_copies(store: Store, ids: set[int]) -> set[int]:
    """``ids`` and every photo with the same bytes as one of them: an example's copies are
    that photo again, so "more like this" does not answer with them."""
    records = store.get_photos(list(ids)) if ids else {}
    hashes = {r.content_hash for r in records.values() if r.content_hash}
    return ids | {c.id for h in hashes for c in store.copies_of(h)}


def fold_similar(
    store: Store, model_id: str, tiles: list[Tile], cosine: float = SIMILAR_COSINE
) -> list[Tile]:
    """Tiles with near-identical photos folded into the first of them (greedy, in order):
    a tile whose vector is within ``cosine`` of a kept tile's joins that tile."""
    hashes = [t.content_hash for t in tiles if t.content_hash]
    vectors = store.vectors_for_hashes(hashes, model_id) if hashes else {}
    kept: list[Tile] = []
    owners: list[int] = []  # the kept tile each row of kept_vecs belongs to
    kept_vecs: list[np.ndarray] = []
    joined: dict[int, int] = {}
    for tile in tiles:
        vec = vectors.get(tile.content_hash or "")
        if vec is not None and kept_vecs:
            sims = np.stack(kept_vecs) @ vec
            best = int(np.argmax(sims))
            if sims[best] >= cosine:
                joined[owners[best]] = joined.get(owners[best], 0) + 1
                continue
        if vec is not None:
            owners.append(len(kept))
            kept_vecs.append(vec)
        kept.append(tile)
    return [replace(t, similar=joined.get(i, 0)) for i, t in enumerate(kept)]


def timeline(
    store: Store,
    flt: PhotoFilter | None,
    offset: int,
    limit: int,
    total: int,
    newest: bool = True,
) -> TimelinePage:
    """One page of every photo newest (or oldest) first, each content once (at its first
    file in that order, shown by :func:`shown_copies`).

    Reads rows in date order until the page (and one more, for ``has_more``) is folded
    together; ``total`` (distinct contents) is the caller's, which caches it.
    """
    want = offset + limit + 1
    fetch = 2 * want + 64
    while True:
        rows = store.timeline_rows(flt, fetch, newest)
        firsts: dict[str, int] = {}
        for pid, content_hash in rows:
            firsts.setdefault(content_hash or f"id:{pid}", pid)
        if len(firsts) >= want or len(rows) < fetch:
            break
        fetch *= 4
    page_ids = list(firsts.values())[offset : offset + limit]
    found = store.get_photos(page_ids)
    records = shown_copies(store, [found[i] for i in page_ids if i in found], flt)
    counts = store.copy_counts([r.content_hash for r in records if r.content_hash])
    roots = root_paths(store)
    tiles = [tile_of(r, roots, counts.get(r.content_hash or "", 1)) for r in records]
    return TimelinePage(tiles, max(total, offset + len(tiles)), offset)


def folder_options(store: Store) -> list[FolderOption]:
    """Every folder holding photos and every parent up to its root, with photo counts
    (its own and below, copies once, as the grid filtered to it counts them), sorted by
    label so a type-ahead finds ``2023/Juli`` by ``juli``."""
    totals: dict[str, int] = {}
    labels: dict[str, str] = {}
    for root, folder, n in store.folder_counts():
        for key in _folder_and_parents(folder, root):
            totals[key] = totals.get(key, 0) + n
            labels.setdefault(key, relative_path(key, root))
    # a content held by k files at or below a folder was summed k times there: once
    below: dict[tuple[str, str], int] = {}
    for root, folder, content_hash, files in store.copies_by_folder():
        for key in _folder_and_parents(folder, root):
            below[key, content_hash] = below.get((key, content_hash), 0) + files
    for (key, _), k in below.items():
        totals[key] -= k - 1
    options = [FolderOption(p, labels[p], totals[p]) for p in totals]
    return sorted(options, key=lambda o: o.label.lower())


def _folder_and_parents(folder: str, root: str) -> Iterator[str]:
    path = PurePath(folder)
    while True:
        key = str(path)
        yield key
        if key == root or path.parent == path or not key.startswith(root):
            return
        path = path.parent


def name_tiles(store: Store, fragment: str, flt: PhotoFilter | None, limit: int) -> list[Tile]:
    """Photos whose path below its root contains ``fragment``, copies folded."""
    ids = store.name_matches(fragment, flt, limit)
    records = store.get_photos(ids)
    roots = root_paths(store)
    needle = fold_name(fragment.replace("\\", "/"))
    ranked = [
        (records[i], None)
        for i in ids
        if i in records and needle in fold_name(_below_root(records[i], roots))
    ]
    return [replace(t, by_name=True) for t in fold_copies(store, ranked, as_ranked=True)]


def _below_root(record: PhotoRecord, roots: dict[int, str]) -> str:
    root = roots.get(record.root_id)
    return record.path[len(root) :] if root and record.path.startswith(root) else record.path


def photo_info(
    store: Store, record: PhotoRecord, original: Path | None, unavailable: str | None = None
) -> PhotoInfo:
    """The viewer's details: relative path, the other copies, GPS read from the original."""
    roots = root_paths(store)
    root = roots.get(record.root_id)
    copies = store.copies_of(record.content_hash) if record.content_hash else [record]
    gps = read_gps(original) if original is not None else None
    rel = relative_path(record.path, root)
    return PhotoInfo(record, rel, root, [c.path for c in copies], gps, unavailable)


def read_gps(path: Path) -> tuple[float, float] | None:
    """Latitude and longitude from a photo's EXIF, or None (headers only, pixels unread)."""
    try:
        with Image.open(path) as im:
            gps = im.getexif().get_ifd(_GPS_IFD)
    except Exception:  # noqa: BLE001 - a broken header only means no coordinates
        return None
    try:
        lat = _degrees(gps[2], gps.get(1, "N") in ("S", b"S"))
        lon = _degrees(gps[4], gps.get(3, "E") in ("W", b"W"))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    return round(lat, 6), round(lon, 6)


def _degrees(dms: tuple, negative: bool) -> float:
    d, m, s = (float(x) for x in dms)
    value = d + m / 60 + s / 3600
    return -value if negative else value


__all__ = [
    "NO_DATE",
    "FolderOption",
    "PhotoInfo",
    "Tile",
    "TimelinePage",
    "fold_copies",
    "fold_similar",
    "folder_options",
    "month_label",
    "name_tiles",
    "photo_info",
    "read_gps",
    "rebuild_thumbnails",
    "relative_path",
    "timeline",
]


def rebuild_thumbnails(store: Store, thumbs_dir: Path, hashes: list[str]) -> tuple[int, int]:
    """Decode one original per content hash and write its missing thumbnail.

    Only the thumbnail cache is written (derived data, like the index file); originals are
    read through the access guard. Returns (rebuilt, could not be read).
    """
    from searchapp.access import guarded_original
    from searchapp.decoder import load_photo
    from searchapp.errors import SearchAppError, StoreError
    from searchapp.thumbnails import THUMB_SIZE, write_thumbnail

    done = failed = 0
    for content_hash in hashes:
        for record in store.copies_of(content_hash):
            try:
                image = load_photo(guarded_original(store, record.path), THUMB_SIZE).image
            except (SearchAppError, OSError, ValueError):
                continue
            try:
                write_thumbnail(thumbs_dir, content_hash, image)
            except OSError as err:  # a full disk, a cache folder made read-only
                raise StoreError(f"cannot write thumbnails in {thumbs_dir}: {err}") from None
            done += 1
            break
        else:
            failed += 1
    return done, failed
