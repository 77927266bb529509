"""The photo app's side of the read API: a :class:`~searchapp.library.Library` mixin.

The timeline, grid tiles (copies and near-identical photos folded), the folder list,
the viewer's details, thumbnails missing from the cache, and the recent searches.
"""

from __future__ import annotations

import numpy as np

from searchapp import browse, recent
from searchapp.browse import FolderOption, PhotoInfo, Tile, TimelinePage
from searchapp.errors import SearchAppError
from searchapp.query import name_fragment
from searchapp.results import SearchResult
from searchapp.store import PhotoFilter
from searchapp.thumbnails import thumbnails_missing


class BrowseReads:
    """Browsing reads of a library; mixed into ``Library``, which provides ``settings``,
    ``exists``, ``store``, ``model_id``, ``photo``, ``photo_file`` and the ``_totals``
    dict of timeline sizes (``generation`` comes from ``StatusReads``)."""

    def timeline(
        self,
        flt: PhotoFilter | None = None,
        offset: int = 0,
        limit: int = 200,
        *,
        newest: bool = True,
    ) -> TimelinePage:
        """Every photo by date taken, newest (or oldest) first, undated last, each content
        once."""
        if not self.exists:
            return TimelinePage([], 0, offset)
        return browse.timeline(self.store, flt, offset, limit, self._distinct(flt), newest)

    def distinct_images(self) -> int:
        """How many different images the library holds: byte-identical copies count once
        (the timeline's size; the photo count counts every file)."""
        return self._distinct(None) if self.exists else 0

    def _content_counts(
        self, kept: np.ndarray, flt: PhotoFilter | None, skip: set[int], cutoff: bool
    ) -> tuple[int, int]:
        """A query's counts with byte-identical copies once (copies share a vector, so they
        are kept or cut together): the results kept, and those below the cutoff."""
        candidates = self._distinct(flt) - self.store.distinct_contents(sorted(skip), flt)
        if not cutoff:
            return max(candidates, 0), 0
        shown = self.store.distinct_contents(kept.tolist(), flt)
        return shown, max(candidates - shown, 0)

    def _distinct(self, flt: PhotoFilter | None) -> int:
        key = (self.generation(), flt)
        total = self._totals.get(key)
        if total is None:  # a count over every row: once per library state
            total = self.store.timeline_total(flt)
            # one whole assignment: a page's other session may be reading the dict now
            self._totals = dict(list({key: total, **self._totals}.items())[:16])
        return total

    def tiles(self, results: list[SearchResult], flt: PhotoFilter | None = None) -> list[Tile]:
        """Search results (filtered by ``flt``) as grid tiles: files with the same content
        folded into one, shown by the oldest copy (see ``Store.first_copies``)."""
        records = self.store.get_photos([r.photo_id for r in results])
        ranked = [(records[r.photo_id], r.score) for r in results if r.photo_id in records]
        return browse.fold_copies(self.store, ranked, flt)

    def fold_similar(self, tiles: list[Tile]) -> list[Tile]:
        """Near-identical photos (resized, re-encoded, bursts) folded into one tile each."""
        return browse.fold_similar(self.store, self.model_id, tiles)

    def name_tiles(self, text: str, flt: PhotoFilter | None = None, limit: int = 200) -> list[Tile]:
        """Photos whose path below its root holds ``text`` if it looks like a name."""
        fragment = name_fragment(text)
        return [] if fragment is None else browse.name_tiles(self.store, fragment, flt, limit)

    def folder_options(self) -> list[FolderOption]:
        """Folders (parents included) with photo counts, labelled below their root."""
        return browse.folder_options(self.store) if self.exists else []

    def photo_info(self, photo_id: int) -> PhotoInfo | None:
        """The viewer's details of one photo: relative path, copies, GPS when present."""
        record = self.photo(photo_id)
        if record is None:
            return None
        try:
            original = self.photo_file(record.path)
        except SearchAppError as err:  # gone, offline, refused: the details still show
            return browse.photo_info(self.store, record, None, unavailable=str(err))
        return browse.photo_info(self.store, record, original)

    def missing_thumbnails(self) -> list[str]:
        """Content hashes of indexed photos whose cached thumbnail is not on disk."""
        if not self.exists:
            return []
        return thumbnails_missing(self.settings.thumbs_dir, self.store.indexed_hashes())

    def rebuild_thumbnails(self, hashes: list[str]) -> tuple[int, int]:
        """Rewrite these contents' thumbnails (the cache only): (rebuilt, unreadable)."""
        return browse.rebuild_thumbnails(self.store, self.settings.thumbs_dir, hashes)

    def recent_searches(self) -> list[dict[str, str]]:
        """The last searches made on this library, newest first (see :mod:`recent`)."""
        return recent.read_recent(self.settings.data_dir)

    def remember_search(
        self, search: dict[str, str], refines: tuple[str, ...] = ()
    ) -> list[dict[str, str]]:
        """Keep ``search`` (the page's URL state) first among the recent searches; one that
        differs from it only in ``refines`` (a weight) is replaced, not kept beside it."""
        return recent.remember(self.settings.data_dir, search, refines)
