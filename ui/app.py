"""Streamlit page for searchapp: text, image and "more like this" search over the library.

Run it with ``searchapp ui`` (or ``streamlit run ui/app.py``). Settings come from
``load_settings()``, so ``SEARCHAPP_DATA_DIR``, ``SEARCHAPP_WEIGHTS`` etc. apply. The page
only reads the library; indexing stays with ``searchapp index``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from searchapp.config import Settings, load_settings
from searchapp.errors import SearchAppError
from searchapp.search import SearchResult, SearchService
from searchapp.store import PhotoFilter
from searchapp.thumbnails import thumbnail_path

COLUMNS = 4
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic"]
ALL_FOLDERS = "All folders"


@st.cache_resource(show_spinner="Loading the model...")
def get_embedder(model: str, weights: str, device: str, precision: str, data_dir: str):  # noqa: ANN201
    """One embedder per model configuration, shared by every session and library."""
    from searchapp.embedder import load_embedder

    return load_embedder(
        load_settings(
            model=model, weights=weights, device=device, precision=precision, data_dir=data_dir
        )
    )


@st.cache_resource(show_spinner="Opening the library...")
def get_service(settings: Settings) -> SearchService:
    embedder = get_embedder(
        settings.model,
        settings.weights,
        settings.device,
        settings.precision,
        str(settings.data_dir),
    )
    return SearchService(settings, embedder)


def _set_like(photo_id: int) -> None:
    st.session_state["like"] = photo_id


def _clear_like() -> None:
    st.session_state["like"] = None


def _show_results(service: SearchService, settings: Settings, results: list[SearchResult]) -> None:
    if not results:
        st.info("No results. Try other words, or a different folder filter.")
        return
    for start in range(0, len(results), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, r in zip(cols, results[start : start + COLUMNS], strict=False):
            with col:
                thumb = (
                    thumbnail_path(settings.thumbs_dir, r.content_hash) if r.content_hash else None
                )
                if thumb is not None and thumb.exists():
                    st.image(str(thumb), width="stretch")
                else:
                    st.caption("(no thumbnail)")
                st.markdown(f"**{Path(r.path).name}**")
                st.caption(f"score {r.score:.3f} · #{r.rank}")
                st.button(
                    "More like this",
                    key=f"like-{r.photo_id}",
                    on_click=_set_like,
                    args=(r.photo_id,),
                )


def _status(service: SearchService, settings: Settings) -> None:
    counts = service.store.counts()
    with st.expander(f"Library status: {counts['photos']} photos, {counts['failed']} failed"):
        st.write(f"Library: `{settings.data_dir}`")
        st.write(f"Model: {settings.model}, weights {settings.weights or 'default'}")
        st.write(f"Indexed photos: {counts['photos']}")
        st.write(f"Failed files: {counts['failed']}")
        for f in service.store.failures(limit=50):
            st.text(f"{f.path}: {f.failure_reason}")


def main() -> None:
    st.set_page_config(page_title="searchapp", layout="wide")
    st.title("Photo search")
    try:
        settings = load_settings()
    except SearchAppError as err:
        st.error(str(err))
        return
    if settings.random_weights:
        st.warning(
            "Random model weights are in use (SEARCHAPP_WEIGHTS=random): search results "
            "carry no meaning. Use the real MobileCLIP weights for real searches."
        )
    if not settings.db_path.exists():
        _empty_state(settings)
        return
    try:
        service = get_service(settings)
        counts = service.store.counts()
    except SearchAppError as err:
        st.error(str(err))
        return
    if counts["photos"] == 0:
        _empty_state(settings)
        _status(service, settings)
        return

    st.session_state.setdefault("like", None)
    with st.sidebar:
        st.header("Options")
        k = int(st.number_input("Number of results", 1, 200, 20, step=4, key="k"))
        folders = [ALL_FOLDERS, *service.store.folders()]
        folder = st.selectbox("Folder", folders, key="folder")
    flt = PhotoFilter(folder=folder) if folder and folder != ALL_FOLDERS else None

    query = st.text_input(
        "Search",
        key="query",
        placeholder="dog on a beach + 2:sunset - people",
        on_change=_clear_like,
    )
    upload = st.file_uploader(
        "...or find photos like an image",
        type=UPLOAD_TYPES,
        key="upload",
        on_change=_clear_like,
    )

    try:
        like = st.session_state.get("like")
        if like is not None:
            source = service.get_photo(like)
            name = Path(source.path).name if source is not None else f"photo {like}"
            st.subheader(f"More like {name}")
            st.button("Clear", key="clear-like", on_click=_clear_like)
            results = service.search_like(like, k, flt)
        elif upload is not None:
            data = upload.getvalue()
            st.subheader(f"Like {upload.name}")
            st.caption(hashlib.sha256(data).hexdigest()[:12])
            results = service.search_image(data, k, flt)
        elif query.strip():
            results = service.search_text(query, k, flt)
        else:
            results = None
            st.info("Type what to look for, upload an image, or pick a photo.")
        if results is not None:
            _show_results(service, settings, results)
    except SearchAppError as err:
        st.error(str(err))
    _status(service, settings)


def _empty_state(settings: Settings) -> None:
    st.info(
        "No photos are indexed yet. Add a folder and index it from a terminal:\n\n"
        "`searchapp index PATH`\n\n"
        f"(library: `{settings.data_dir}`)"
    )


main()
