"""The read-only queries behind browsing: the timeline with copies folded, folder counts,
copies of one content, file-name matches and the hashes that should have thumbnails.

A mixin of :class:`searchapp.store.Store`; like the store, the only code that runs SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from sqlalchemy import ColumnElement, asc, case, desc, func, or_, select
from sqlalchemy.orm import Session

from searchapp.query import VARIATION_SELECTOR, name_variants
from searchapp.records import STATUS_INDEXED, PhotoFilter, PhotoRecord
from searchapp.schema import PhotoRow, RootRow, encode_path, photo_record
from searchapp.store_facets import filtered

NAME_MATCH_CAP = 1000


class BrowseQueries:
    """Browsing reads; the host class provides ``_session`` (one transaction)."""

    _session: Callable[[], AbstractContextManager[Session]]

    def timeline_rows(
        self, flt: PhotoFilter | None, limit: int, newest: bool = True
    ) -> list[tuple[int, str | None]]:
        """The first ``limit`` ``(photo id, content hash)`` of every photo by date taken,
        newest (or oldest) first, read along the date index; then the undated ones by
        folder and name, a to z (z to a when oldest first: the whole list turns around;
        screenshots and scans are numbered or timed in their names): in the order they
        were indexed they looked random."""
        order = desc if newest else asc
        base = filtered(select(PhotoRow.id, PhotoRow.content_hash), flt, by_date=True)
        dated = base.where(PhotoRow.taken_at.is_not(None))
        dated = dated.order_by(order(PhotoRow.taken_at), order(PhotoRow.id)).limit(limit)
        with self._session() as s:
            rows = [(int(i), h) for i, h in s.execute(dated)]
            if len(rows) < limit:
                by_name = asc(PhotoRow.path) if newest else desc(PhotoRow.path)  # a to z, or back
                undated = base.where(PhotoRow.taken_at.is_(None)).order_by(by_name)
                rows += [(int(i), h) for i, h in s.execute(undated.limit(limit - len(rows)))]
        return rows

    def timeline_total(self, flt: PhotoFilter | None) -> int:
        """How many distinct contents the (filtered) timeline holds."""
        q = filtered(select(func.count(func.distinct(PhotoRow.content_hash))), flt, by_date=True)
        with self._session() as s:
            return int(s.scalar(q) or 0)

    def distinct_contents(self, ids: Sequence[int], flt: PhotoFilter | None = None) -> int:
        """How many different contents the photos ``ids`` (those passing ``flt``) hold."""
        seen: set[str] = set()
        with self._session() as s:
            for i in range(0, len(ids), 500):
                chunk = [int(x) for x in ids[i : i + 500]]
                q = filtered(select(PhotoRow.content_hash), flt).where(PhotoRow.id.in_(chunk))
                seen.update(h for h in s.scalars(q) if h)
        return len(seen)

    def copy_counts(self, hashes: Sequence[str]) -> dict[str, int]:
        """How many indexed files hold each content hash (1 for a photo without copies)."""
        return {h: int(n) for h, n in self._per_content(hashes, (func.count(),), None)}

    def first_copies(self, hashes: Sequence[str], flt: PhotoFilter | None) -> dict[str, int]:
        """The id of the copy that stands for each content, among the indexed photos that
        pass ``flt``: the oldest file, then the first path. The original where the copies
        were made later (copies that kept its time tie, and the path decides); the file
        indexed first was whichever the folder walk met first, or an earlier run indexed."""
        since_1970 = case((PhotoRow.mtime_ns < 0, 0), else_=PhotoRow.mtime_ns)  # sortable text
        oldest = func.min(func.printf("%020d", since_1970).op("||")(PhotoRow.path))
        # SQLite gives a bare column the values of the row min() picked
        rows = self._per_content(hashes, (oldest, PhotoRow.id), flt)
        return {h: int(i) for h, _, i in rows}

    def _per_content(
        self, hashes: Sequence[str], values: tuple[ColumnElement, ...], flt: PhotoFilter | None
    ) -> list[tuple]:
        """``(hash, *values)`` (aggregates) over the indexed files of each content that pass
        ``flt``."""
        out: list[tuple] = []
        with self._session() as s:
            for i in range(0, len(hashes), 500):
                chunk = list(hashes[i : i + 500])
                q = filtered(select(PhotoRow.content_hash, *values), flt)
                q = q.where(PhotoRow.content_hash.in_(chunk)).group_by(PhotoRow.content_hash)
                out.extend(tuple(row) for row in s.execute(q))
        return out

    def copies_of(self, content_hash: str) -> list[PhotoRecord]:
        """Every indexed file with this content, by path."""
        q = (
            select(PhotoRow)
            .where(PhotoRow.content_hash == content_hash, PhotoRow.status == STATUS_INDEXED)
            .order_by(PhotoRow.path)
        )
        with self._session() as s:
            return [photo_record(r) for r in s.scalars(q)]

    def folder_counts(self) -> list[tuple[str, str, int]]:
        """``(root path, folder, photos directly in it)`` for every folder holding photos."""
        q = (
            select(RootRow.path, PhotoRow.folder, func.count())
            .join(RootRow, RootRow.id == PhotoRow.root_id)
            .where(PhotoRow.status == STATUS_INDEXED)
            .group_by(RootRow.path, PhotoRow.folder)
        )
        with self._session() as s:
            return [(r, f, int(n)) for r, f, n in s.execute(q)]

    def copies_by_folder(self) -> list[tuple[str, str, str, int]]:
        """``(root path, folder, content hash, files)`` of the contents held by more than
        one file (a few percent of a library), per folder holding them."""
        copied = (
            select(PhotoRow.content_hash)
            .where(PhotoRow.status == STATUS_INDEXED)
            .group_by(PhotoRow.content_hash)
            .having(func.count() > 1)
        )
        q = (
            select(RootRow.path, PhotoRow.folder, PhotoRow.content_hash, func.count())
            .join(RootRow, RootRow.id == PhotoRow.root_id)
            .where(PhotoRow.status == STATUS_INDEXED, PhotoRow.content_hash.in_(copied))
            .group_by(RootRow.path, PhotoRow.folder, PhotoRow.content_hash)
        )
        with self._session() as s:
            return [(r, f, h, int(n)) for r, f, h, n in s.execute(q)]

    def name_matches(self, fragment: str, flt: PhotoFilter | None, limit: int) -> list[int]:
        """Ids of photos whose path contains ``fragment`` (ASCII case-insensitive), by path:
        an accent composed or decomposed (names from macOS are), an emoji with or without
        its variation selector, are the same letter either way (:func:`name_variants`)."""
        path = func.replace(PhotoRow.path, VARIATION_SELECTOR, "")
        patterns = ("%" + _like_escape(encode_path(v)) + "%" for v in name_variants(fragment))
        matches = or_(*(path.ilike(p, escape="\\") for p in patterns))
        q = filtered(select(PhotoRow.id), flt).where(matches)
        q = q.order_by(PhotoRow.path).limit(min(limit, NAME_MATCH_CAP))
        with self._session() as s:
            return [int(i) for i in s.scalars(q)]

    def indexed_hashes(self) -> list[str]:
        """Every content hash of an indexed photo (each should have a cached thumbnail)."""
        q = select(PhotoRow.content_hash).where(
            PhotoRow.status == STATUS_INDEXED, PhotoRow.content_hash.is_not(None)
        )
        with self._session() as s:
            return list(s.scalars(q.distinct()))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
