"""The photo grid and viewer: one ``st.components.v2`` component, inline JS and CSS from
``gallery.js``, ``viewer.js`` and ``gallery.css`` beside this file (no build step, no npm
package).

Python sends the tiles (ids, content hashes, sizes, names; no image bytes); the browser
loads thumbnails and previews from the page server's ``/photo/*`` routes (``media.py``).
The component reports one action at a time: ``like`` (ids), ``more``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import streamlit as st

from searchapp.browse import Tile
from searchapp.ui.media import ZIP_MAX_PHOTOS

_HERE = Path(__file__).resolve().parent
_COMPONENT = st.components.v2.component(
    "searchapp.gallery",
    html="",
    css=(_HERE / "gallery.css").read_text(encoding="utf-8"),
    # one module: the grid (gallery.js, which exports the component) and its viewer
    js="\n".join((_HERE / f).read_text(encoding="utf-8") for f in ("gallery.js", "viewer.js")),
)


def tile_data(tile: Tile) -> dict:
    """One tile as the component reads it (JSON)."""
    return {
        "photo_id": tile.photo_id, "content_hash": tile.content_hash, "path": tile.path,
        "relative": tile.relative, "width": tile.width,
        "height": tile.height, "size": tile.size, "format": tile.format,
        "copies": tile.copies, "score": tile.score, "by_name": tile.by_name,
        "month": tile.month, "similar": tile.similar, "taken": wall_clock(tile.taken_at),
    }  # fmt: skip


def wall_clock(taken_at: float | None) -> str | None:
    """The time a photo was taken as its camera wrote it (EXIF has no time zone: it was
    read as this computer's local time), for the browser to show as written wherever it
    runs, not shifted into its own time zone."""
    if taken_at is None:
        return None
    return datetime.fromtimestamp(taken_at).isoformat(timespec="seconds")


def show_gallery(
    tiles: Sequence[Tile],
    *,
    key: str,
    grid_id: str,
    groups: bool,
    has_more: bool,
    on_action: Callable[[], None],
    show: int,
    page: int,
    drawn: tuple[int, int],
    more_label: str = "Load more",
) -> None:
    """The grid of ``tiles``, the first ``show`` of them shown; "load more" shows ``page``
    more at once from the rest and asks for the next ones (``more``) in the background.
    ``grid_id`` names what the tiles are (a new one starts a new grid, the same one with
    more tiles appends to it). Month headers when ``groups``. ``drawn`` is the library's
    (generation, indexed photos) the tiles were read at."""
    _COMPONENT(
        key=key,
        data={
            "key": grid_id,
            "tiles": [tile_data(t) for t in tiles],
            "groups": groups,
            "has_more": has_more,
            "more_label": more_label,
            "show": show,
            "page": page,
            "zip_max": ZIP_MAX_PHOTOS,  # the selection bar says so before a refused zip
            # the library these tiles come from: the grid polls /photo/library against it
            "drawn": {"generation": drawn[0], "photos": drawn[1]},
        },
        on_action_change=on_action,
    )


def take_action(key: str) -> dict | None:
    """The action the grid ``key`` just reported (inside its callback), or None."""
    state = st.session_state.get(key)
    value = getattr(state, "action", None) if state is not None else None
    if value is None and isinstance(state, dict):
        value = state.get("action")
    return value if isinstance(value, dict) else None
