"""The roots table: the photo folders, which never nest, and what is known of each.

A mixin of :class:`searchapp.store.Store`; like the store, the only code that runs SQL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from searchapp.config import command_for
from searchapp.errors import RootError, not_a_folder
from searchapp.paths import is_under
from searchapp.records import RootRecord
from searchapp.schema import MetaRow, PhotoRow, RootRow


def _root_device_key(root_id: int) -> str:
    return f"root_device:{root_id}"


class RootsTable:
    """Photo folders; the host class provides ``_session`` (one transaction), the meta
    key-value pairs, the library's generation and its file (for messages)."""

    db_path: Path
    _session: Callable[[], AbstractContextManager[Session]]
    get_meta: Callable[..., str | None]
    set_meta: Callable[[str, str | None], None]
    _bump_generation: Callable[[Session], int]

    def add_root(self, path: str | Path) -> RootRecord:
        """Register a folder (absolute, resolved) and return its root.

        Roots never nest, or each run would hand the photos between them: a folder inside
        a root is that root (returned as it is); a folder around roots takes them in, with
        their photos (ids and vectors kept). Adding a root twice is harmless.
        """
        resolved = str(Path(path).expanduser().resolve())
        if not os.path.isdir(resolved):
            raise not_a_folder(resolved)
        with self._session() as s:
            roots = s.scalars(select(RootRow)).all()
            row = next((r for r in roots if is_under(resolved, r.path)), None)
            if row is None:
                row = RootRow(path=resolved, added_at=time.time(), online=True)
                s.add(row)
                s.flush()
                inner = [r.id for r in roots if is_under(r.path, resolved)]
                if inner:
                    s.execute(update(PhotoRow).where(PhotoRow.root_id.in_(inner))
                              .values(root_id=row.id))  # fmt: skip
                    s.execute(delete(RootRow).where(RootRow.id.in_(inner)))
                    devices = [_root_device_key(i) for i in inner]
                    s.execute(delete(MetaRow).where(MetaRow.key.in_(devices)))
                    self._bump_generation(s)
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
            command = command_for(self.db_path.parent)
            raise RootError(f"{path} is not an indexed folder; see: {command} roots list")
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
