"""Streamlit page for searchapp: a photo library to browse and search; its status.

Run it with ``searchapp ui``: a bare ``streamlit run ui/app.py`` has neither the access
guard nor the ``/photo/*`` routes the grid loads its photos from. Settings come from
``load_settings()``, so ``SEARCHAPP_DATA_DIR``, ``SEARCHAPP_WEIGHTS`` etc. apply. The page
reads the library only through ``searchapp.library.Library`` and indexes only through
``submit`` (under the writer lock, like the CLI). It opens on the library's timeline at
once; the model warms up in the background.
"""

from __future__ import annotations

import streamlit as st

from searchapp.config import UI_PORT, Settings, command_for, load_settings, ui_command
from searchapp.errors import SearchAppError
from searchapp.ui.filters_view import forget_library as forget_filters
from searchapp.ui.indexing import add_folder_form, show_flash
from searchapp.ui.markdown import md_escape, web_text
from searchapp.ui.resources import get_library, start_warm_up
from searchapp.ui.search_view import SHOWN as PHOTOS_SHOWN
from searchapp.ui.search_view import show_photos
from searchapp.ui.status_view import drop_removal, show_status
from searchapp.ui.status_view import forget_library as forget_status

# A denser page: less padding around the grid, the title small. On a phone Streamlit stacks
# the search bar's four columns; the two popover buttons then share a row, the search box
# shows its placeholder without its label (still its accessible name), "Less of" and the
# recent searches sit beside their labels, the banner is smaller: the first photos start at
# ~535 px of 844 instead of 615-700.
STYLE = """
<style>
.block-container { padding-top: 2.2rem; padding-left: 1.2rem; padding-right: 1.2rem; }
h1 { font-size: 1.4rem !important; padding: 0 !important; }
.st-key-banner p code { white-space: nowrap; } /* a flag never breaks as "--" on a phone */
@media (max-width: 640px) {
  .st-key-searchbar [data-testid="stHorizontalBlock"],
  .st-key-summary [data-testid="stHorizontalBlock"],
  .st-key-counts [data-testid="stHorizontalBlock"] { flex-flow: row wrap; }
  .st-key-searchbar [data-testid="stColumn"]:nth-child(n+3),
  .st-key-summary [data-testid="stColumn"]:nth-child(n+2),
  .st-key-counts [data-testid="stColumn"] {
    flex: 1 1 calc(50% - 1rem) !important; min-width: calc(50% - 1rem) !important; }
  .st-key-searchbar [data-testid="stColumn"]:first-child [data-testid="stWidgetLabel"] {
    display: none; }
  /* "Less of" keeps its label, beside the box instead of above it */
  .st-key-negative [data-testid="stTextInput"] { display: flex; align-items: center; gap: .5rem; }
  .st-key-negative [data-testid="stWidgetLabel"] { flex: none; margin: 0; }
  .st-key-negative .react-aria-TextField { flex: 1; min-width: 0; }
  /* the banner smaller; the recent searches one row beside their label, scrolling sideways */
  .st-key-banner [data-testid="stAlertContainer"] { padding: .5rem .75rem; }
  .st-key-banner p { font-size: .85rem; margin-bottom: .25rem; }
  .st-key-banner pre { padding: .4rem .6rem !important; font-size: .75rem; }
  .st-key-recent { width: 100% !important; }
  .st-key-recent [data-testid="stButtonGroup"] { display: flex; align-items: center; gap: .5rem; }
  .st-key-recent [data-testid="stWidgetLabel"] { flex: none; margin: 0; }
  .st-key-recent [role="radiogroup"] { flex-wrap: nowrap; overflow-x: auto; min-width: 0; }
  .st-key-recent [role="radiogroup"] > button { flex: none; }
  .block-container { padding-top: 1.2rem; }
}
</style>
"""


TABS = ("Photos", "Status")
VIEW = "view"  # the URL parameter of the open tab: absent for Photos
STATUS_VIEW = "status"
URL_TAB = "_url_tab"  # the tab the URL named at the last run


def main() -> None:
    st.set_page_config(page_title="Photos", page_icon="🖼️", layout="wide")
    st.html(STYLE)
    try:
        settings = load_settings()
    except SearchAppError as err:
        st.error(md_escape(str(err)))
        return
    if settings.random_weights:
        st.container(key="banner").warning(random_banner(settings), icon=":material/warning:")
    show_flash()
    library = get_library(settings)
    if library.reopen_if_replaced():
        forget_filters()
        forget_status()
        st.warning(
            md_escape(f"The library in {settings.data_dir} was deleted or replaced while "
                      "this page ran; showing what is there now."),
            icon=":material/warning:",
        )  # fmt: skip
    if not library.exists:
        problem = library.cannot_create()
        if problem:  # said now, not after "Add and index" was clicked
            st.error(md_escape(problem), icon=":material/folder_off:")
            return
        _empty_state(settings)
        return
    try:
        indexed = library.photo_count()
    except SearchAppError as err:
        st.error(md_escape(str(err)))
        return
    if indexed == 0:
        _empty_state(settings)
        with st.expander("Library status"):
            show_status(library, settings)
        return
    start_warm_up(settings)
    # lazy tabs: only the open one runs, so the status tab's folder check costs nothing
    # while someone browses; the search itself stays in the URL across tabs
    follow_url_tab()
    photos_tab, status_tab = st.tabs(TABS, key="tab", on_change="rerun")
    write_url_tab()
    with photos_tab:
        if photos_tab.open:
            drop_removal()  # a "Remove" left unconfirmed is not asked again later
            show_photos(library)
    with status_tab:
        if status_tab.open:
            st.session_state[PHOTOS_SHOWN] = False  # the photos tab refills from the URL
            show_status(library, settings)


def follow_url_tab() -> None:
    """Open the tab the URL names when the URL changed under the page (first open, Back,
    Forward, a link); otherwise the tab clicked last stays."""
    named = TABS[1] if st.query_params.get(VIEW) == STATUS_VIEW else TABS[0]
    if named != st.session_state.get(URL_TAB):
        st.session_state["tab"] = st.session_state[URL_TAB] = named


def write_url_tab() -> None:
    """Put the open tab in the URL. A query change of the script's own is a new history
    entry (Streamlit pushes it), so Back leaves Status; ``bind="query-params"`` would
    replace the entry instead."""
    tab = st.session_state.get("tab", TABS[0])
    if tab == st.session_state.get(URL_TAB):
        return
    st.session_state[URL_TAB] = tab
    if tab == TABS[1]:
        st.query_params[VIEW] = STATUS_VIEW
    elif VIEW in st.query_params:
        del st.query_params[VIEW]


def random_banner(settings: Settings) -> str:
    return (
        "Random model weights (chosen by `--weights random` or `SEARCHAPP_WEIGHTS=random`): "
        "searches by words or images mean nothing. Fix: stop this page, then start it without "
        # a block of its own: a long data folder scrolls there instead of out of the page
        f"either:\n\n```\n{ui_command(settings.data_dir, _port())}\n```"
    )


def _port() -> int:
    """The port this page was started on."""
    return int(st.get_option("server.port") or UI_PORT)


def index_command(settings: Settings) -> str:
    """``searchapp index PATH`` for this page's library."""
    return f"{command_for(settings.data_dir)} index PATH"


def _empty_state(settings: Settings) -> None:
    st.info(
        "No photos are indexed yet. Add a photo folder below and index it here, or from a "
        f"terminal run:\n\n`{index_command(settings)}`\n\n"
        f"(library: `{web_text(str(settings.data_dir))}`)"
    )
    add_folder_form(settings, key="add")


main()
