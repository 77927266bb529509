"""The search as URL query parameters: what a reload, Back, or a copied link restores.

Pure: :class:`SearchState` from and to a ``dict[str, str]`` (``st.query_params``). Only
values that differ from the defaults go into the URL, so the landing page is plain ``/``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from datetime import date

from searchapp.paths import decode_path, encode_path
from searchapp.results import SORTS

WHEN = ("", "this-month", "this-year", "last-year", "custom")  # or a year: "2023"
# the example photos' weights the page offers (less like ... more like); a link's weight
# snaps to the nearest, keeping its sign, so the slider shows what the query uses
WEIGHTS = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0)
# dates a photo can carry: beyond these, local-time conversions overflow (year 0)
YEARS = range(1800, 3000)
MAX_SIDE = 20_000  # the largest "minimum size" the Filters box offers
MAX_ID = 2**63 - 1  # SQLite's largest row id
MAX_PAGES = 50  # "load more" pages a link can ask for
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class SearchState:
    """Everything that decides what the photo grid shows."""

    q: str = ""  # the search box (query language)
    neg: str = ""  # "less of", comma-separated
    like: tuple[int, ...] = ()  # example photos ("more like this/these")
    lw: float = 1.0  # the examples' weight; negative = less like them
    sort: str = "relevance"
    all: bool = False  # show every result, not only those that stand out
    folder: str = ""
    when: str = ""  # a quick date range, a year, or "custom" with since/until
    since: str = ""  # ISO dates, for when=custom
    until: str = ""
    types: tuple[str, ...] = ()
    min_side: int = 0
    fold: bool = False  # fold near-identical photos into one tile
    pages: int = 1

    @property
    def searching(self) -> bool:
        return bool(self.q.strip() or self.neg.strip() or self.like)

    def without_paging(self) -> SearchState:
        return replace(self, pages=1)


def from_params(params: dict[str, str]) -> SearchState:
    """A state from URL parameters; anything malformed falls back to its default."""
    base = SearchState()
    values: dict[str, object] = {}
    for f in fields(SearchState):
        raw = params.get(f.name)
        if raw is None:
            continue
        default = getattr(base, f.name)
        try:
            values[f.name] = _parse(f.name, raw, default)
        except ValueError:
            continue
    state = replace(base, **values)
    state = replace(state, folder=decode_path(state.folder))  # see to_params
    if state.sort not in SORTS:
        state = replace(state, sort=base.sort)
    if state.when not in WHEN and not _is_year(state.when):
        state = replace(state, when="")
    # the filter reads these whether or not the Filters popover is open
    return replace(
        state, since=_iso_day(state.since), until=_iso_day(state.until),
        like=tuple(i for i in state.like if 0 < i <= MAX_ID), lw=_snap_weight(state.lw),
        pages=max(1, min(state.pages, MAX_PAGES)), min_side=max(0, min(state.min_side, MAX_SIDE)),
    )  # fmt: skip


def _is_year(text: str) -> bool:
    return bool(_DIGITS.fullmatch(text)) and int(text) in YEARS


def _snap_weight(weight: float) -> float:
    """The offered weight nearest to ``weight``, on the same side of zero."""
    side = [w for w in WEIGHTS if (w < 0) == (weight < 0)]
    return min(side, key=lambda w: abs(w - weight))


def _iso_day(text: str) -> str:
    """``text`` if it is an ISO date (YYYY-MM-DD) in ``YEARS``, else "" (no bound)."""
    try:
        day = date.fromisoformat(text) if text else None
    except ValueError:
        return ""
    return day.isoformat() if day and day.year in YEARS else ""


def to_params(state: SearchState) -> dict[str, str]:
    """The URL parameters of ``state``: only what differs from the defaults."""
    base = SearchState()
    out: dict[str, str] = {}
    for f in fields(SearchState):
        value = getattr(state, f.name)
        if value != getattr(base, f.name):
            # a folder's undecodable bytes (lone surrogates) cannot go into a URL: escaped
            out[f.name] = encode_path(value) if f.name == "folder" else _format(value)
    return out


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        return raw in ("1", "true", "yes")
    if isinstance(default, int):
        return _int(raw)
    if isinstance(default, float):
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
        return value
    if isinstance(default, tuple):
        items = [p.strip() for p in raw.split(",") if p.strip()]
        return tuple(_int(p) for p in items) if name == "like" else tuple(items)
    return raw


def _int(text: str) -> int:
    """ASCII digits only (``int`` also takes "²"-like digits and "1_000"), optional "-"."""
    if not _DIGITS.fullmatch(text.removeprefix("-")):
        raise ValueError(text)
    return int(text)


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
