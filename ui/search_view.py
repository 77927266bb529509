"""The photos tab: the search bar on top, then the library's timeline (no query) or the
results of a query, in one justified grid with a full-screen viewer (``gallery.py``).

The search lives in the URL (``url_state.py``): widgets are filled from it when the page
opens, after Back or a pasted link, or when they come back from another tab, and every
change is written back to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.uploaded_file_manager import UploadedFile

from searchapp.errors import SearchAppError
from searchapp.library import Library, PhotoFilter, QueryPart, Tile, describe_parts
from searchapp.library import parse_query as parse_text
from searchapp.ui.filters_view import explain_empty, show_filters
from searchapp.ui.gallery import show_gallery, take_action
from searchapp.ui.markdown import md_escape, say_errors
from searchapp.ui.url_state import WEIGHTS, SearchState, from_params, to_params

PAGE = 60  # tiles a "load more" adds: about two screens on a laptop
LIKE_THUMBS = 4  # examples pictured on "More like these N photos"
FOLDED = ", near-identical ones folded"  # the count is of photos; a folded tile holds several
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif", "avif"]
WEIGHT_LABELS = {
    -2.0: "much less like this", -1.0: "less like this", -0.5: "a little less like this",
    0.5: "a little like this", 1.0: "like this", 2.0: "more like this",
    3.0: "much more like this",
}  # fmt: skip
# widget key -> SearchState field; the other fields (like, pages, dates) are set directly
WIDGETS = {
    "query": "q", "negative": "neg", "sort": "sort", "show_all": "all", "folder": "folder",
    "when": "when", "types": "types", "min_side": "min_side", "like_weight": "lw",
    "fold": "fold",
}  # fmt: skip
GRID = "grid"
SHOWN = "_photos_shown"  # False while another tab is open (app.py clears it)
RETURNING = "_photos_returning"  # this run comes back from another tab
# the image searched by: the uploader forgets it when another tab is open, this does not
KEPT_UPLOAD = "_upload"


# ---------------------------------------------------------------- URL <-> widgets
def sync_from_url() -> None:
    """Fill the widgets from the URL: all of them when the URL changed under the page
    (first open, Back, a pasted link), else only those another tab's run dropped."""
    params = st.query_params.to_dict()
    state = from_params(params)
    # back from another tab: Streamlit dropped (or blanked) the widgets it did not draw
    returning = not st.session_state.get(SHOWN, False)
    st.session_state[RETURNING] = returning
    changed = returning or params != st.session_state.get("_url")
    for key, name in WIDGETS.items():
        if changed or key not in st.session_state:
            value = getattr(state, name)
            st.session_state[key] = list(value) if isinstance(value, tuple) else value
    if changed:
        st.session_state["like"] = state.like
        st.session_state["pages"] = state.pages
        st.session_state["range"] = (state.since, state.until)
        st.session_state.pop("days", None)  # the calendar takes its days from "range"
        st.session_state["_url"] = params
    st.session_state.setdefault("like", ())
    st.session_state.setdefault("pages", 1)
    st.session_state.setdefault("upload_gen", 0)


def current_state() -> SearchState:
    ss = st.session_state
    since, until = ss.get("range", ("", ""))
    return SearchState(
        q=ss.get("query", ""), neg=ss.get("negative", ""), like=tuple(ss.get("like", ())),
        lw=float(ss.get("like_weight", 1.0)) if ss.get("like") else 1.0,
        sort=ss.get("sort", "relevance"), all=bool(ss.get("show_all", False)),
        folder=ss.get("folder") or "", when=ss.get("when", ""), since=since, until=until,
        types=tuple(ss.get("types", ())), min_side=int(ss.get("min_side", 0)),
        fold=bool(ss.get("fold", False)), pages=int(ss.get("pages", 1)),
    )  # fmt: skip


def write_url(state: SearchState) -> None:
    params = to_params(state)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    st.session_state["_url"] = params


