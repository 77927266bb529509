"""The "Filters" popover beside the search box: sort, folder (type-ahead, with photo
counts, relative to the photo folder), date (quick ranges or a calendar), file type, size;
and, when nothing is left, which filter removed everything, with a button to clear it."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from datetime import time as dtime

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from searchapp.library import Facets, FolderOption, Library, PhotoFilter
from searchapp.ui.markdown import md_escape, web_text
from searchapp.ui.url_state import MAX_SIDE, SORTS

# the default says what it does in both places ("Best match" over a timeline sorted newest
# first read as a contradiction)
SORT_LABELS = {
    "relevance": "Best match (timeline: newest first)",
    "newest": "Newest first",
    "oldest": "Oldest first",
}
QUICK = {"": "Any time", "this-month": "This month", "this-year": "This year",
         "last-year": "Last year"}  # fmt: skip
CUSTOM = "custom"
# filter field -> (what it is called, the widget keys that reset it)
_FILTER_NAMES = {
    "folder": ("the folder", {"folder": ""}),
    "taken_after": ("the date", {"when": "", "range": ("", "")}),
    "taken_before": ("the date", {"when": "", "range": ("", "")}),
    "formats": ("the file type", {"types": []}),
    "min_width": ("the minimum size", {"min_side": 0}),
}


def forget_library() -> None:
    """Drop what was kept of a library that was deleted or replaced (a new one starts at
    generation 0 again, and these are kept by generation)."""
    _folder_options.clear()
    _facets.clear()


# keyed by the library's generation: recomputed only when its contents change
@st.cache_data(max_entries=4, show_spinner=False)
def _folder_options(_library: Library, generation: int) -> list[FolderOption]:
    return _library.folder_options()


@st.cache_data(max_entries=4, show_spinner=False)
def _facets(_library: Library, generation: int) -> Facets:
    return _library.facets()


def show_filters(library: Library, where: DeltaGenerator) -> PhotoFilter | None:
    """A "Filters" popover in ``where`` (sort, show all, fold, and the filters); the filter
    in effect, or None.

    Its widgets run only while it is open: closed, the page neither computes the folder
    list nor sends a widget, so a new tab or a query does not wait for them. The values
    live in the URL (``search_view.sync_from_url`` refills them), so closed or open, the
    filter is read from the session's state.
    """
    # a fixed label: Streamlit keys a popover's open state by its label too
    box = where.popover("Filters", key="filters", on_change="rerun", width="stretch",
                        icon=":material/tune:")  # fmt: skip
    if box.open:
        with box:
            _filter_widgets(library)
    return filter_from_state(date.today())


def _filter_widgets(library: Library) -> None:
    generation = library.generation()
    st.selectbox(
        "Sort by", SORTS, format_func=SORT_LABELS.__getitem__, key="sort",
        help="Best match applies to searches; without one, the timeline is newest first "
        "unless you choose oldest first.",
    )  # fmt: skip
    st.toggle(
        "Show all results", key="show_all",
        help="Off: only results that stand out for this query. On: every photo, by match.",
    )  # fmt: skip
    st.toggle(
        "Fold near-identical photos", key="fold",
        help="Resized or re-encoded copies and bursts become one tile (+N similar).",
    )  # fmt: skip
    _folder_box(library, generation)
    facets = _facets(library, generation)
    _dates(facets)
    # a link's file type this library lacks stays chosen (and finds nothing), as when closed
    chosen = [t for t in st.session_state.get("types") or () if t not in facets.formats]
    st.multiselect("File type", [*facets.formats, *chosen], key="types")
    st.number_input(
        "Minimum size (px, both sides)", 0, MAX_SIDE, step=100, key="min_side",
        help="Hide photos smaller than this many pixels in width or height.",
    )  # fmt: skip


def filter_from_state(today: date) -> PhotoFilter | None:
    """The filter the session's state (the widgets, or the URL) asks for; None if none."""
    ss = st.session_state
    when = ss.get("when", "")
    if when == CUSTOM:
        after, before = range_bounds(*ss.get("range", ("", "")))
    else:
        after, before = quick_range(when, today)
    min_side = int(ss.get("min_side") or 0)
    flt = PhotoFilter(
        folder=ss.get("folder") or None, taken_after=after, taken_before=before,
        formats=tuple(ss.get("types") or ()), min_width=min_side or None,
        min_height=min_side or None,
    )  # fmt: skip
    return None if flt.is_empty() else flt


