"""The search tab: query box, image upload, "more like this", filters, grid, detail view."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path

import streamlit as st

from searchapp.errors import SearchAppError
from searchapp.library import (
    Facets,
    Library,
    PhotoFilter,
    QueryPart,
    SearchPage,
    SearchResult,
    describe_parts,
)
from searchapp.library import parse_query as parse_text
from searchapp.ui.resources import get_preview

COLUMNS = 4
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif"]
ALL = "All"
SORT_LABELS = {"relevance": "Relevance", "newest": "Date taken, newest first",
               "oldest": "Date taken, oldest first"}  # fmt: skip
WEIGHTS = [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0]
MD_SPECIAL = "\\`*_[]<>~$#|"


# ---------------------------------------------------------------- state changes (callbacks)
def start_like(photo_id: int) -> None:
    """'More like this' starts a new query from that photo (text and upload cleared)."""
    st.session_state["like"] = photo_id
    st.session_state["like_weight"] = 1.0
    st.session_state["query"] = ""
    st.session_state["negative"] = ""
    st.session_state["upload_gen"] = st.session_state.get("upload_gen", 0) + 1
    st.session_state.pop("detail", None)


def clear_like() -> None:
    st.session_state["like"] = None


def open_detail(photo_id: int) -> None:
    st.session_state["detail"] = photo_id


def _show_all() -> None:
    st.session_state["show_all"] = True


def load_more() -> None:
    st.session_state["pages"] = st.session_state.get("pages", 1) + 1


# ---------------------------------------------------------------- the tab
def show_search(library: Library) -> None:
    """Controls, then the grid of this query's results."""
    st.session_state.setdefault("like", None)
    st.session_state.setdefault("upload_gen", 0)
    flt, k, sort, show_all = _sidebar(library)
    parts, signature = _query_controls(library)
    detail = st.session_state.pop("detail", None)
    if detail is not None:
        _detail_dialog(library, int(detail))
    if not parts:
        st.info("Type what to look for, upload an image, or use a photo's 'More like this'.")
        return
    signature = (signature, flt, k, sort, show_all)
    if st.session_state.get("signature") != signature:
        st.session_state["signature"] = signature
        st.session_state["pages"] = 1
    limit = k * st.session_state.get("pages", 1)
    try:
        page = library.query(
            library.guard_parts(parts), k=limit, flt=flt, cutoff=not show_all, sort=sort
        )
    except SearchAppError as err:
        st.error(str(err))
        return
    _show_summary(page, show_all)
    _show_grid(library, page.results)
    if page.has_more:
        st.button(f"Load {k} more", key="more", on_click=load_more)


def _sidebar(library: Library) -> tuple[PhotoFilter | None, int, str, bool]:
    with st.sidebar:
        st.header("Results")
        k = int(st.number_input("Results per page", 1, 200, 20, step=4, key="k"))
        sort = st.selectbox(
            "Sort by", list(SORT_LABELS), format_func=SORT_LABELS.__getitem__, key="sort"
        )
        show_all = st.toggle(
            "Show all results",
            key="show_all",
            help="Off: only results that stand out for this query. On: every photo, by score.",
        )
        st.header("Filters")
        flt = _filters(library)
    return (None if flt.is_empty() else flt), k, sort, show_all


def _filters(library: Library) -> PhotoFilter:
    roots = [r.path for r in library.roots()]
    root = st.selectbox("Photo folder (root)", [ALL, *roots], key="root")
    facets = library.facets(root if root != ALL else None)
    folder = st.selectbox("Folder (and below)", [ALL, *facets.folders], key="folder")
    formats = st.multiselect("File type", facets.formats, key="formats")
    after, before = _date_range(facets)
    min_side = int(
        st.number_input(
            "Minimum size (px, both sides)", 0, 20000, 0, step=100, key="min_side",
            help="Hide photos smaller than this many pixels in width or height.",
        )
    )  # fmt: skip
    return PhotoFilter(
        roots=(root,) if root != ALL else (),
        folder=folder if folder != ALL else None,
        taken_after=after,
        taken_before=before,
        formats=tuple(formats),
        min_width=min_side or None,
        min_height=min_side or None,
    )


