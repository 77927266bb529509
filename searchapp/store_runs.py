"""The runs table: one row per indexing run, its progress heartbeat and its outcome.

A mixin of :class:`searchapp.store.Store`; like the store, the only code that runs SQL.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from searchapp.records import RunRecord
from searchapp.schema import RunRow


class RunsTable:
    """Recording indexing runs; the host class provides ``_session`` (one transaction)."""

    _session: Callable[[], AbstractContextManager[Session]]

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