# ---------------------------------------------------------------- callbacks
def start_like(ids: tuple[int, ...]) -> None:
    """'More like this/these' starts a new query from those photos (text cleared)."""
    ss = st.session_state
    ss["like"], ss["like_weight"], ss["pages"] = tuple(ids), 1.0, 1
    ss["query"], ss["negative"] = "", ""
    ss["upload_gen"] = ss.get("upload_gen", 0) + 1


def clear_search() -> None:
    """Back to the timeline: the box, 'less of' and every example photo cleared (the text
    box has no clear button of its own); the filters and "show all" are settings, kept."""
    ss = st.session_state
    ss["query"], ss["negative"], ss["like"], ss["pages"] = "", "", (), 1
    clear_upload()


def clear_like() -> None:
    st.session_state["like"] = ()


def _on_grid_action() -> None:
    action = take_action(GRID)
    if action is None:
        return
    if action.get("kind") == "like":
        start_like(tuple(int(i) for i in action.get("ids", [])))
    elif action.get("kind") == "more":  # the grid shows them already: the URL keeps them
        pages, shown = st.session_state.get("pages", 1), action.get("shown")
        shown = -(-shown // PAGE) if isinstance(shown, int) else 0  # pages, rounded up
        # no cap here: only a link's pages are capped (url_state), a session's are clicked
        st.session_state["pages"] = max(pages + (not shown), shown)


def _pick_recent(recent: list[dict[str, str]]) -> None:
    picked = st.session_state.get("recent")
    st.session_state["recent"] = None
    if picked is not None:
        st.query_params.from_dict(recent[picked])
        st.session_state["_url"] = None  # this run fills every widget from the URL


# ---------------------------------------------------------------- the tab
# A fragment: a query, "load more" or a filter reruns this tab alone; the banner and the
# tabs above it are neither rebuilt nor sent again (interleaved A/B, 100,000 photos: a
# query's complete grid 0.535 s against 0.562 s as a whole-page rerun).
@st.fragment
@say_errors
def show_photos(library: Library) -> None:
    """Search bar, then the timeline or the results."""
    sync_from_url()
    st.session_state[SHOWN] = True
    # keyed, so the page's style can fold it on a phone (app.py)
    bar = st.container(key="searchbar").columns([5, 3, 2, 2], vertical_alignment="bottom")
    flt = show_filters(library, bar[3])
    parts, upload_key, names = _search_bar(library, bar[:3])
    state = current_state()
    signature = (state.without_paging(), upload_key)
    if st.session_state.get("_signature") not in (None, signature):
        st.session_state["pages"] = 1
        state = current_state()
    st.session_state["_signature"] = signature
    write_url(state)
    # "less of" (or "less like this") alone is no search: the library, saying why; what is
    # typed in the box runs as written (its own error where its parts cancel out)
    if not parts or (not state.q.strip() and not any(p.weight > 0 for p in parts)):
        if parts:
            st.caption("'Less of' and 'less like this' shape a search: type what to find.")
        _recent_searches(library)
        _timeline(library, flt, state)
        return
    if state.searching and st.session_state.get("_remembered") != to_params(state.without_paging()):
        st.session_state["_remembered"] = to_params(state.without_paging())
        # a weight stepped through replaces its search, not eight chips that read alike
        library.remember_search(to_params(state.without_paging()), refines=("lw",))
    if len(parts) > 1:
        st.caption("Query: " + md_escape(describe_parts(parts, names)))
    _results(library, parts, flt, state, upload_key)


def _timeline(library: Library, flt: PhotoFilter | None, state: SearchState) -> None:
    try:
        drawn = _library_state(library)
        newest = state.sort != "oldest"  # "best match" means nothing without a query
        page = library.timeline(flt, 0, PAGE * (state.pages + 1), newest=newest)  # one ahead
    except SearchAppError as err:
        st.error(md_escape(str(err)))
        return
    order = "newest first" if newest else "oldest first"
    photos = "photo" if page.total == 1 else "photos"
    st.caption(f"{page.total:,} {photos}, {order}" + (" (filtered)" if flt else "")
               + (FOLDED if state.fold else ""))  # fmt: skip
    if not page.tiles:
        explain_empty(library, flt)
        return
    grid_id = f"timeline:{flt!r}:{state.fold}:{newest}"
    tiles = library.fold_similar(page.tiles) if state.fold else page.tiles
    show_gallery(tiles, key=GRID, grid_id=grid_id, groups=True, has_more=page.has_more,
                 on_action=_on_grid_action, show=PAGE * state.pages, page=PAGE,
                 drawn=drawn)  # fmt: skip


def _results(
    library: Library,
    parts: list[QueryPart],
    flt: PhotoFilter | None,
    state: SearchState,
    upload_key: str | None,
) -> None:
    k = PAGE * (state.pages + 1)  # a page ahead: "load more" shows it without a rerun
    try:
        drawn = _library_state(library)
        page = library.query(
            library.guard_parts(parts),
            k=k,
            flt=flt,
            cutoff=not state.all,
            sort=state.sort,
            count_contents=True,
        )
        by_name = library.name_tiles(state.q, flt, limit=k) if not state.like else []
    except SearchAppError as err:
        st.error(md_escape(str(err)))
        return
    by_meaning = library.tiles(page.results, flt)
    tiles = _merge(by_name, by_meaning)
    tiles = library.fold_similar(tiles) if state.fold else tiles
    shown, hidden = _counts_beside(by_name, by_meaning, page.contents, page.hidden_contents)
    _show_summary(shown, hidden, len(by_name), state.all, filtered=flt is not None,
                  folded=state.fold)  # fmt: skip
    if not tiles:
        if flt is not None and not library.timeline(flt, 0, 1).total:
            explain_empty(library, flt)  # no photo passes the filters: name the one to clear
        else:
            st.info("No results. Try other words" + (", or show every result." if not state.all
                    else "."))  # fmt: skip
        return
    grid_id = repr((state.without_paging(), upload_key))
    show_gallery(tiles, key=GRID, grid_id=grid_id, groups=False, has_more=page.has_more,
                 on_action=_on_grid_action, show=PAGE * state.pages, page=PAGE,
                 drawn=drawn)  # fmt: skip


def _library_state(library: Library) -> tuple[int, int]:
    # read before the tiles: a change between the two is offered, never missed
    return library.generation(), library.photo_count()


def _merge(by_name: list[Tile], by_meaning: list[Tile]) -> list[Tile]:
    """Name matches first (what a typed file name asks for), then the model's results
    without the photos already shown."""
    seen = {t.content_hash or t.photo_id for t in by_name}
    return by_name + [t for t in by_meaning if (t.content_hash or t.photo_id) not in seen]


def _counts_beside(
    by_name: list[Tile], by_meaning: list[Tile], relevant: int, hidden: int
) -> tuple[int, int]:
    """The model's counts without the photos the name matches show already: those among
    its relevant results (as far as this page holds them), and the rest, which it had
    counted as hidden."""
    named = {t.content_hash or t.photo_id for t in by_name}
    if not hidden:  # "show all" (or nothing cut): every named photo is among the results
        return max(relevant - len(named), 0), 0
    twice = sum(1 for t in by_meaning if (t.content_hash or t.photo_id) in named)
    return relevant - twice, max(hidden - (len(named) - twice), 0)


def _show_summary(
    total: int, hidden: int, named: int, show_all: bool, *, filtered: bool, folded: bool
) -> None:
    results = "result" if total == 1 else "results"
    text = f"{total:,} " + (results if show_all else f"relevant {results}")
    if filtered:  # the Filters popover may be closed: say that a filter is on
        text += " (filtered)"
    if folded:
        text += FOLDED
    if named:
        text = f"{named} by file or folder name, then {text}"
    if hidden and not show_all:
        text += f"; {hidden:,} weaker {'match' if hidden == 1 else 'matches'} hidden"
    # keyed, so that on a phone the two buttons share a row (app.py)
    row = st.container(key="summary")
    left, mid, right = row.columns([8, 2, 2], vertical_alignment="center")
    left.caption(text)
    if hidden and not show_all:
        mid.button("Show all", key="show-all-inline", on_click=_show_all, width="stretch")
    right.button("Clear search", key="clear-search", on_click=clear_search, width="stretch",
                 icon=":material/close:", type="tertiary", help="Back to the timeline")  # fmt: skip


def _show_all() -> None:
    st.session_state["show_all"] = True


# ---------------------------------------------------------------- the search bar
def _search_bar(
    library: Library, columns: list[DeltaGenerator]
) -> tuple[list[QueryPart], str | None, dict[int, str]]:
    """The query parts from the box, 'less of', an uploaded image and example photos."""
    left, mid, right = columns
    text = left.text_input(
        "Search your photos", key="query", placeholder="dog on a beach, IMG_2041, 2023/Juli",
        help="Describe what to find, or type a file or folder name. Combine parts with "
        "' + ' and ' - ', weigh them with 'N:' (2:sunset). Press / to come back here.",
    )  # fmt: skip
    negative = mid.text_input(
        "Less of (optional)", key="negative", placeholder="e.g. people, cars",
        help="Comma-separated things the photos should not show.",
    )  # fmt: skip
    with right.popover("Search by image", width="stretch"):
        upload = st.file_uploader(
            "A photo to find more like (JPEG, PNG, WebP, HEIC, AVIF)",
            type=UPLOAD_TYPES,
            key=f"upload-{st.session_state['upload_gen']}",
        )
    parts: list[QueryPart] = []
    try:
        if text.strip():
            parts += parse_text(text)
    except SearchAppError as err:
        st.error(md_escape(str(err)))
    parts += [QueryPart("text", w.strip(), -1.0) for w in negative.split(",") if w.strip()]
    upload_key = None
    kept = _kept_upload(upload)
    if kept is not None and _upload_preview(library, kept) is not None:
        upload_key = hashlib.sha256(kept["data"]).hexdigest()
        # one weight per uploaded image: a new image starts at "like this", and the slider
        # always shows the weight the query uses
        key = f"upload_weight-{upload_key[:16]}"
        st.session_state.setdefault(key, kept.get("weight", 1.0))
        title = f"Like {kept['name']}"
        weight = _weight_card(key, title, [kept["preview"]], on_clear=clear_upload)
        kept["weight"] = weight
        parts.append(QueryPart("image", kept["data"], weight))
    names = _add_like_parts(library, parts)
    return parts, upload_key, names


def _kept_upload(upload: UploadedFile | None) -> dict | None:
    """The image to search by: the uploader's, or the one kept while another tab was open
    (Streamlit drops the widgets it did not draw); None once removed in the uploader."""
    ss = st.session_state
    kept = ss.get(KEPT_UPLOAD)
    if upload is not None:
        if kept is None or kept["file_id"] != upload.file_id:  # a new image
            ss[KEPT_UPLOAD] = {"file_id": upload.file_id, "name": upload.name,
                               "data": upload.getvalue()}  # fmt: skip
        ss[KEPT_UPLOAD]["in_widget"] = True
    elif kept is not None and kept["in_widget"] and not ss.get(RETURNING):
        del ss[KEPT_UPLOAD]  # its x in the uploader
    elif kept is not None:
        kept["in_widget"] = False  # shown by its card alone, which can clear it
    return ss.get(KEPT_UPLOAD)


def _upload_preview(library: Library, kept: dict) -> bytes | None:
    """The upload's small preview, decoded once; None (and why, in one line) when it is no
    image the search could read."""
    if "preview" not in kept:
        try:
            kept["preview"] = library.upload_preview(kept["data"])
        except SearchAppError as err:
            kept["preview"], kept["problem"] = None, str(err)
    if kept["preview"] is None:
        st.error(
            md_escape(f"Cannot search by {kept['name']}: {kept['problem']}. Choose a JPEG, "
                      "PNG, WebP, HEIC or AVIF photo."),
            icon=":material/broken_image:",
        )  # fmt: skip
        clear_upload()  # said once; kept, it had no card to clear it by after a visit to Status
    return kept["preview"]


def clear_upload() -> None:
    st.session_state.pop(KEPT_UPLOAD, None)
    st.session_state["upload_gen"] = st.session_state.get("upload_gen", 0) + 1


def _add_like_parts(library: Library, parts: list[QueryPart]) -> dict[int, str]:
    names: dict[int, str] = {}
    records = [library.photo(int(i)) for i in st.session_state.get("like", ())]
    records = [r for r in records if r is not None]
    if not records:
        if st.session_state.get("like"):
            clear_like()
        return names
    for r in records:
        names[r.id] = Path(r.path).name
    how = "Less like" if st.session_state.get("like_weight", 1.0) < 0 else "More like"
    title = f"{how} {names[records[0].id]}" if len(records) == 1 else (
        f"{how} these {len(records)} photos")  # fmt: skip
    thumbs = [library.thumbnail(r.content_hash) for r in records[:LIKE_THUMBS]]
    shown = [str(t) for t in thumbs if t]  # the examples, not only the first
    weight = _weight_card("like_weight", title, shown, on_clear=clear_like)
    parts += [QueryPart("photo", r.id, weight) for r in records]
    return names


def _weight_card(
    key: str, title: str, images: list[bytes] | list[str], on_clear: Callable[[], None]
) -> float:
    """A small card for an example image (or several): picture, title, weight (less /
    more like it), and a button that drops the example."""
    pic, body, end = st.columns([1, 6, 1], vertical_alignment="center")
    if len(images) > 1:
        pic.image(images, width=72 // 2)  # side by side, two a row
    elif images:
        pic.image(images[0], width=72)
    with body:
        st.markdown(f"**{md_escape(title)}**")
        st.session_state.setdefault(key, 1.0)
        weight = st.select_slider(
            "How much", WEIGHTS, key=key, format_func=WEIGHT_LABELS.__getitem__,
            label_visibility="collapsed",
        )  # fmt: skip
    clear_key = "clear-like" if key == "like_weight" else "clear-upload"
    end.button("Clear", key=clear_key, on_click=on_clear)
    return float(weight)


def _recent_searches(library: Library) -> None:
    recent = library.recent_searches()
    if not recent:
        return
    labels = [_recent_label(library, p) for p in recent]
    st.pills("Recent searches", range(len(recent)), format_func=labels.__getitem__,
             key="recent", on_change=_pick_recent, args=(recent,))  # fmt: skip


def _recent_label(library: Library, params: dict[str, str]) -> str:
    state = from_params(params)
    text = state.q or "search"
    if state.like and not state.q:
        first = library.photo(state.like[0]) if len(state.like) == 1 else None
        count = len(state.like)
        how = "more like" if state.lw > 0 else "less like"
        times = "" if abs(state.lw) == 1 else f" ×{abs(state.lw):g}"  # the weight it restores
        text = f"{how} {Path(first.path).name}{times}" if first else (
            f"{how} {count} photo" + ("s" if count > 1 else "") + times)  # fmt: skip
    if state.neg:
        text += f" − {state.neg}"
    text = text if len(text) <= 40 else text[:39] + "…"
    # what else sets it apart from the same words: two chips once read "dog (all)" alike
    notes = [word for word, on in (
        ("all", state.all), (state.sort, state.sort != "relevance"), ("folded", state.fold),
        ("filtered", bool(state.folder or state.when or state.types or state.min_side)),
    ) if on]  # fmt: skip
    return md_escape(text + (f" ({', '.join(notes)})" if notes else ""))
