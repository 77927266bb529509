"""SQLite store (SQLAlchemy 2.0, WAL): the source of truth; with its mixins, the only SQL.

Rows: roots, photos (one per file path), embeddings keyed by (content hash, model id),
indexing runs, and a small key/value table. ``meta['generation']`` grows with every
write that changes what is searchable; the FAISS file records the generation it was
built from, so readers can tell a stale index from a fresh one.

The plain records live in :mod:`searchapp.records`, the tables and migrations in
:mod:`searchapp.schema`; five mixins of :class:`Store` hold groups of its
queries: :mod:`searchapp.store_runs` (the runs table), :mod:`searchapp.store_roots` (photo
folders), :mod:`searchapp.store_facets` (filter and facet reads),
:mod:`searchapp.store_embeddings` (vectors) and :mod:`searchapp.store_browse` (the timeline's
reads). The moved names are re-exported here so ``from searchapp.store import ...`` keeps
working.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, delete, event, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from searchapp.config import command_for
from searchapp.datadir import (
    check_data_dir,
    create_private_file,
    make_private_dir,
    secure_data_dir,
)
from searchapp.dbfile import (
    can_write,
    disk_full,
    is_disk_full,
    read_only_engine,
    store_error,
)
from searchapp.errors import SchemaTooNewError, StoreError
from searchapp.faults import fault_point
from searchapp.records import (
    STATUS_FAILED,
    STATUS_INDEXED,
    BatchResult,
    BatchWrite,
    FailureWrite,
    KnownFile,
    MoveWrite,
    PhotoFilter,
    PhotoRecord,
    PhotoWrite,
    RootRecord,
    RunRecord,
)
from searchapp.schema import (
    MIGRATIONS_DIR,
    PATH_ESCAPE,
    Base,
    EmbeddingRow,
    MetaRow,
    PathText,
    PhotoRow,
    RootRow,
    RunRow,
    decode_path,
    encode_path,
    photo_record,
    prepare_schema,
    record_columns,
)
from searchapp.schema import _alembic_config as _alembic_config  # re-exported for tests
from searchapp.store_browse import BrowseQueries
from searchapp.store_embeddings import EmbeddingQueries
from searchapp.store_facets import FacetQueries
from searchapp.store_roots import RootsTable
from searchapp.store_runs import RunsTable


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


def _vector_upsert():  # noqa: ANN202 - a SQLAlchemy Insert
    """A vector computed again for content already stored (a retried file, a model re-run)
    replaces the old one, as an ORM merge would, in one statement for a whole batch."""
    stmt = sqlite_insert(EmbeddingRow)
    return stmt.on_conflict_do_update(
        index_elements=[EmbeddingRow.content_hash, EmbeddingRow.model_id],
        set_={"vector": stmt.excluded.vector, "created_at": stmt.excluded.created_at},
    )


_UPSERT_VECTOR = _vector_upsert()


def _path_folder(path: str) -> str:
    return os.path.dirname(path)


def _file_values(root_id: int, path: str, size: int, mtime_ns: int, now: float) -> dict:
    """The columns every indexed or failed file sets."""
    return {
        "root_id": root_id, "path": path, "folder": _path_folder(path), "size": size,
        "mtime_ns": mtime_ns, "content_hash": None, "failure_reason": None, "indexed_at": now,
    }  # fmt: skip


# What only an indexed file sets: every row of one INSERT names the same columns.
_FILE_DEFAULTS = dict.fromkeys(("width", "height", "format", "taken_at", "camera", "indexed_gen"))


class Store(RunsTable, RootsTable, FacetQueries, EmbeddingQueries, BrowseQueries):
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
                f"no library at {self.db_path.parent}; index a folder first: "
                f"{command_for(self.db_path.parent)} index PATH"
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
        check_data_dir(self.db_path.parent)
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
        """A value of the library's small key/value table (settings it remembers)."""
        with self._session() as s:
            row = s.get(MetaRow, key)
            return row.value if row else default

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or with None, delete) a value of the key/value table."""
        with self._session() as s:
            if value is None:
                s.execute(delete(MetaRow).where(MetaRow.key == key))
            else:
                s.merge(MetaRow(key=key, value=value))

    def generation(self) -> int:
        """Grows with every write that changes what is searchable (see the module doc)."""
        return int(self.get_meta("generation", "0") or 0)

    @staticmethod
    def _bump_generation(s: Session) -> int:
        row = s.get(MetaRow, "generation")
        value = int(row.value) + 1 if row else 1
        s.merge(MetaRow(key="generation", value=str(value)))
        return value

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

    def get_photos(self, ids: Sequence[int]) -> dict[int, PhotoRecord]:
        """The photos of ``ids`` that exist, by id (indexed or failed rows alike)."""
        out: dict[int, PhotoRecord] = {}
        with self._session() as s:
            for i in range(0, len(ids), 500):
                chunk = [int(x) for x in ids[i : i + 500]]
                q = select(*record_columns()).where(PhotoRow.id.in_(chunk))
                for r in s.execute(q):
                    out[r.id] = PhotoRecord(*r)
        return out

    def find_photo_by_path(self, path: str | Path) -> PhotoRecord | None:
        """The photo stored for a file, by its path as given or resolved, or None."""
        text = str(Path(path).expanduser().absolute())
        with self._session() as s:
            row = s.scalar(select(PhotoRow).where(PhotoRow.path == text))
            if row is None:
                resolved = str(Path(path).expanduser().resolve())
                row = s.scalar(select(PhotoRow).where(PhotoRow.path == resolved))
            return photo_record(row) if row else None

    def referenced_hashes(self) -> set[str]:
        """Every content hash a photo row holds (what thumbnails and vectors must keep)."""
        q = select(PhotoRow.content_hash).where(PhotoRow.content_hash.is_not(None)).distinct()
        with self._session() as s:
            return set(s.scalars(q))

    # ------------------------------------------------------------ writing photos
    def write_batch(self, batch: BatchWrite) -> BatchResult:
        """Apply one batch atomically: all of it is committed, or none of it."""
        now = time.time()
        removed: list[int] = list(batch.removed_ids)
        with self._session() as s:
            if batch.vectors:  # one statement for the batch's vectors, not a merge (a read) each
                s.execute(_UPSERT_VECTOR, [
                    {"content_hash": chash, "model_id": batch.model_id, "created_at": now,
                     "vector": np.ascontiguousarray(vec, dtype=np.float32).tobytes()}
                    for chash, vec in batch.vectors.items()
                ])  # fmt: skip
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
            generation = self._bump_generation(s)  # the rows below carry it
            upserted = self._write_files(s, batch, now, removed, generation)
            s.flush()
            fault_point("commit")  # test hook: die with the transaction written, not committed
        return BatchResult(upserted=upserted, removed=removed, generation=generation)

    def _write_files(
        self, s: Session, batch: BatchWrite, now: float, removed: list[int], generation: int
    ) -> dict[int, str]:
        """Rows for the batch's indexed and failed files: the known ones updated, the new
        ones in one INSERT ... RETURNING (an ORM object and a flush each was 3-4x slower).
        Returns the ids now indexed, with their content hashes; appends to ``removed`` the
        ids that left the index."""
        values: dict[str, dict] = {}  # by path: the last word on a file wins
        for pw in batch.indexed:
            values[pw.path] = _file_values(pw.root_id, pw.path, pw.size, pw.mtime_ns, now) | {
                "content_hash": pw.content_hash, "width": pw.width, "height": pw.height,
                "format": pw.format, "taken_at": pw.taken_at, "camera": pw.camera,
                "status": STATUS_INDEXED, "indexed_gen": generation,
            }  # fmt: skip
        for fw in batch.failed:
            values[fw.path] = _file_values(fw.root_id, fw.path, fw.size, fw.mtime_ns, now) | {
                "status": STATUS_FAILED, "failure_reason": fw.reason,
            }  # fmt: skip
        upserted: dict[int, str] = {}
        # one lookup for the batch, not a query (and an autoflush) per file
        for path, row in self._rows_by_path(s, list(values)).items():
            new = values.pop(path)
            if row.status == STATUS_INDEXED and new["status"] == STATUS_FAILED:
                removed.append(row.id)
            for key, value in new.items():  # a failed file keeps its last dimensions
                setattr(row, key, value)
            if row.status == STATUS_INDEXED:
                upserted[row.id] = row.content_hash
        if values:
            upserted |= self._insert_files(s, [_FILE_DEFAULTS | v for v in values.values()])
        return upserted

    def _insert_files(self, s: Session, rows: list[dict]) -> dict[int, str]:
        """Insert new file rows; the ids of the indexed ones, with their content hashes."""
        # render_nulls: rows with and without EXIF stay one statement (None keys are
        # otherwise left out, and each change of the key set starts another INSERT)
        stmt = insert(PhotoRow).execution_options(render_nulls=True)
        if s.get_bind().dialect.insert_executemany_returning:
            added = s.execute(
                stmt.returning(PhotoRow.id, PhotoRow.content_hash, PhotoRow.status), rows
            )
            return {pid: h for pid, h, status in added if status == STATUS_INDEXED}
        s.execute(stmt, rows)  # SQLite before 3.35 has no RETURNING: look the ids up
        found = self._rows_by_path(s, [r["path"] for r in rows if r["status"] == STATUS_INDEXED])
        return {row.id: row.content_hash for row in found.values()}

    @staticmethod
    def _rows_by_path(s: Session, paths: list[str]) -> dict[str, PhotoRow]:
        rows: dict[str, PhotoRow] = {}
        for i in range(0, len(paths), 500):
            for row in s.scalars(select(PhotoRow).where(PhotoRow.path.in_(paths[i : i + 500]))):
                rows[row.path] = row
        return rows

    def clear_failures(self, paths: Sequence[str] | None = None) -> int:
        """Forget failed rows (all, or these paths) so the next run tries them again."""
        q = delete(PhotoRow).where(PhotoRow.status == STATUS_FAILED)
        if paths is not None:
            q = q.where(PhotoRow.path.in_(list(paths)))
        with self._session() as s:
            return s.execute(q).rowcount or 0


__all__ = [
    "MIGRATIONS_DIR",
    "PATH_ESCAPE",
    "STATUS_FAILED",
    "STATUS_INDEXED",
    "Base",
    "BatchResult",
    "BatchWrite",
    "EmbeddingRow",
    "FailureWrite",
    "KnownFile",
    "MetaRow",
    "MoveWrite",
    "PathText",
    "PhotoFilter",
    "PhotoRecord",
    "PhotoRow",
    "PhotoWrite",
    "RootRecord",
    "RootRow",
    "RunRecord",
    "RunRow",
    "SchemaTooNewError",
    "Store",
    "decode_path",
    "encode_path",
    "prepare_schema",
]
