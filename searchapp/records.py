"""The plain records that cross the store's boundary: what is read, written and filtered.

No SQLAlchemy here: callers build and read these without touching the database layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class RootRecord:
    id: int
    path: str
    online: bool
    added_at: float


@dataclass(frozen=True)
class PhotoRecord:
    id: int
    root_id: int
    path: str
    folder: str
    size: int
    mtime_ns: int
    content_hash: str | None
    width: int | None
    height: int | None
    format: str | None
    taken_at: float | None
    camera: str | None
    status: str
    failure_reason: str | None
    indexed_at: float | None


@dataclass(frozen=True)
class KnownFile:
    """What the diff needs of a stored photo: identity, stat and whether it is embedded."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    embedded: bool


@dataclass(frozen=True)
class PhotoWrite:
    """A file that is now indexed (its vector is new or reused by content hash)."""

    root_id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    format: str
    taken_at: float | None = None
    camera: str | None = None


@dataclass(frozen=True)
class FailureWrite:
    root_id: int
    path: str
    size: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class MoveWrite:
    """An indexed photo found at a new path with the same content: keeps its id and vector."""

    photo_id: int
    root_id: int
    path: str
    size: int
    mtime_ns: int


@dataclass
class BatchWrite:
    """Everything one transaction applies; see :meth:`Store.write_batch`."""

    model_id: str
    indexed: list[PhotoWrite] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    failed: list[FailureWrite] = field(default_factory=list)
    moved: list[MoveWrite] = field(default_factory=list)
    removed_ids: list[int] = field(default_factory=list)
    touched: list[tuple[int, int, int]] = field(default_factory=list)  # (id, size, mtime_ns)

    def __bool__(self) -> bool:
        return bool(self.indexed or self.failed or self.moved or self.removed_ids or self.touched)


@dataclass(frozen=True)
class BatchResult:
    """Photo ids whose vector changed (to add) and ids that left the index (to remove)."""

    upserted: dict[int, str]  # photo id -> content hash
    removed: list[int]
    generation: int


@dataclass(frozen=True)
class PhotoFilter:
    """Restricts a search; every field is optional and they combine with AND."""

    roots: tuple[str, ...] = ()
    folder: str | None = None  # a folder path: photos in it or below it
    taken_after: float | None = None
    taken_before: float | None = None
    formats: tuple[str, ...] = ()
    min_width: int | None = None
    min_height: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None

    def is_empty(self) -> bool:
        return self == PhotoFilter()


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str
    state: str
    pid: int
    started_at: float
    finished_at: float | None
    heartbeat_at: float | None
    total: int
    done: int
    stats: dict
    message: str | None


__all__ = [
    "STATUS_FAILED",
    "STATUS_INDEXED",
    "BatchResult",
    "BatchWrite",
    "FailureWrite",
    "KnownFile",
    "MoveWrite",
    "PhotoFilter",
    "PhotoRecord",
    "PhotoWrite",
    "RootRecord",
    "RunRecord",
]
