"""The read-only queries behind search filters and facets: filtered ids, counts, failures,
folders, formats and the date range.

A mixin of :class:`searchapp.store.Store`; like the store, the only code that runs SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
from sqlalchemy import Integer, Select, cast, func, literal, literal_column, select, union_all
from sqlalchemy.orm import Session

from searchapp.records import STATUS_FAILED, STATUS_INDEXED, PhotoFilter, PhotoRecord
from searchapp.schema import MetaRow, PhotoRow, RootRow, encode_path, record_columns


def filtered(q: Select, flt: PhotoFilter | None, *, by_date: bool = False) -> Select:
    """``q`` over indexed photos, narrowed by ``flt`` (shared by search filters and browsing).

    ``by_date`` keeps SQLite off the status index (``+status``: nearly every row is
    indexed, so that index narrows nothing), so a scan in date order can use the date index.
    """
    status = literal_column("+photos.status") if by_date else PhotoRow.status
    q = q.where(status == STATUS_INDEXED)
    if flt is None:
        return q
    if flt.roots:
        q = q.join(RootRow, RootRow.id == PhotoRow.root_id).where(RootRow.path.in_(list(flt.roots)))
    if flt.folder:
        folder = flt.folder.rstrip("/") or "/"
        prefix = encode_path(folder if folder.endswith("/") else folder + "/")
        q = q.where(
            (PhotoRow.folder == folder) | (func.substr(PhotoRow.folder, 1, len(prefix)) == prefix)
        )
    if flt.taken_after is not None:
        q = q.where(PhotoRow.taken_at >= flt.taken_after)
    if flt.taken_before is not None:
        q = q.where(PhotoRow.taken_at <= flt.taken_before)
    if flt.formats:
        q = q.where(PhotoRow.format.in_([f.upper() for f in flt.formats]))
    if flt.min_width:
        q = q.where(PhotoRow.width >= flt.min_width)
    if flt.min_height:
        q = q.where(PhotoRow.height >= flt.min_height)
    if flt.min_bytes:
        q = q.where(PhotoRow.size >= flt.min_bytes)
    if flt.max_bytes:
        q = q.where(PhotoRow.size <= flt.max_bytes)
    return q


class FacetQueries:
    """Filter and facet reads; the host class provides ``_session`` (one transaction)."""

    _session: Callable[[], AbstractContextManager[Session]]

    def filter_ids(self, flt: PhotoFilter) -> np.ndarray:
        """Ids of indexed photos that pass the filter (for FAISS's id selector)."""
        q = filtered(select(PhotoRow.id), flt)
        with self._session() as s:
            return np.fromiter(s.scalars(q), dtype=np.int64)

    def counts(self) -> dict[str, int]:
        q = select(PhotoRow.status, func.count()).group_by(PhotoRow.status)
        with self._session() as s:
            counts = {status: n for status, n in s.execute(q)}
        return {
            "photos": counts.get(STATUS_INDEXED, 0),
            "failed": counts.get(STATUS_FAILED, 0),
        }

    def counts_at_generation(self) -> tuple[dict[str, int], int]:
        """:meth:`counts` and the generation they belong to, read in one statement.

        Two statements are two moments: a writer committing between them would pair the
        counts of one generation with the number of another (issue 12's "Indexed 75" beside
        a current-looking file of 74 vectors); one statement reads one snapshot.
        """
        by_status = select(PhotoRow.status, func.count()).group_by(PhotoRow.status)
        generation = select(literal("generation"), cast(MetaRow.value, Integer)).where(
            MetaRow.key == "generation"
        )
        with self._session() as s:
            rows = {key: int(n) for key, n in s.execute(union_all(by_status, generation))}
        counts = {"photos": rows.get(STATUS_INDEXED, 0), "failed": rows.get(STATUS_FAILED, 0)}
        return counts, rows.get("generation", 0)

    def failures(self, limit: int | None = None) -> list[PhotoRecord]:
        q = select(*record_columns()).where(PhotoRow.status == STATUS_FAILED)
        q = q.order_by(PhotoRow.path)
        if limit:
            q = q.limit(limit)
        with self._session() as s:
            return [PhotoRecord(*r) for r in s.execute(q)]

    def folders(self) -> list[str]:
        q = select(PhotoRow.folder).distinct().order_by(PhotoRow.folder)
        with self._session() as s:
            return list(s.scalars(q))

    def formats(self) -> list[str]:
        q = select(PhotoRow.format).where(PhotoRow.format.is_not(None)).distinct()
        with self._session() as s:
            return sorted(s.scalars(q))

    def taken_range(self) -> tuple[float | None, float | None]:
        q = select(func.min(PhotoRow.taken_at), func.max(PhotoRow.taken_at))
        with self._session() as s:
            lo, hi = s.execute(q).one()
        return lo, hi
