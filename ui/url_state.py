"""The search as URL query parameters: what a reload, Back, or a copied link restores.

Pure: :class:`SearchState` from and to a ``dict[str, str]`` (``st.query_params``). Only
values that differ from the defaults go into the URL, so the landing page is plain ``/``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date

SORTS = ("relevance", "newest", "oldest")
WHEN = ("", "this-month", "this-year", "last-year", "custom")  # or a year: "2023"


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
    if state.sort not in SORTS:
        state = replace(state, sort=base.sort)
    if state.when not in WHEN and not (state.when.isdigit() and len(state.when) == 4):
        state = replace(state, when="")
    # the filter reads these days whether or not the Filters popover is open
    state = replace(state, since=_iso_day(state.since), until=_iso_day(state.until))
    return replace(state, pages=max(1, min(state.pages, 50)), lw=max(-3.0, min(state.lw, 3.0)))


def _iso_day(text: str) -> str:
    """``text`` if it is an ISO date (YYYY-MM-DD), else "" (no bound)."""
    try:
        return date.fromisoformat(text).isoformat() if text else ""
    except ValueError:
        return ""


def to_params(state: SearchState) -> dict[str, str]:
    """The URL parameters of ``state``: only what differs from the defaults."""
    base = SearchState()
    out: dict[str, str] = {}
    for f in fields(SearchState):
        value = getattr(state, f.name)
        if value != getattr(base, f.name):
            out[f.name] = _format(value)
    return out


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        return raw in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        items = [p.strip() for p in raw.split(",") if p.strip()]
        return tuple(int(p) for p in items) if name == "like" else tuple(items)
    return raw


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