def _folder_box(library: Library, generation: int) -> None:
    options = _folder_options(library, generation)
    labels = {o.path: web_text(f"{o.label}  ({o.count:,})") for o in options}
    paths = [o.path for o in options]
    chosen = st.session_state.get("folder") or ""
    if chosen and chosen not in labels:  # a link to a folder this library does not have
        paths.append(chosen)
        labels[chosen] = web_text(f"{chosen}  (0)")
    st.selectbox(
        "Folder", ["", *paths], key="folder",
        format_func=lambda p: labels.get(p, "All folders") if p else "All folders",
        help="Type part of a folder's name to find it; counts include folders below.",
    )  # fmt: skip


def _dates(facets: Facets) -> None:
    first, last = facets.taken_first, facets.taken_last
    years = []
    if first is not None and last is not None:
        years = [str(y) for y in range(date.fromtimestamp(last).year,
                                        date.fromtimestamp(first).year - 1, -1)]  # fmt: skip
    options = [*QUICK, *years, CUSTOM]
    chosen = st.session_state.get("when") or ""
    if chosen not in options:  # a link's year this library has no photo of: kept, as a filter
        options.insert(len(QUICK), chosen)
    when = st.selectbox(
        "Date taken", options, key="when",
        format_func=lambda w: QUICK.get(w) or ("Pick days…" if w == CUSTOM else w),
        help="Photos without a date are left out when a date is chosen.",
    )  # fmt: skip
    if when == CUSTOM:
        _calendar(first, last)


def quick_range(when: str, today: date) -> tuple[float | None, float | None]:
    """The start and end (timestamps, local time) of a quick range or a year."""
    if not when:
        return None, None
    if when == "this-month":
        start, end = today.replace(day=1), today
    elif when == "this-year":
        start, end = today.replace(month=1, day=1), today
    elif when == "last-year":
        start, end = date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    else:
        start, end = date(int(when), 1, 1), date(int(when), 12, 31)
    return (datetime.combine(start, dtime.min).timestamp(),
            datetime.combine(end, dtime.max).timestamp())  # fmt: skip


def _calendar(first: float | None, last: float | None) -> None:
    since, until = st.session_state.get("range", ("", ""))
    value = tuple(date.fromisoformat(d) for d in (since, until) if d)
    kwargs = {}
    if first is not None and last is not None:
        kwargs = {"min_value": date.fromtimestamp(first), "max_value": date.fromtimestamp(last)}
    picked = st.date_input("Days", value=value, key="days", **kwargs)
    picked = tuple(picked) if isinstance(picked, list | tuple) else (picked,)
    st.session_state["range"] = tuple(d.isoformat() for d in picked) + ("",) * (2 - len(picked))


def range_bounds(since: str, until: str) -> tuple[float | None, float | None]:
    """The picked days (ISO dates, either may be empty) as timestamps, local time."""
    after = datetime.combine(date.fromisoformat(since), dtime.min).timestamp() if since else None
    before = datetime.combine(date.fromisoformat(until), dtime.max).timestamp() if until else None
    return after, before


def explain_empty(library: Library, flt: PhotoFilter | None) -> None:
    """Name each filter that alone leaves no photo, with a button that clears it."""
    if flt is None:
        return
    culprits: dict[str, dict] = {}
    for field, (name, reset) in _FILTER_NAMES.items():
        value = getattr(flt, field)
        if not value:
            continue
        loosened = replace(flt, **{field: None if field != "formats" else ()})
        if field == "min_width":
            loosened = replace(loosened, min_height=None)
        if field.startswith("taken_"):
            loosened = replace(loosened, taken_after=None, taken_before=None)
        if library.timeline(None if loosened.is_empty() else loosened, 0, 1).total:
            culprits[name] = reset
    if not culprits:
        st.caption("No photo passes these filters together; loosen them under Filters.")
    for name, reset in culprits.items():
        value = md_escape(_value_text(flt, name))
        st.warning(f"{name.capitalize()} {value} leaves no photo here.",
                   icon=":material/filter_alt_off:")  # fmt: skip
        st.button(f"Clear {name}", key=f"clear-{name}", on_click=_reset, args=(reset,))


def _value_text(flt: PhotoFilter, name: str) -> str:
    """A filter's value as the person chose it ("the date" 2023-01-01 to 2023-12-31)."""
    if name == "the folder":
        return str(flt.folder)
    if name == "the date":
        after, before = flt.taken_after, flt.taken_before
        start = _day(after) if after is not None else "the first"
        end = _day(before) if before is not None else "today"  # the end day's last second
        return start if start == end else f"{start} to {end}"
    if name == "the file type":
        return ", ".join(flt.formats)
    return f"{flt.min_width} px"


def _day(timestamp: float) -> str:
    return date.fromtimestamp(timestamp).isoformat()


def _reset(values: dict) -> None:
    for key, value in values.items():
        st.session_state[key] = value
