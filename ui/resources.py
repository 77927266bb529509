"""Objects the page shares across reruns and sessions: the library and its warm-up."""

from __future__ import annotations

import logging
import threading

import streamlit as st

from searchapp.config import Settings
from searchapp.errors import SearchAppError
from searchapp.library import Library

log = logging.getLogger(__name__)

# Streamlit hashes a cached function's arguments as UTF-8; a data folder whose name is not
# UTF-8 (lone surrogates) stopped the page. repr() escapes them; it leaves out the fields
# marked repr=False (the UI secret), which must never decide which model or library loads.
BY_REPR = {Settings: repr}


@st.cache_resource(show_spinner=False, hash_funcs=BY_REPR)
def get_library(settings: Settings) -> Library:
    """One read-only library per configuration; opening it loads nothing yet. Queries are
    encoded by the running watcher's model when one answers, else by the page's own."""
    from searchapp.engine_client import EngineClient

    return Library(settings, engine=EngineClient(settings))


@st.cache_resource(show_spinner=False, hash_funcs=BY_REPR)
def start_warm_up(settings: Settings) -> threading.Thread:
    """Load the index and the model in the background, once per server: the timeline shows
    at once, and the first query pays neither (a query before it ends waits for the model)."""
    library = get_library(settings)

    def warm() -> None:
        try:
            library.warm_up()
        except SearchAppError as err:  # the query that needs it says the same, in the page
            log.warning("warm-up stopped: %s", err)

    thread = threading.Thread(target=warm, name="searchapp-warm-up", daemon=True)
    thread.start()
    return thread