def _date_range(facets: Facets) -> tuple[float | None, float | None]:
    lo, hi = facets.taken_first, facets.taken_last
    if lo is None or hi is None:
        st.caption("Date taken: no photo has a date yet.")
        return None, None
    first, last = date.fromtimestamp(lo), date.fromtimestamp(hi)
    picked = st.date_input(
        "Date taken", value=(), min_value=first, max_value=last, key="dates",
        help="Only photos taken on these days (photos without a date are left out).",
    )  # fmt: skip
    picked = tuple(picked) if isinstance(picked, list | tuple) else (picked,)
    after = datetime.combine(picked[0], dtime.min).timestamp() if picked else None
    before = datetime.combine(picked[1], dtime.max).timestamp() if len(picked) > 1 else None
    return after, before


def _query_controls(library: Library) -> tuple[list[QueryPart], tuple]:
    """The query parts from the box, the 'less of' box, the upload and the liked photo."""
    left, right = st.columns([3, 2])
    with left:
        text = st.text_input(
            "Search",
            key="query",
            placeholder="dog on a beach + 2:sunset - people",
            help="Words describe what to find. Combine parts with ' + ' and ' - ', weigh "
            "them with 'N:' (2:sunset), and mix in an indexed photo with photo:ID.",
        )
        negative = st.text_input(
            "Less of", key="negative", placeholder="people, cars",
            help="Comma-separated things the photos should not show.",
        )  # fmt: skip
    with right:
        upload = st.file_uploader(
            "Search by image (JPEG, PNG, WebP, HEIC)",
            type=UPLOAD_TYPES,
            key=f"upload-{st.session_state['upload_gen']}",
        )
    parts: list[QueryPart] = []
    try:
        if text.strip():
            parts += parse_text(text)
    except SearchAppError as err:
        st.error(str(err))
    parts += [QueryPart("text", w.strip(), -1.0) for w in negative.split(",") if w.strip()]
    upload_key = None
    if upload is not None:
        data = upload.getvalue()
        upload_key = hashlib.sha256(data).hexdigest()
        weight = _weight_control("upload_weight", f"Like {upload.name}", data, None)
        parts.append(QueryPart("image", data, weight))
    like = st.session_state.get("like")
    names: dict[int, str] = {}
    if like is not None:
        source = library.photo(int(like))
        if source is None:
            clear_like()
        else:
            names[source.id] = Path(source.path).name
            thumb = _thumb(library, source.content_hash)
            weight = _weight_control("like_weight", f"More like {names[source.id]}", thumb, like)
            parts.append(QueryPart("photo", source.id, weight))
    if len(parts) > 1:
        st.caption("Query: " + describe_parts(parts, names))
    return parts, (text, negative, upload_key, like, st.session_state.get("like_weight"),
                   st.session_state.get("upload_weight"))  # fmt: skip


def _weight_control(key: str, title: str, image: bytes | str | None, like: int | None) -> float:
    """A small card for an image part: its picture, title, weight (negative = less like)."""
    pic, body = st.columns([1, 5])
    with pic:
        if image is not None:
            st.image(image, width=96)
    with body:
        st.subheader(title)
        st.session_state.setdefault(key, 1.0)
        weight = st.select_slider(
            "Weight", WEIGHTS, key=key,
            help="How much this image counts; negative means 'less like this'.",
        )  # fmt: skip
        if like is not None:
            st.button("Clear", key="clear-like", on_click=clear_like)
    return float(weight)


