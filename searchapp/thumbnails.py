"""Thumbnail cache keyed by content hash, written from the already-decoded small image."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from searchapp.atomic import atomic_writer

THUMB_SIZE = 384
THUMB_QUALITY = 82
STALE_TEMP_S = 600  # a temp file this old has no live writer (one takes milliseconds)


def thumbnail_path(thumbs_dir: Path, content_hash: str) -> Path:
    return thumbs_dir / content_hash[:2] / f"{content_hash}.jpg"


def write_thumbnail(thumbs_dir: Path, content_hash: str, image: Image.Image) -> Path:
    """Write (atomically, once) a JPEG thumbnail whose long side is at most THUMB_SIZE."""
    target = thumbnail_path(thumbs_dir, content_hash)
    if target.exists():
        return target
    return write_thumbnail_bytes(thumbs_dir, content_hash, thumbnail_jpeg(image))


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """The thumbnail's JPEG bytes (made where the image was decoded, e.g. a Ray worker)."""
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    thumb.convert("RGB").save(buf, "JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


def write_thumbnail_bytes(thumbs_dir: Path, content_hash: str, data: bytes) -> Path:
    """Write (atomically, once) a thumbnail made by :func:`thumbnail_jpeg`."""
    target = thumbnail_path(thumbs_dir, content_hash)
    if not target.exists():
        with atomic_writer(target) as f:
            f.write(data)
    return target


def thumbnails_missing(thumbs_dir: Path, hashes: Iterable[str]) -> list[str]:
    """The hashes among ``hashes`` without a cached thumbnail: one folder listing per
    prefix folder instead of one stat per photo (100,000 stats take seconds)."""
    present: set[str] = set()
    if thumbs_dir.is_dir():
        for sub in os.scandir(thumbs_dir):
            if sub.is_dir(follow_symlinks=False):
                present.update(e.name[:-4] for e in os.scandir(sub.path) if e.name.endswith(".jpg"))
    return [h for h in hashes if h not in present]


def remove_orphan_thumbnails(thumbs_dir: Path, keep: Iterable[str]) -> int:
    """Delete thumbnails whose hash no photo references, and temp files left by a killed
    writer (only old ones: the page may be writing one while it rebuilds thumbnails)."""
    keep_set = set(keep)
    removed = 0
    if not thumbs_dir.is_dir():
        return 0
    stale_before = time.time() - STALE_TEMP_S
    for sub in thumbs_dir.iterdir():
        if not sub.is_dir():
            continue
        for f in sub.iterdir():
            if f.name.startswith(".") and not _modified_before(f, stale_before):
                continue
            if f.name.startswith(".") or f.stem not in keep_set:
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def _modified_before(path: Path, when: float) -> bool:
    try:
        return path.stat().st_mtime < when
    except OSError:
        return False  # gone meanwhile: its writer renamed it
