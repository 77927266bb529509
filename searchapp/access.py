"""The access guard: the only way a front-end reaches an original photo file.

The page serves whatever path a query names (``image:PATH``, a detail view, "open
folder"), so every read of an original goes through :func:`guarded_original`: the path
is resolved (``..`` and symlinks included) and must land on an indexed photo inside an
indexed root. Anything else is refused with :class:`AccessDeniedError`; an indexed photo
whose file is gone gets :class:`PhotoNotFoundError`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from searchapp.decoder import decode_photo, load_photo
from searchapp.errors import AccessDeniedError, PhotoNotFoundError
from searchapp.paths import is_under
from searchapp.store import Store

PREVIEW_SIDE = 1600
PREVIEW_QUALITY = 88


def guarded_original(store: Store, path: str | Path) -> Path:
    """The real file behind ``path`` if it is an indexed photo under an indexed root."""
    real = Path(os.path.realpath(path))
    roots = [os.path.realpath(r.path) for r in store.list_roots()]
    if not any(is_under(str(real), r) for r in roots):
        raise AccessDeniedError(f"{path} is not inside an indexed folder.")
    if store.find_photo_by_path(str(path)) is None and store.find_photo_by_path(str(real)) is None:
        raise AccessDeniedError(f"{path} is not an indexed photo.")
    if not real.is_file():
        raise PhotoNotFoundError(
            f"{path} is no longer there (moved, deleted, or its drive is offline); "
            "the next indexing run updates the library."
        )
    return real


def preview_jpeg(real: Path, max_side: int = PREVIEW_SIDE) -> bytes:
    """A JPEG of an already guarded file, EXIF-oriented, long side <= ``max_side``."""
    return _jpeg(load_photo(real, max_side).image, max_side)


def upload_preview(data: bytes, max_side: int) -> bytes:
    """A small JPEG of an uploaded image, decoded with the bounds every file gets; bytes
    that are no image raise ``ImageDecodeError`` with the indexer's one-line reason."""
    return _jpeg(decode_photo(data, max_side).image, max_side)


def _jpeg(image: Image.Image, max_side: int) -> bytes:
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=PREVIEW_QUALITY)
    return out.getvalue()


__all__ = ["PREVIEW_SIDE", "guarded_original", "preview_jpeg", "upload_preview"]
