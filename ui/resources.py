"""Objects the page shares across reruns and sessions: the model, the library."""

from __future__ import annotations

import streamlit as st

from searchapp.config import Settings
from searchapp.library import Library
from searchapp.model import ClipEmbedder


@st.cache_resource(show_spinner="Loading the model...")
def get_embedder(settings: Settings) -> ClipEmbedder:
    """One embedder per model configuration, shared by every session."""
    from searchapp.model import load_embedder

    return load_embedder(settings)


@st.cache_resource(show_spinner=False)
def get_library(settings: Settings) -> Library:
    """One read-only library per configuration; opening it loads nothing yet. Queries are
    encoded by the running watcher's model when one answers, else by the page's own."""
    from searchapp.engine_client import EngineClient

    return Library(settings, engine=EngineClient(settings))


@st.cache_resource(show_spinner="Opening the library and warming up the model...")
def get_warm_library(settings: Settings) -> Library:
    """The library, warmed up once: the first query pays neither for loading the index
    nor for the text tower's first call. It reloads the index when the store moves on."""
    library = get_library(settings)
    library.warm_up()
    return library


@st.cache_data(max_entries=16, show_spinner="Loading the photo...")
def get_preview(_library: Library, path: str, mtime_ns: int) -> bytes:
    """The detail view's large preview (guarded read, EXIF-oriented, <= 1600 px).

    ``mtime_ns`` is part of the cache key so an edited photo is decoded again.
    """
    return _library.preview_jpeg(path)
