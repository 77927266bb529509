"""Streamlit page for searchapp: search the library by text, image and example; see status.

Run it with ``searchapp ui`` (or ``streamlit run ui/app.py``). Settings come from
``load_settings()``, so ``SEARCHAPP_DATA_DIR``, ``SEARCHAPP_WEIGHTS`` etc. apply. The page
reads the library only through ``searchapp.library.Library`` and indexes only through
``index_library`` (under the writer lock, like the CLI).
"""

from __future__ import annotations

import streamlit as st

from searchapp.config import Settings, load_settings
from searchapp.errors import SearchAppError
from searchapp.ui.indexing import add_folder_form, show_flash
from searchapp.ui.resources import get_library, get_warm_library
from searchapp.ui.search_view import show_search
from searchapp.ui.status_view import show_status

RANDOM_BANNER = (
    "Random model weights are in use (SEARCHAPP_WEIGHTS=random): search results carry no "
    "meaning. Use the real MobileCLIP weights for real searches."
)
# Grid thumbnails share one shape so rows line up; the detail view shows the whole photo.
STYLE = """
<style>
.st-key-grid [data-testid="stImage"] img {
  aspect-ratio: 4 / 3; object-fit: cover; border-radius: 4px;
}
</style>
"""


def main() -> None:
    st.set_page_config(page_title="Photo search", page_icon=":mag:", layout="wide")
    st.html(STYLE)
    st.title("Photo search")
    try:
        settings = load_settings()
    except SearchAppError as err:
        st.error(str(err))
        return
    if settings.random_weights:
        st.warning(RANDOM_BANNER, icon=":material/warning:")
    show_flash()
    if not get_library(settings).exists:
        _empty_state(settings)
        return
    try:
        library = get_warm_library(settings)
        indexed = library.photo_count()
    except SearchAppError as err:
        st.error(str(err))
        return
    if indexed == 0:
        _empty_state(settings)
        with st.expander("Library status"):
            show_status(library, settings)
        return
    # lazy tabs: only the open one runs, so the status tab's folder check costs nothing
    # while someone searches
    search_tab, status_tab = st.tabs(["Search", "Status"], key="tab", on_change="rerun")
    with search_tab:
        if search_tab.open:
            show_search(library)
    with status_tab:
        if status_tab.open:
            show_status(library, settings)


def _empty_state(settings: Settings) -> None:
    st.info(
        "No photos are indexed yet. Add a photo folder below and index it here, or from a "
        "terminal run:\n\n`searchapp index PATH`\n\n"
        f"(library: `{settings.data_dir}`)"
    )
    add_folder_form(settings, key="add")


main()
