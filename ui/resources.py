"""Objects the page shares across reruns and sessions: the model, the search service."""

from __future__ import annotations

import streamlit as st

from searchapp.config import Settings
from searchapp.model import ClipEmbedder
from searchapp.search import SearchService


@st.cache_resource(show_spinner="Loading the model...")
def get_embedder(settings: Settings) -> ClipEmbedder:
    """One embedder per model configuration, shared by every session."""
    from searchapp.model import load_embedder

    return load_embedder(settings)


@st.cache_resource(show_spinner="Opening the library and warming up the model...")
def get_service(settings: Settings) -> SearchService:
    """One read-only service per library; it reloads the index when the store moves on.

    Warmed up here, once, so the first query does not pay for loading the index or for
    the text tower's first call.
    """
    service = SearchService(settings, get_embedder(settings))
    service.warm_up()
    return service


@st.cache_data(max_entries=16, show_spinner="Loading the photo...")
def get_preview(_service: SearchService, path: str, mtime_ns: int) -> bytes:
    """The detail view's large preview (guarded read, EXIF-oriented, <= 1600 px).

    ``mtime_ns`` is part of the cache key so an edited photo is decoded again.
    """
    return _service.preview_jpeg(path)