def _show_summary(page: SearchPage, show_all: bool) -> None:
    shown = len(page.results)
    text = f"{shown} of {page.total} " + ("results" if show_all else "relevant results")
    if page.hidden and not show_all:
        text += f"; {page.hidden} weaker matches hidden"
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.caption(text)
    if page.hidden and not show_all:
        right.button("Show all", key="show-all-inline", on_click=_show_all, width="stretch")
    if not page.results:
        st.info("No results. Try other words, or loosen the filters.")


def _thumb(library: Library, content_hash: str | None) -> str | None:
    path = library.thumbnail(content_hash)
    return None if path is None else str(path)


def _show_grid(library: Library, results: list[SearchResult]) -> None:
    """Cards in rows of COLUMNS; thumbnails come from the cache, never from originals."""
    with st.container(key="grid"):
        for start in range(0, len(results), COLUMNS):
            cols = st.columns(COLUMNS)
            for col, r in zip(cols, results[start : start + COLUMNS], strict=False):
                with col, st.container(border=True):
                    _card(library, r)


def _card(library: Library, r: SearchResult) -> None:
    thumb = _thumb(library, r.content_hash)
    if thumb is not None:
        st.image(thumb, width="stretch")
    else:
        st.caption("(no thumbnail)")
    st.markdown(f"**{md_escape(Path(r.path).name)}**")
    st.caption(f"score {r.score:.3f} · {_date_text(r.taken_at)}")
    # stacked, full width: side by side they do not fit a quarter of a laptop screen
    st.button("More like this", key=f"like-{r.photo_id}", on_click=start_like,
              args=(r.photo_id,), width="stretch")  # fmt: skip
    st.button("Details", key=f"open-{r.photo_id}", on_click=open_detail, args=(r.photo_id,),
              width="stretch")  # fmt: skip


def _date_text(taken_at: float | None) -> str:
    return datetime.fromtimestamp(taken_at).strftime("%Y-%m-%d") if taken_at else "no date"


def md_escape(text: str) -> str:
    """File names shown as Markdown: `*` or `_` in a name must not turn into emphasis."""
    return "".join("\\" + c if c in MD_SPECIAL else c for c in text)


# ---------------------------------------------------------------- the detail view
@st.dialog("Photo", width="large")
def _detail_dialog(library: Library, photo_id: int) -> None:
    record = library.photo(photo_id)
    if record is None:
        st.warning("This photo is no longer in the index.")
        return
    left, right = st.columns([3, 2])
    with left:
        try:
            st.image(get_preview(library, record.path, record.mtime_ns), width="stretch")
        except SearchAppError as err:
            st.error(str(err))
    with right:
        st.markdown(f"**{md_escape(Path(record.path).name)}**")
        st.code(record.path, language=None, wrap_lines=True)
        size = f"{record.width} × {record.height} px" if record.width else "unknown size"
        st.text(f"Dimensions: {size}")
        st.text(f"Taken: {_when(record.taken_at)}")
        st.text(f"Camera: {record.camera or 'unknown'}")
        st.text(f"File: {record.format or '?'}, {record.size / 2**20:.2f} MB")
        if st.button("More like this", key="detail-like", type="primary",
                     on_click=start_like, args=(photo_id,)):  # fmt: skip
            st.rerun()
        if st.button("Open folder", key="detail-open",
                     help="Opens the folder on the computer running searchapp."):  # fmt: skip
            _open_folder(library, record.path)


def _when(taken_at: float | None) -> str:
    if not taken_at:
        return "unknown (no EXIF date)"
    return datetime.fromtimestamp(taken_at).strftime("%Y-%m-%d %H:%M:%S")


def _open_folder(library: Library, path: str) -> None:
    """Show the photo's folder in the file manager (guarded like every read)."""
    try:
        folder = library.photo_file(path).parent
    except SearchAppError as err:
        st.error(str(err))
        return
    if sys.platform == "win32":
        os.startfile(folder)  # type: ignore[attr-defined]  # noqa: S606
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if shutil.which(opener) is None:
        st.warning(f"No file manager to open here ({opener} is missing); copy the path above.")
        return
    subprocess.Popen([opener, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
