"""The database's tables and their migrations: row classes, the path column type, and
:func:`prepare_schema` (create, upgrade or refuse a library with Alembic), and
:func:`photo_record` (a row as its plain record). No queries here; those live in
:mod:`searchapp.store`.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

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
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from searchapp.config import command_for
from searchapp.dbfile import backup_database, read_only
from searchapp.errors import SchemaTooNewError, StoreError
from searchapp.paths import PATH_ESCAPE, decode_path, encode_path
from searchapp.records import PhotoRecord


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
    # the generation whose commit last gave it a vector (migration 0003)
    indexed_gen: Mapped[int | None] = mapped_column(Integer, index=True)


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


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest migration: a library already at it opens without importing Alembic (0.4 s of
# every CLI, page and watcher start). tests/test_schema.py keeps it equal to Alembic's head.
HEAD_REVISION = "0003"


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
    if stored_revision(engine) == HEAD_REVISION:
        return
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
            f"({current or 'empty'} -> {head}): run {command_for(db_path.parent)} status once "
            "as a user who can write it."
        )
    if current is not None:
        backup_database(
            db_path, db_path.with_name(f"{db_path.name}.backup-{current}-{int(time.time())}")
        )
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")


def stored_revision(engine: Engine) -> str | None:
    """The schema revision Alembic recorded in the database, read without Alembic."""
    with engine.connect() as conn:
        try:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DatabaseError:  # no such table: a new (or foreign) database
            return None


def record_columns() -> tuple:
    """A :class:`PhotoRecord`'s columns in its field order: bulk reads select these and skip
    building ORM objects (5x faster for the 50,000 failures a status may list)."""
    return tuple(getattr(PhotoRow, f.name) for f in fields(PhotoRecord))


def photo_record(r: PhotoRow) -> PhotoRecord:
    """The plain record of a photo row."""
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
    "MIGRATIONS_DIR",
    "PATH_ESCAPE",
    "Base",
    "EmbeddingRow",
    "MetaRow",
    "PathText",
    "PhotoRow",
    "RootRow",
    "RunRow",
    "decode_path",
    "encode_path",
    "photo_record",
    "record_columns",
    "prepare_schema",
]
