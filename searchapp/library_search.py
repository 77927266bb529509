"""Searching, the core of the read API: a :class:`~searchapp.library.Library` mixin.

Text, images and indexed photos combine into one query vector (:mod:`searchapp.query`);
filters are applied inside FAISS (an id selector), so top-k is top-k of the filtered set;
:meth:`SearchReads.query` adds the relevance cutoff, date sorts, paging and "show all".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from searchapp import browse
from searchapp.config import command_for
from searchapp.errors import PhotoNotFoundError, QueryError
from searchapp.query import QueryPart, parse_query
from searchapp.relevance import CUTOFF_POOL, relevant_count, sort_by_date
from searchapp.results import SORTS, SearchPage, SearchResult
from searchapp.store import PhotoFilter, PhotoRecord


class SearchReads:
    """Searches of a library; mixed into ``Library``, which provides ``settings``,
    ``store``, ``index``, ``model_id``, ``photo_file``, ``_spec``, the query encoder
    ``_encoder`` (``_content_counts`` comes from ``BrowseReads``)."""

    def search_text(
        self, text: str, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """Photos matching a query in the query language (``beach + 2:dog - people``)."""
        return self.search(parse_query(text), k, flt)

    def search_image(
        self, image: str | Path | bytes, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """Photos like an image file (a path) or an uploaded image (its bytes)."""
        value = image if isinstance(image, bytes) else str(image)
        return self.search([QueryPart("image", value)], k, flt)

    def search_like(
        self, photo: int | str, k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """More like an indexed photo (by id or path); it and its copies are left out."""
        parts = [QueryPart("photo", self.resolve_photo(photo))]
        return self.query(parts, k=k, flt=flt, cutoff=False, skip_query_photos=True).results

    def search(
        self, parts: list[QueryPart], k: int = 20, flt: PhotoFilter | None = None
    ) -> list[SearchResult]:
        """Combined query: weighted sum of part vectors, re-normalized; top-k by score."""
        return self.query(parts, k=k, flt=flt, cutoff=False, skip_query_photos=False).results

    def query(
        self,
        parts: list[QueryPart],
        *,
        k: int = 20,
        offset: int = 0,
        flt: PhotoFilter | None = None,
        cutoff: bool = True,
        sort: str = "relevance",
        skip_query_photos: bool = True,
        count_contents: bool = False,
    ) -> SearchPage:
        """One page of a combined query, for the page's grid.

        With ``cutoff`` only results that stand out in this query's score distribution
        count (see :func:`relevant_count`); without it ("show all") every photo that
        passes ``flt`` does. ``sort`` (relevance, newest, oldest) orders that list; photos
        without a date go last. Pages are ``[offset, offset + k)`` of it. Photos that are
        positive parts of the query, and their byte-identical copies, are left out (they would
        match themselves first). ``count_contents``: count them with copies once too, as the
        page's tiles show them (a count over the library: not for every CLI query).
        """
        if sort not in SORTS:
            raise QueryError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}.")
        if self.index.ntotal == 0:
            self._check_model_matches()
        vec = self._encoder.encode(parts)
        skip = {int(p.value) for p in parts if p.kind == "photo" and p.weight > 0}
        skip = browse.with_copies(self.store, skip) if skip_query_photos else set()
        scores, ids, candidates = self._ranked(
            vec, flt, skip, offset + k, cutoff or sort != "relevance"
        )
        threshold = None
        if cutoff:
            keep = relevant_count(scores)
            scores, ids = scores[:keep], ids[:keep]
            total, hidden = keep, max(candidates - keep, 0)
            threshold = float(scores[-1]) if keep else None
        else:
            total, hidden = max(candidates, len(ids)), 0
        order = list(zip(ids.tolist(), scores.tolist(), strict=True))
        records: dict[int, PhotoRecord] = {}
        if sort != "relevance":
            records = self.store.get_photos([pid for pid, _ in order])
            taken = {pid: rec.taken_at for pid, rec in records.items()}
            order = sort_by_date(order, taken.get, newest=sort == "newest")
        page = order[offset : offset + k]
        missing = [pid for pid, _ in page if pid not in records]
        records.update(self.store.get_photos(missing) if missing else {})
        results = [
            SearchResult.of(offset + i + 1, score, records[pid])
            for i, (pid, score) in enumerate(page)
            if pid in records
        ]
        counts = self._content_counts(ids, flt, skip, cutoff) if count_contents else ()
        return SearchPage(results, total, hidden, threshold, offset, sort, *counts)

    def _ranked(
        self, vec: np.ndarray, flt: PhotoFilter | None, skip: set[int], want: int, pool: bool
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Scores and ids, best first, of the filtered photos; and how many there are."""
        allowed = None if flt is None or flt.is_empty() else self.store.filter_ids(flt)
        index = self.index
        available = index.ntotal if allowed is None else len(allowed)
        if pool:  # the cutoff and date sorts look at a whole pool, not just one page
            want = max(want, CUTOFF_POOL)
        scores, ids = index.search(vec, min(want, available) + len(skip), allowed)
        mask = ~np.isin(ids, np.fromiter(skip, dtype=np.int64, count=len(skip)))
        return scores[mask], ids[mask], available - int(np.count_nonzero(~mask))

    def _check_model_matches(self) -> None:
        """Photos embedded by another model only: say so (it was "no results")."""
        others = [m for m in self.store.embedding_models() if m != self.model_id]
        if others:
            from searchapp.model import model_flags

            raise QueryError(
                f"this library's photos were embedded by {others[0]}, not {self.model_id}; "
                f"search with that model ({model_flags(others[0])}), or embed them again with "
                f"this one: {self._index_command()}"
            )

    def _no_photo(self, pid: int) -> str:
        command = command_for(self.settings.data_dir)
        return f"no photo with id {pid}; ids are in: {command} search TEXT --json"

    def _index_command(self) -> str:
        """The command that embeds this library with this library's model."""
        from searchapp.model import PIXELS_MODEL_ID, model_flags

        command = command_for(self.settings.data_dir)
        if self.model_id == PIXELS_MODEL_ID:
            return f"SEARCHAPP_ENCODER=pixels {command} index"
        spec = self._spec()  # a checkpoint file's path is known here, resolved
        checkpoint = spec.weights if spec.weights_kind == "file" else None
        return f"{command} {model_flags(self.model_id, checkpoint)} index"

    def guard_parts(self, parts: list[QueryPart]) -> list[QueryPart]:
        """Parts safe to run for the page: image paths must be indexed photos under a root.

        ``image:PATH`` typed into the page becomes a ``photo`` part (its stored vector); a
        path outside the indexed folders raises ``AccessDeniedError``.
        """
        out = []
        for part in parts:
            if part.kind == "image" and not isinstance(part.value, bytes):
                real = self.photo_file(str(part.value))
                part = QueryPart("photo", self.resolve_photo(str(real)), part.weight)
            elif part.kind == "photo":
                part = QueryPart("photo", self.resolve_photo(int(part.value)), part.weight)
            out.append(part)
        return out

    def _photo_vector(self, pid: int) -> np.ndarray:
        """A photo's stored vector; one that has none says why (no such photo, failed)."""
        vec = self.store.photo_vector(pid, self.model_id)
        if vec is not None:
            return vec
        record = self.store.get_photos([pid]).get(pid)
        if record is None:
            raise PhotoNotFoundError(self._no_photo(pid))
        if record.failure_reason:
            raise PhotoNotFoundError(
                f"{record.path} could not be indexed ({record.failure_reason}), so it has "
                "nothing to search by."
            )
        raise PhotoNotFoundError(f"photo {pid} has no vector yet; index it first.")

    def resolve_photo(self, photo: int | str) -> int:
        """A photo id, or the path of an indexed photo, to its id."""
        if isinstance(photo, int) or str(photo).isdigit():
            pid = int(photo)
            if not self.store.get_photos([pid]):
                raise PhotoNotFoundError(self._no_photo(pid))
            return pid
        record = self.store.find_photo_by_path(str(photo))
        if record is None:
            raise PhotoNotFoundError(f"{photo} is not an indexed photo.")
        return record.id
