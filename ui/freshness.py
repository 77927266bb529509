"""A notice above the photos when the library changed after they were drawn (the watcher
indexed new photos, a terminal run removed some): one click shows what is there now.

A fragment polls the library's generation. The grid is never redrawn under the user's
eyes: an open viewer, a half-typed query or a scrolled position stay until they ask.
"""

from __future__ import annotations

import streamlit as st

from searchapp.errors import SearchAppError
from searchapp.library import Library

POLL_S = 5.0  # one cheap read of the library's generation per open tab
DRAWN = "_drawn"  # (generation, indexed photos) the photos tab last drew


def note_drawn(library: Library) -> None:
    """Remember what the photos tab is drawing from."""
    st.session_state[DRAWN] = (library.generation(), library.photo_count())


def change_text(drawn: tuple[int, int], now: tuple[int, int]) -> str | None:
    """What changed between two (generation, photo count) readings, or None."""
    if now[0] == drawn[0]:
        return None
    added = now[1] - drawn[1]
    if added == 0:
        return "Photos were updated"
    plural = "" if abs(added) == 1 else "s"
    if added > 0:
        return f"{added:,} new photo{plural} indexed"
    return f"{-added:,} photo{plural} removed"


@st.fragment(run_every=POLL_S)
def show_changes(library: Library) -> None:
    """The notice, with a button that redraws the page; nothing while nothing changed."""
    drawn = st.session_state.get(DRAWN)
    if drawn is None:
        return
    try:
        text = change_text(drawn, (library.generation(), library.photo_count()))
    except SearchAppError:  # the page's own run says what is wrong
        return
    if text is not None and st.button(f"{text}: show", key="show-changes",
                                      icon=":material/refresh:"):  # fmt: skip
        st.rerun()  # the whole page: the timeline, the counts and the filters' choices
