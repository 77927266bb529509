"""``searchapp search``: by words, by an image file, or like an indexed photo.

The running watcher answers when there is one (its model is loaded); else this process
opens the library and loads the model itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from searchapp.config import Settings, command_for
from searchapp.text import printable

if TYPE_CHECKING:  # imported where used: a search through the watcher needs no Library
    from searchapp.library import Library


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.errors import UsageError

    chosen = [x for x in (args.text, args.image, args.like) if x]
    if len(chosen) != 1:
        raise UsageError("give exactly one of: TEXT, --image PATH, --like PHOTO")
    if args.k < 1:
        raise UsageError("-k must be at least 1.")
    folder = str(Path(args.folder).resolve()) if args.folder else None
    if folder:
        _check_folder(settings, folder)
    rows = _search_by_watcher(settings, args, folder)
    if rows is not None:
        _print_rows(settings, args, _with_names(settings, args, folder, rows))
        return 0
    from searchapp.library import Library

    with Library(settings) as library:
        rows = _search_here(library, args, folder)
        _print_rows(settings, args, _with_names(settings, args, folder, rows, library))
        sys.stdout.flush()  # the answer is out before the model cache is written
        library.keep_model_cache()
    return 0


def _with_names(
    settings: Settings,
    args: argparse.Namespace,
    folder: str | None,
    rows: list[dict],
    library: Library | None = None,
) -> list[dict]:
    """A TEXT that looks like a file or folder name (IMG_2041, 2023/Juli) also matches
    names below the photo folders, as on the page: those come first (score null), then
    the model's results without them, ``-k`` in all."""
    from searchapp.query import name_fragment  # light: the watcher's answer loads no store

    if not args.text or name_fragment(args.text) is None:
        return rows
    from searchapp.library import Library, PhotoFilter

    flt = PhotoFilter(folder=folder) if folder else None
    if library is None:  # the watcher answered: the names are a read of the store, no model
        with Library(settings) as own:
            tiles = own.name_tiles(args.text, flt, limit=args.k)
    else:
        tiles = library.name_tiles(args.text, flt, limit=args.k)
    named = [_name_row(t) for t in tiles]
    seen = {r["photo_id"] for r in named}  # a copy by another name is a row of its own here
    rest = [r for r in rows if r["photo_id"] not in seen]
    return [{**r, "rank": i} for i, r in enumerate((named + rest)[: args.k], 1)]


def _name_row(tile) -> dict:  # noqa: ANN001 - searchapp.browse.Tile
    keys = ("photo_id", "path", "taken_at", "size", "width", "height", "format", "content_hash")
    return {"rank": 0, "score": None, **{k: getattr(tile, k) for k in keys}}


def _check_folder(settings: Settings, folder: str) -> None:
    """A --folder outside every photo folder would answer "no results": say why instead."""
    from searchapp.errors import UsageError
    from searchapp.library import Library
    from searchapp.paths import is_under

    with Library(settings) as library:
        roots = [r.path for r in library.roots()]
    if roots and not any(is_under(folder, r) or is_under(r, folder) for r in roots):
        raise UsageError(f"{folder} is not in a photo folder of this library; "
                         f"see: {command_for(settings.data_dir)} roots list")  # fmt: skip


def _print_rows(settings: Settings, args: argparse.Namespace, rows: list[dict]) -> None:
    from searchapp.config import RANDOM_WARNING

    if settings.random_weights:  # said with the results; an error stays one line
        print(RANDOM_WARNING, file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        score = "  name" if r["score"] is None else f"{r['score']:6.3f}"  # a column with -0.010
        print(f"{r['rank']:3d}  {score}  [{r['photo_id']}]  {printable(r['path'])}")
    if not rows:
        print("no results")


def _search_by_watcher(
    settings: Settings, args: argparse.Namespace, folder: str | None
) -> list[dict] | None:
    """The running watcher's answer (its model is loaded), or None: search here."""
    from searchapp.engine_client import EngineClient

    request: dict = {"k": args.k, "filters": {"folder": folder} if folder else None}
    if args.text:
        request["text"] = args.text
    elif args.image:
        request["image_path"] = str(Path(args.image).absolute())
    else:
        request["like"] = args.like
    answer = EngineClient(settings).search(request)
    return None if answer is None else answer["results"]


def _search_here(library: Library, args: argparse.Namespace, folder: str | None) -> list[dict]:
    from searchapp.library import PhotoFilter

    flt = PhotoFilter(folder=folder) if folder else None
    if args.text:
        results = library.search_text(args.text, args.k, flt)
    elif args.image:
        results = library.search_image(args.image, args.k, flt)
    else:
        results = library.search_like(args.like, args.k, flt)
    return [r.as_dict() for r in results]
