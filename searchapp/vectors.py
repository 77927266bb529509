"""The FAISS index of photo vectors: derived data, rebuilt from SQLite whenever in doubt.

One file holds a small JSON header (model id, generation, count, kind) and the serialized
FAISS index, and is replaced atomically, so a reader sees the old file or the new one,
never half of either. Ids are photo ids (``IndexIDMap2`` over inner product on
L2-normalized vectors, i.e. cosine similarity).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import tempfile
from pathlib import Path

import faiss
import numpy as np

from searchapp.store import Store

log = logging.getLogger(__name__)

MAGIC = b"SAPPIDX1"


class IndexFileError(Exception):
    """The index file is missing, damaged, or from another model or generation."""


class VectorIndex:
    """Exact inner-product search over photo ids; small enough to swap whole."""

    def __init__(self, dim: int, model_id: str, generation: int = 0) -> None:
        self.dim = dim
        self.model_id = model_id
        self.generation = generation
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    # ------------------------------------------------------------ contents
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) vectors under these photo ids."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self.remove(ids)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        arr = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(arr) or not self.ntotal:
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(arr)))

    def reconstruct(self, photo_id: int) -> np.ndarray | None:
        try:
            return self.index.reconstruct(int(photo_id))
        except RuntimeError:
            return None

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector; ``allowed_ids`` filters inside FAISS."""
        if self.ntotal == 0 or k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        params = None
        if allowed_ids is not None:
            if not len(allowed_ids):
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            params = faiss.SearchParameters(
                sel=faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            )
            k = min(k, len(allowed_ids))
        k = min(k, self.ntotal)
        scores, ids = self.index.search(q, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    # ------------------------------------------------------------ persistence
    def save(self, path: Path, generation: int) -> None:
        """Write atomically (temp file, fsync, rename) and record the store generation."""
        self.generation = generation
        header = json.dumps(
            {
                "model_id": self.model_id,
                "generation": generation,
                "count": self.ntotal,
                "dim": self.dim,
                "kind": "flat",
            }
        ).encode()
        body = faiss.serialize_index(self.index).tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vectors-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + struct.pack("<I", len(header)) + header)
                f.write(struct.pack("<Q", len(body)) + body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, model_id: str) -> VectorIndex:
        """Read an index file; raises :class:`IndexFileError` on any doubt about it."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise IndexFileError("missing") from None
        try:
            if raw[:8] != MAGIC:
                raise IndexFileError("not a searchapp index file")
            (hlen,) = struct.unpack_from("<I", raw, 8)
            header = json.loads(raw[12 : 12 + hlen])
            (blen,) = struct.unpack_from("<Q", raw, 12 + hlen)
            body = raw[20 + hlen :]
            if len(body) != blen:
                raise IndexFileError("truncated")
            index = faiss.deserialize_index(np.frombuffer(body, dtype=np.uint8))
        except IndexFileError:
            raise
        except Exception as err:  # noqa: BLE001 - struct, json and faiss all fail differently
            raise IndexFileError(f"damaged ({err})") from None
        if header.get("model_id") != model_id:
            raise IndexFileError(f"built for another model ({header.get('model_id')})")
        if index.ntotal != header.get("count"):
            raise IndexFileError("count does not match its header")
        out = cls(int(header["dim"]), model_id, int(header["generation"]))
        out.index = index
        return out

    @classmethod
    def build_from_store(cls, store: Store, model_id: str, dim: int) -> VectorIndex:
        """Rebuild from the embeddings stored in SQLite (never from the model)."""
        ids, vecs = store.load_vectors(model_id)
        generation = store.generation()
        out = cls(vecs.shape[1] if len(ids) else dim, model_id, generation)
        if len(ids):
            out.index.add_with_ids(vecs, ids)
        return out


def open_index(
    path: Path, store: Store, model_id: str, dim: int, *, save: bool = True
) -> VectorIndex:
    """The index matching the store's current generation: loaded if fresh, else rebuilt.

    A missing, damaged, stale or other-model file is rebuilt from stored embeddings and,
    when ``save`` is set, written back.
    """
    generation = store.generation()
    try:
        index = VectorIndex.load(path, model_id)
        if index.generation == generation:
            return index
        reason = f"stale (generation {index.generation}, library {generation})"
    except IndexFileError as err:
        reason = str(err)
    if reason != "missing" or store.counts()["photos"]:
        log.warning("vector index %s is %s; rebuilding it from the stored embeddings", path, reason)
    index = VectorIndex.build_from_store(store, model_id, dim)
    if save:
        index.save(path, index.generation)
    return index
