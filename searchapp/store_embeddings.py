"""The embeddings table: vectors by (content hash, model id), read for reuse, for one
photo, for a whole index rebuild or for the photos changed since a generation, and pruned
once no photo references them.

A mixin of :class:`searchapp.store.Store`; like the store, the only code that runs SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import numpy as np
from sqlalchemy import Select, delete, or_, select
from sqlalchemy.orm import Session

from searchapp.records import STATUS_INDEXED
from searchapp.schema import EmbeddingRow, PhotoRow


class EmbeddingQueries:
    """Vector reads and pruning; the host class provides ``_session`` (one transaction)."""

    _session: Callable[[], AbstractContextManager[Session]]

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

    def photo_vector(self, photo_id: int, model_id: str) -> np.ndarray | None:
        q = (
            select(EmbeddingRow.vector)
            .join(PhotoRow, PhotoRow.content_hash == EmbeddingRow.content_hash)
            .where(PhotoRow.id == photo_id, EmbeddingRow.model_id == model_id)
        )
        with self._session() as s:
            blob = s.scalar(q)
        return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()

    def embedding_models(self) -> list[str]:
        """The model ids the stored vectors were made with."""
        with self._session() as s:
            return list(s.scalars(select(EmbeddingRow.model_id).distinct()))

    def load_vectors(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64[n], vectors float32[n, d]) of every indexed photo, for this model."""
        return self._indexed_vectors(model_id, None)

    def vectors_since(self, model_id: str, generation: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`load_vectors` of the photos given a vector after ``generation`` (new, or
        changed in place), and of any without a recorded generation."""
        return self._indexed_vectors(model_id, generation)

    def indexed_ids(self, model_id: str) -> np.ndarray:
        """The ids (int64, sorted) of every indexed photo with a vector for this model."""
        q = self._with_vector(select(PhotoRow.id), model_id).order_by(PhotoRow.id)
        with self._session() as s:
            return np.fromiter(s.scalars(q), dtype=np.int64)

    def _indexed_vectors(self, model_id: str, since: int | None) -> tuple[np.ndarray, np.ndarray]:
        q = self._with_vector(select(PhotoRow.id, EmbeddingRow.vector), model_id)
        if since is not None:
            q = q.where(or_(PhotoRow.indexed_gen > since, PhotoRow.indexed_gen.is_(None)))
        ids: list[int] = []
        blobs: list[bytes] = []
        with self._session() as s:
            for pid, blob in s.execute(q.order_by(PhotoRow.id)):
                ids.append(pid)
                blobs.append(blob)
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
        return np.asarray(ids, dtype=np.int64), vecs.copy()

    @staticmethod
    def _with_vector(q: Select, model_id: str) -> Select:
        """``q`` over indexed photos that have a vector for ``model_id``."""
        return q.join(
            EmbeddingRow,
            (EmbeddingRow.content_hash == PhotoRow.content_hash)
            & (EmbeddingRow.model_id == model_id),
        ).where(PhotoRow.status == STATUS_INDEXED)

    def delete_orphan_embeddings(self) -> int:
        """Drop vectors no photo references any more (after deletes), keeping the file small."""
        used = select(PhotoRow.content_hash).where(PhotoRow.content_hash.is_not(None))
        q = delete(EmbeddingRow).where(EmbeddingRow.content_hash.not_in(used))
        with self._session() as s:
            return s.execute(q).rowcount or 0
