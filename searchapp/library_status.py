"""The status side of the read API: a :class:`~searchapp.library.Library` mixin.

The one status report (CLI text, ``--json`` and the page), pending files by stat, the last
run, who writes, and the generation the page watches for changes.
"""

from __future__ import annotations

from searchapp.activity import WriterInfo, read_writer
from searchapp.datadir import can_create_in, check_data_dir
from searchapp.dbfile import read_only
from searchapp.plan import PendingFiles, count_pending
from searchapp.status import StatusReport, build_status, settle_run
from searchapp.store import RunRecord


class StatusReads:
    """Status reads of a library; mixed into ``Library``, which provides ``settings``,
    ``exists``, ``store``, ``model_id`` and the loaded ``_embedder``."""

    def status(self, *, failures: int | None = None, pending: bool = True) -> StatusReport:
        """The one status report (CLI text, ``--json`` and the page).

        ``failures`` bounds the failed files listed (None: all); ``pending`` counts new and
        gone files by stat and says which folders are there now (skip it where it is shown
        apart, see :meth:`pending`; the folders are then as the last run saw them).
        """
        check_data_dir(self.settings.data_dir)  # a file, or a folder of other files: say so
        store = self.store if self.exists else None
        device, precision = self._device_and_precision()
        return build_status(
            self.settings, store, self.model_id, device=device, precision=precision,
            failures=failures, pending=pending,
        )  # fmt: skip

    def _device_and_precision(self) -> tuple[str, str]:
        """Where the model runs: the loaded one's, else checked without loading it."""
        if self._embedder is not None:
            return self._embedder.device, self._embedder.precision
        from searchapp.model import device_and_precision

        return device_and_precision(self.settings)

    def pending(self) -> PendingFiles:
        """Files the next run would read or remove, by stat alone (nothing is read)."""
        if not self.exists:
            return PendingFiles(0, 0)
        return count_pending(self.store, self.model_id)

    def last_run(self) -> RunRecord | None:
        """The latest indexing run (its live progress while it runs)."""
        runs = self.store.recent_runs(1) if self.exists else []
        return settle_run(runs[0], read_writer(self.settings)) if runs else None

    def cannot_create(self) -> str | None:
        """Why no library can be started here (a data folder this user cannot write and
        that holds none), as one line; None where it can, or one exists."""
        if self.settings.db_path.exists() or can_create_in(self.settings.data_dir):
            return None
        return str(read_only(self.settings.db_path))

    def writer(self) -> WriterInfo | None:
        """Who holds the writer lock now (``index``, ``watch`` or ``ui``), or None."""
        return read_writer(self.settings)

    def generation(self) -> int:
        """A number that changes whenever the library's contents change."""
        return self.store.generation() if self.exists else 0
