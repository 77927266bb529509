"""The items that pass between the indexing stages, and the stages run in worker threads.

A file travels: :class:`~searchapp.plan.WorkItem` -> :func:`read_and_hash` ->
:class:`Hashed` -> the resolver (one thread) -> :class:`Touched`, :class:`Moved` or
:class:`ToDecode` -> :class:`DecodeStage` -> :class:`Decoded` -> the model and the commit.
Any stage may turn it into :class:`Failed`, which is written as a row with its reason.
Items are frozen: a stage makes new ones and never changes what another stage holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from searchapp.decoder import decode_photo, hash_bytes, read_file
from searchapp.errors import ImageDecodeError
from searchapp.faults import fault_point
from searchapp.plan import WorkItem
from searchapp.store import PhotoWrite
from searchapp.thumbnails import write_thumbnail


@dataclass(frozen=True)
class Failed:
    """A file that cannot be indexed, and why (one line)."""

    work: WorkItem
    reason: str


@dataclass(frozen=True)
class Hashed:
    """A file read whole and hashed; ``data`` is kept for the decoder, if it needs it."""

    work: WorkItem
    content_hash: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Touched:
    """A known file whose content has not changed: only its stat is written."""

    work: WorkItem
    photo_id: int


@dataclass(frozen=True)
class Moved:
    """A new path holding the content of a photo whose file is gone: keeps id and vector."""

    work: WorkItem
    photo_id: int


class Claim:
    """The contents one batch sends to the model, filled in as that batch goes on.

    Files of later batches with the same content point here instead of embedding it
    again; they read ``vectors`` after this batch committed (batches commit in order).
    Only the resolving thread writes it.
    """

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}  # content hash -> vector, set at commit
        self.failed: dict[str, str] = {}  # content hash -> why its decode failed


VectorSource = np.ndarray | Claim  # a stored vector, or the batch that embeds the content


@dataclass(frozen=True)
class ToDecode:
    """A file that needs its pixels: for its facts and thumbnail, and the model if ``embed``.

    Its bytes go to the decoder beside it, so nothing keeps them once it has run.
    """

    work: WorkItem
    content_hash: str
    source: VectorSource
    embed: bool  # this file's pixels go to the model (its content is new)


@dataclass(frozen=True)
class Decoded:
    """A decoded file: the row to write, and the model's input if it embeds its content."""

    work: WorkItem
    photo: PhotoWrite
    source: VectorSource
    pixels: np.ndarray | None = field(default=None, repr=False)
    vector: np.ndarray | None = field(default=None, repr=False)  # embedded elsewhere (Ray)


class PhotoFacts(Protocol):
    """What a row needs from a decoded photo (``DecodedPhoto``, or a worker's copy)."""

    width: int
    height: int
    format: str
    taken_at: float | None
    camera: str | None


Resolved = Failed | Touched | Moved | ToDecode
Ready = Failed | Touched | Moved | Decoded


def read_and_hash(work: WorkItem) -> Hashed | Failed:
    """Read a whole file and hash it (worker thread)."""
    if work.file.error:
        return Failed(work, f"folder cannot be read ({work.file.error.lower()})")
    try:
        fault_point("decode")
        data = read_file(work.file.path)
    except ImageDecodeError as err:
        return Failed(work, str(err))
    return Hashed(work, hash_bytes(data), data)


@dataclass(frozen=True)
class DecodeStage:
    """Decode, write the thumbnail, and prepare the model's input (worker thread)."""

    thumbs_dir: Path
    min_side: int
    prepare: Callable[[Image.Image], np.ndarray]

    def __call__(self, item: ToDecode, data: bytes) -> Decoded | Failed:
        work = item.work
        try:
            photo = decode_photo(data, self.min_side, item.content_hash)
            write_thumbnail(self.thumbs_dir, item.content_hash, photo.image)
            pixels = self.prepare(photo.image) if item.embed else None
        except ImageDecodeError as err:
            return Failed(work, str(err))
        return Decoded(work, photo_row(item, len(data), photo), item.source, pixels)


def photo_row(item: ToDecode, size: int, photo: PhotoFacts) -> PhotoWrite:
    """The row of a decoded file, from its decoded facts (here or on a Ray worker)."""
    work = item.work
    return PhotoWrite(
        work.root_id,
        work.file.path,
        size,
        work.file.mtime_ns,
        item.content_hash,
        photo.width,
        photo.height,
        photo.format,
        photo.taken_at,
        photo.camera,
    )
