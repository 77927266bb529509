"""What the read API answers with: search results, a page of them, the filters' facets."""

from __future__ import annotations

from dataclasses import dataclass

from searchapp.records import PhotoRecord

SORTS = ("relevance", "newest", "oldest")


@dataclass(frozen=True)
class SearchResult:
    rank: int
    score: float
    photo_id: int
    path: str
    taken_at: float | None
    size: int
    width: int | None
    height: int | None
    format: str | None
    content_hash: str | None = None  # names the cached thumbnail

    @classmethod
    def of(cls, rank: int, score: float, p: PhotoRecord) -> SearchResult:
        """The result at ``rank`` for a stored photo."""
        return cls(
            rank, round(float(score), 6), p.id, p.path, p.taken_at, p.size, p.width, p.height,
            p.format, p.content_hash,
        )  # fmt: skip

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SearchPage:
    """One page of a query: ``total`` results in the (cut or full) list, ``hidden`` below it;
    ``contents`` and ``hidden_contents`` count the same with byte-identical copies once, as
    the page's tiles show them."""

    results: list[SearchResult]
    total: int
    hidden: int
    threshold: float | None  # the lowest score kept by the cutoff; None when showing all
    offset: int
    sort: str
    contents: int | None = None  # None: not counted (``Library.query(count_contents=...)``)
    hidden_contents: int | None = None

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.results) < self.total


@dataclass(frozen=True)
class Facets:
    """What the filters can offer: roots, folders (under ``root`` if given), formats, dates."""

    roots: list[str]
    folders: list[str]
    formats: list[str]
    taken_first: float | None  # earliest date taken; None when no photo has a date
    taken_last: float | None


__all__ = ["SORTS", "Facets", "SearchPage", "SearchResult"]
