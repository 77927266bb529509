"""SQLite store (SQLAlchemy 2.0, WAL): the source of truth and the only module that writes SQL.

Rows: roots, photos (one per file path), embeddings keyed by (content hash, model id),
indexing runs, and a small key/value table. ``meta['generation']`` grows with every
write that changes what is searchable; the FAISS file records the generation it was
built from, so readers can tell a stale index from a fresh one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from searchapp.datadir import create_private_file, make_private_dir, secure_data_dir
from searchapp.dbfile import (
    backup_database,
    can_write,
    disk_full,
    is_disk_full,
    read_only,
    read_only_engine,
    store_error,
)
from searchapp.errors import RootError, SchemaTooNewError, StoreError
from searchapp.faults import fault_point

STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"


# File names are bytes on POSIX; Python hands undecodable bytes over as lone surrogates
# (os.fsdecode's surrogateescape), which SQLite's UTF-8 text cannot hold. They are stored
# as ESCAPE + two hex digits, and a literal ESCAPE is doubled, so the mapping reverses
# exactly, keeps every ordinary name as it is, and keeps prefixes (folder filters) intact.
PATH_ESCAPE = "\uf8ff"  # a private-use character, never produced by a surrogate escape


def encode_path(text: str) -> str:
    """``text`` as valid UTF-8 text for the database (identity for ordinary names)."""
    if PATH_ESCAPE not in text and text.isascii():
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == PATH_ESCAPE:
            out.append(PATH_ESCAPE * 2)
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte 0x80..0xFF
            out.append(f"{PATH_ESCAPE}{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:  # any other lone surrogate
            out.append(f"{PATH_ESCAPE}u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def decode_path(text: str) -> str:
    """The inverse of :func:`encode_path`."""
    if PATH_ESCAPE not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != PATH_ESCAPE:
            out.append(ch)
            i += 1
        elif text[i + 1] == PATH_ESCAPE:
            out.append(PATH_ESCAPE)
            i += 2
        elif text[i + 1] == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(chr(0xDC00 + int(text[i + 1 : i + 3], 16)))
            i += 3
    return "".join(out)


class PathText(TypeDecorator):
    """A file path column: any name the OS gives, stored reversibly as valid UTF-8."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else encode_path(value)

    def process_result_value(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else decode_path(value)


class Base(DeclarativeBase):
    pass


class RootRow(Base):
    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    added_at: Mapped[float] = mapped_column(Float)
    online: Mapped[bool] = mapped_column(Boolean, default=True)


class PhotoRow(Base):
    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("roots.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    folder: Mapped[str] = mapped_column(PathText, index=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    taken_at: Mapped[float | None] = mapped_column(Float, index=True)
    camera: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[float | None] = mapped_column(Float)


class EmbeddingRow(Base):
    __tablename__ = "embeddings"
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    pid: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[str] = mapped_column(Text, default="{}")
    message: Mapped[str | None] = mapped_column(Text)


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


Index("ix_photos_hash_status", PhotoRow.content_hash, PhotoRow.status)


# ---------------------------------------------------------------- plain records


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


# ---------------------------------------------------------------- the store


def _set_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _set_reader_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # no journal_mode switch: that is a write, refused on a read-only file or folder
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _root_device_key(root_id: int) -> str:
    return f"root_device:{root_id}"


def _path_folder(path: str) -> str:
    return os.path.dirname(path)


class Store:
    """The photo library database. Safe to open from several processes at once.

    ``readonly`` opens an existing library without creating one. A library this user
    cannot write (a read-only folder or file) is opened with a read-only connection:
    reading works, and a write raises :class:`ReadOnlyLibraryError`.
    """

    def __init__(self, db_path: Path, *, readonly: bool = False) -> None:
        self.db_path = Path(db_path)
        if not readonly:
            self._create()
        elif not self.db_path.exists():
            raise StoreError(
                f"no library at {self.db_path.parent}; index a folder first: searchapp index PATH"
            )
        secure_data_dir(self.db_path.parent)
        self.readonly = not can_write(self.db_path)
        if self.readonly:
            self.engine: Engine = read_only_engine(self.db_path)
            event.listen(self.engine, "connect", _set_reader_pragmas)
        else:
            self.engine = create_engine(f"sqlite:///{self.db_path}")
            event.listen(self.engine, "connect", _set_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            prepare_schema(self.engine, self.db_path, readonly=self.readonly)
        except DatabaseError as err:
            self.engine.dispose()
            raise store_error(err, self.db_path) from None
        except BaseException:
            self.engine.dispose()  # a refused file is left as it was: no -wal/-shm beside it
            raise

    def _create(self) -> None:
        """The data folder (0700) and an empty 0600 database file, if missing."""
        try:
            make_private_dir(self.db_path.parent)
            create_private_file(self.db_path)
        except PermissionError:
            if not self.db_path.exists():
                raise StoreError(
                    f"cannot create a library in {self.db_path.parent} (permission denied); "
                    "choose a --data-dir you can write."
                ) from None
        except OSError as err:
            if is_disk_full(err):
                raise disk_full(self.db_path) from None
            raise StoreError(f"cannot create {self.db_path}: {err.strerror or err}") from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except DatabaseError as err:
            raise store_error(err, self.db_path) from err

    # ------------------------------------------------------------ meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._session() as s:
            row = s.get(MetaRow, key)
            return row.value if row else default

    def set_meta(self, key: str, value: str | None) -> None:
        with self._session() as s:
            if value is None:
                s.execute(delete(MetaRow).where(MetaRow.key == key))
            else:
                s.merge(MetaRow(key=key, value=value))

    def generation(self) -> int:
        return int(self.get_meta("generation", "0") or 0)

    @staticmethod
    def _bump_generation(s: Session) -> int:
        row = s.get(MetaRow, "generation")
        value = int(row.value) + 1 if row else 1
        s.merge(MetaRow(key="generation", value=str(value)))
        return value

    # ------------------------------------------------------------ roots
    def add_root(self, path: str | Path) -> RootRecord:
        """Register a folder (absolute, resolved); adding it twice is harmless."""
        resolved = str(Path(path).expanduser().resolve())
        if not os.path.isdir(resolved):
            raise RootError(f"{resolved} is not a folder; give the path of a photo folder.")
        with self._session() as s:
            row = s.scalar(select(RootRow).where(RootRow.path == resolved))
            if row is None:
                row = RootRow(path=resolved, added_at=time.time(), online=True)
                s.add(row)
                s.flush()
            return RootRecord(row.id, row.path, row.online, row.added_at)

    def list_roots(self) -> list[RootRecord]:
        with self._session() as s:
            rows = s.scalars(select(RootRow).order_by(RootRow.path)).all()
            return [RootRecord(r.id, r.path, r.online, r.added_at) for r in rows]

    def find_root(self, path: str | Path) -> RootRecord | None:
        resolved = str(Path(path).expanduser().resolve())
        for root in self.list_roots():
            if root.path == resolved:
                return root
        return None

    def remove_root(self, path: str | Path) -> tuple[RootRecord, list[int]]:
        """Forget a folder and its photos; returns the removed photo ids."""
        root = self.find_root(path)
        if root is None:
            raise RootError(f"{path} is not an indexed folder; see: searchapp roots list")
        with self._session() as s:
            ids = list(s.scalars(select(PhotoRow.id).where(PhotoRow.root_id == root.id)))
            s.execute(delete(PhotoRow).where(PhotoRow.root_id == root.id))
            s.execute(delete(RootRow).where(RootRow.id == root.id))
            s.execute(delete(MetaRow).where(MetaRow.key == _root_device_key(root.id)))
            self._bump_generation(s)
        return root, ids

    def root_device(self, root_id: int) -> int | None:
        """The device (``st_dev``) a root's photos were last seen on, if recorded."""
        value = self.get_meta(_root_device_key(root_id))
        return int(value) if value is not None else None

    def set_root_device(self, root_id: int, device: int) -> None:
        self.set_meta(_root_device_key(root_id), str(device))

    def set_root_online(self, root_id: int, online: bool) -> None:
        with self._session() as s:
            s.execute(update(RootRow).where(RootRow.id == root_id).values(online=online))

    # ------------------------------------------------------------ reading photos
    def known_files(self, root_id: int, model_id: str) -> dict[str, KnownFile]:
        """Every stored file under a root, by path, with whether it has this model's vector."""
        emb = (
            select(EmbeddingRow.content_hash)
            .where(EmbeddingRow.model_id == model_id)
            .where(EmbeddingRow.content_hash == PhotoRow.content_hash)
            .exists()
        )
        q = select(
            PhotoRow.id,
            PhotoRow.path,
            PhotoRow.size,
            PhotoRow.mtime_ns,
            PhotoRow.content_hash,
            PhotoRow.status,
            emb,
        ).where(PhotoRow.root_id == root_id)
        with self._session() as s:
            return {
                r[1]: KnownFile(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]))
                for r in s.execute(q)
            }

    def embedded_hashes(self, hashes: Iterable[str], model_id: str) -> set[str]:
        """The subset of ``hashes`` that already have a vector for ``model_id``."""
        wanted = list(set(hashes))
        found: set[str] = set()
        with self._session() as s:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                q = select(EmbeddingRow.content_hash).where(
                    EmbeddingRow.model_id == model_id, EmbeddingRow.content_hash.in_(chunk)
                )
                found.update(s.scalars(q))
        return found

    def vectors_for_hashes(self, hashes: Sequence[str], model_id: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._session() as s:
            for i in range(0, len(hashes), 500):
                q = select(EmbeddingRow.content_hash, EmbeddingRow.vector).where(
                    EmbeddingRow.model_id == model_id,
                    EmbeddingRow.content_hash.in_(list(hashes[i : i + 500])),
                )
                for h, blob in s.execute(q):
                    out[h] = np.frombuffer(blob, dtype=np.float32).copy()
        return out

    def get_photos(self, ids: Sequence[int]) -> dict[int, PhotoRecord]:
        out: dict[int, PhotoRecord] = {}
        with self._session() as s:
            for i in range(0, len(ids), 500):
                chunk = [int(x) for x in ids[i : i + 500]]
                for r in s.scalars(select(PhotoRow).where(PhotoRow.id.in_(chunk))):
                    out[r.id] = _record(r)
        return out

    def find_photo_by_path(self, path: str | Path) -> PhotoRecord | None:
        text = str(Path(path).expanduser().absolute())
        with self._session() as s:
            row = s.scalar(select(PhotoRow).where(PhotoRow.path == text))
            if row is None:
                resolved = str(Path(path).expanduser().resolve())
                row = s.scalar(select(PhotoRow).where(PhotoRow.path == resolved))
            return _record(row) if row else None

    def photo_vector(self, photo_id: int, model_id: str) -> np.ndarray | None:
        q = (
            select(EmbeddingRow.vector)
            .join(PhotoRow, PhotoRow.content_hash == EmbeddingRow.content_hash)
            .where(PhotoRow.id == photo_id, EmbeddingRow.model_id == model_id)
        )
        with self._session() as s:
            blob = s.scalar(q)
        return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()

    def load_vectors(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64[n], vectors float32[n, d]) of every indexed photo, for this model."""
        q = (
            select(PhotoRow.id, EmbeddingRow.vector)
            .join(
                EmbeddingRow,
                (EmbeddingRow.content_hash == PhotoRow.content_hash)
                & (EmbeddingRow.model_id == model_id),
            )
            .where(PhotoRow.status == STATUS_INDEXED)
            .order_by(PhotoRow.id)
        )
        ids: list[int] = []
        blobs: list[bytes] = []
        with self._session() as s:
            for pid, blob in s.execute(q):
                ids.append(pid)
                blobs.append(blob)
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
        return np.asarray(ids, dtype=np.int64), vecs.copy()

    def filter_ids(self, flt: PhotoFilter) -> np.ndarray:
        """Ids of indexed photos that pass the filter (for FAISS's id selector)."""
        q = select(PhotoRow.id).where(PhotoRow.status == STATUS_INDEXED)
        if flt.roots:
            q = q.join(RootRow, RootRow.id == PhotoRow.root_id).where(
                RootRow.path.in_(list(flt.roots))
            )
        if flt.folder:
            folder = flt.folder.rstrip("/") or "/"
            prefix = encode_path(folder if folder.endswith("/") else folder + "/")
            q = q.where(
                (PhotoRow.folder == folder)
                | (func.substr(PhotoRow.folder, 1, len(prefix)) == prefix)
            )
        if flt.taken_after is not None:
            q = q.where(PhotoRow.taken_at >= flt.taken_after)
        if flt.taken_before is not None:
            q = q.where(PhotoRow.taken_at <= flt.taken_before)
        if flt.formats:
            q = q.where(PhotoRow.format.in_([f.upper() for f in flt.formats]))
        if flt.min_width:
            q = q.where(PhotoRow.width >= flt.min_width)
        if flt.min_height:
            q = q.where(PhotoRow.height >= flt.min_height)
        if flt.min_bytes:
            q = q.where(PhotoRow.size >= flt.min_bytes)
        with self._session() as s:
            return np.fromiter(s.scalars(q), dtype=np.int64)

    def counts(self) -> dict[str, int]:
        q = select(PhotoRow.status, func.count()).group_by(PhotoRow.status)
        with self._session() as s:
            counts = {status: n for status, n in s.execute(q)}
        return {
            "photos": counts.get(STATUS_INDEXED, 0),
            "failed": counts.get(STATUS_FAILED, 0),
        }

    def failures(self, limit: int | None = None) -> list[PhotoRecord]:
        q = select(PhotoRow).where(PhotoRow.status == STATUS_FAILED).order_by(PhotoRow.path)
        if limit:
            q = q.limit(limit)
        with self._session() as s:
            return [_record(r) for r in s.scalars(q)]

    def folders(self) -> list[str]:
        q = select(PhotoRow.folder).distinct().order_by(PhotoRow.folder)
        with self._session() as s:
            return list(s.scalars(q))

    def formats(self) -> list[str]:
        q = select(PhotoRow.format).where(PhotoRow.format.is_not(None)).distinct()
        with self._session() as s:
            return sorted(s.scalars(q))

    def taken_range(self) -> tuple[float | None, float | None]:
        q = select(func.min(PhotoRow.taken_at), func.max(PhotoRow.taken_at))
        with self._session() as s:
            lo, hi = s.execute(q).one()
        return lo, hi

    def referenced_hashes(self) -> set[str]:
        q = select(PhotoRow.content_hash).where(PhotoRow.content_hash.is_not(None)).distinct()
        with self._session() as s:
            return set(s.scalars(q))

    # ------------------------------------------------------------ writing photos
    def write_batch(self, batch: BatchWrite) -> BatchResult:
        """Apply one batch atomically: all of it is committed, or none of it."""
        now = time.time()
        upserted: dict[int, str] = {}
        removed: list[int] = list(batch.removed_ids)
        with self._session() as s:
            for chash, vec in batch.vectors.items():
                s.merge(
                    EmbeddingRow(
                        content_hash=chash,
                        model_id=batch.model_id,
                        vector=np.ascontiguousarray(vec, dtype=np.float32).tobytes(),
                        created_at=now,
                    )
                )
            if batch.removed_ids:
                s.execute(delete(PhotoRow).where(PhotoRow.id.in_(batch.removed_ids)))
            for mv in batch.moved:
                s.execute(
                    update(PhotoRow)
                    .where(PhotoRow.id == mv.photo_id)
                    .values(
                        root_id=mv.root_id,
                        path=mv.path,
                        folder=_path_folder(mv.path),
                        size=mv.size,
                        mtime_ns=mv.mtime_ns,
                    )
                )
            for pid, size, mtime_ns in batch.touched:
                s.execute(
                    update(PhotoRow).where(PhotoRow.id == pid).values(size=size, mtime_ns=mtime_ns)
                )
            # one lookup for the batch, not a query (and an autoflush) per file
            rows = self._rows_by_path(s, [w.path for w in (*batch.indexed, *batch.failed)])
            for pw in batch.indexed:
                row = self._upsert_photo(s, rows, pw.root_id, pw.path, pw.size, pw.mtime_ns)
                row.content_hash = pw.content_hash
                row.width, row.height, row.format = pw.width, pw.height, pw.format
                row.taken_at, row.camera = pw.taken_at, pw.camera
                row.status, row.failure_reason, row.indexed_at = STATUS_INDEXED, None, now
                s.flush()
                upserted[row.id] = pw.content_hash
            for fw in batch.failed:
                row = self._upsert_photo(s, rows, fw.root_id, fw.path, fw.size, fw.mtime_ns)
                if row.id is not None and row.status == STATUS_INDEXED:
                    removed.append(row.id)
                row.content_hash = None
                row.status, row.failure_reason, row.indexed_at = STATUS_FAILED, fw.reason, now
            generation = self._bump_generation(s)
            s.flush()
            fault_point("commit")  # test hook: die with the transaction written, not committed
        return BatchResult(upserted=upserted, removed=removed, generation=generation)

    @staticmethod
    def _rows_by_path(s: Session, paths: list[str]) -> dict[str, PhotoRow]:
        rows: dict[str, PhotoRow] = {}
        for i in range(0, len(paths), 500):
            for row in s.scalars(select(PhotoRow).where(PhotoRow.path.in_(paths[i : i + 500]))):
                rows[row.path] = row
        return rows

    @staticmethod
    def _upsert_photo(
        s: Session, rows: dict[str, PhotoRow], root_id: int, path: str, size: int, mtime_ns: int
    ) -> PhotoRow:
        row = rows.get(path)
        if row is None:
            row = rows[path] = PhotoRow(path=path, status=STATUS_FAILED)
            s.add(row)
        row.root_id, row.folder, row.size, row.mtime_ns = (
            root_id,
            _path_folder(path),
            size,
            mtime_ns,
        )
        return row

    def clear_failures(self, paths: Sequence[str] | None = None) -> int:
        """Forget failed rows (all, or these paths) so the next run tries them again."""
        q = delete(PhotoRow).where(PhotoRow.status == STATUS_FAILED)
        if paths is not None:
            q = q.where(PhotoRow.path.in_(list(paths)))
        with self._session() as s:
            return s.execute(q).rowcount or 0

    def delete_orphan_embeddings(self) -> int:
        """Drop vectors no photo references any more (after deletes), keeping the file small."""
        used = select(PhotoRow.content_hash).where(PhotoRow.content_hash.is_not(None))
        q = delete(EmbeddingRow).where(EmbeddingRow.content_hash.not_in(used))
        with self._session() as s:
            return s.execute(q).rowcount or 0

    # ------------------------------------------------------------ runs
    def start_run(self, kind: str, total: int = 0) -> int:
        now = time.time()
        with self._session() as s:
            row = RunRow(
                started_at=now,
                heartbeat_at=now,
                pid=os.getpid(),
                kind=kind,
                state="running",
                total=total,
                done=0,
                stats="{}",
            )
            s.add(row)
            s.flush()
            return row.id

    def update_run(self, run_id: int, *, total: int, done: int, stats: dict) -> None:
        with self._session() as s:
            s.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(total=total, done=done, stats=json.dumps(stats), heartbeat_at=time.time())
            )

    def finish_run(self, run_id: int, state: str, stats: dict, message: str | None = None) -> None:
        with self._session() as s:
            s.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(
                    state=state, stats=json.dumps(stats), finished_at=time.time(), message=message
                )
            )

    def recent_runs(self, limit: int = 5) -> list[RunRecord]:
        q = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
        with self._session() as s:
            return [
                RunRecord(
                    r.id,
                    r.kind,
                    r.state,
                    r.pid,
                    r.started_at,
                    r.finished_at,
                    r.heartbeat_at,
                    r.total,
                    r.done,
                    json.loads(r.stats or "{}"),
                    r.message,
                )
                for r in s.scalars(q)
            ]

    # ------------------------------------------------------------ maintenance
    def integrity_check(self) -> str:
        try:
            with self.engine.connect() as conn:
                return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())
        except DatabaseError as err:
            raise store_error(err, self.db_path) from err


MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _alembic_config(connection: object):  # noqa: ANN202 - alembic types are optional here
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def prepare_schema(engine: Engine, db_path: Path, *, readonly: bool = False) -> None:
    """Create or upgrade the schema with Alembic; refuse a database from a newer version.

    An existing database is copied (SQLite backup API) before any upgrade touches it. A
    ``readonly`` database must already be at the current schema.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        has_tables = bool(
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar()
        )
    if current == head:
        return
    if current is None and has_tables:
        raise StoreError(
            f"{db_path} is not a searchapp library; choose another --data-dir or move it away."
        )
    if current is not None:
        try:
            script.get_revision(current)
        except Exception:  # alembic raises several types for an unknown revision
            raise SchemaTooNewError(
                f"{db_path} was written by a newer searchapp (schema {current}); "
                "upgrade searchapp (pip install -U searchapp) or use another --data-dir."
            ) from None
    if readonly:
        raise StoreError(
            f"{read_only(db_path)} It also needs setting up or a schema upgrade "
            f"({current or 'empty'} -> {head}): run searchapp status once as a user who can "
            "write it."
        )
    if current is not None:
        backup_database(
            db_path, db_path.with_name(f"{db_path.name}.backup-{current}-{int(time.time())}")
        )
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")


def _record(r: PhotoRow) -> PhotoRecord:
    return PhotoRecord(
        r.id,
        r.root_id,
        r.path,
        r.folder,
        r.size,
        r.mtime_ns,
        r.content_hash,
        r.width,
        r.height,
        r.format,
        r.taken_at,
        r.camera,
        r.status,
        r.failure_reason,
        r.indexed_at,
    )


__all__ = [
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
    "Store",
    "STATUS_FAILED",
    "STATUS_INDEXED",
    "SchemaTooNewError",
]
