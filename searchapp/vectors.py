"""The FAISS index of photo vectors: derived data, rebuilt from SQLite whenever in doubt.

One file holds a small JSON header (model id, generation, count, kind, search settings)
and the serialized FAISS index, and is replaced atomically, so a reader sees the old file
or the new one, never half of either. Ids are photo ids; scores are inner products of
L2-normalized vectors, i.e. cosine similarity.

Two kinds, chosen by size: below ``Settings.ann_threshold`` vectors (200,000 by default,
``SEARCHAPP_ANN_THRESHOLD``) search is exact (``IndexIDMap2(IndexFlatIP)``, float32); at
or above it the index is ``IndexIVFScalarQuantizer`` (8 bits a dimension, a quarter of the
memory) whose ``nprobe`` is calibrated at build time for recall@10 >= 0.95 against exact
search. The writer builds and swaps; readers keep searching the index they hold until a
fresh one is ready (:class:`LiveIndex`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from searchapp.atomic import atomic_writer, remove_stale_temps
from searchapp.errors import IndexFileError
from searchapp.faults import fault_point
from searchapp.ivf import build_ivf
from searchapp.store import Store

log = logging.getLogger(__name__)

MAGIC = b"SAPPIDX1"
KIND_FLAT = "flat"
KIND_IVF = "ivf-sq8"
DEFAULT_APPROX_THRESHOLD = 200_000
FILTER_EXACT_MAX = 2_000  # approximate index: filters this small are scored exactly
SEARCH_THREADS = 1  # one query: a single thread beats OpenMP barriers on busy cores
RETRAIN_GROWTH = 4  # retrain the coarse quantizer once the index grew this many times
CATCH_UP_TRIES = 3  # a stale index's reads, repeated while a writer commits between them


def catches_up(kind: str, generation: int, library_generation: int) -> bool:
    """Whether a file of this kind and generation is brought up to date on load rather
    than rebuilt: an approximate one behind the library (retraining is the cost avoided)."""
    return kind != KIND_FLAT and generation < library_generation


def kind_for(count: int, threshold: int | None = None) -> str:
    """Exact below ``threshold`` vectors (``Settings.ann_threshold``), approximate above."""
    return KIND_IVF if count >= (threshold or DEFAULT_APPROX_THRESHOLD) else KIND_FLAT


def _locked(method):  # noqa: ANN001, ANN202
    """One call at a time per index: the watcher's engine searches the writer's own index."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        with self.lock:
            return method(self, *args, **kwargs)

    return call


class VectorIndex:
    """Photo vectors by id; exact (flat) or approximate (IVF, SQ8), same interface.
    Thread-safe: searches and changes take the index's lock (FAISS adds reallocate)."""

    def __init__(self, dim: int, model_id: str, generation: int = 0) -> None:
        self.dim = dim
        self.model_id = model_id
        self.generation = generation
        self.kind = KIND_FLAT
        self.nprobe = 0
        self.trained_on = 0
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._ids_cache: np.ndarray | None = None
        self.lock = threading.RLock()

    # ------------------------------------------------------------ contents
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        if self.kind == KIND_FLAT:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        invlists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(self.index.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def describe(self) -> str:
        """What kind of index this is, for status output."""
        lists = None if self.kind == KIND_FLAT else self.index.nlist
        return describe_kind(self.kind, self.nprobe, lists)

    def _known_ids(self) -> np.ndarray:
        if self._ids_cache is None:
            self._ids_cache = np.sort(self.ids())
        return self._ids_cache

    def memory_bytes(self) -> int:
        """Bytes the index holds: vectors (float32) or codes (8-bit), ids and centroids."""
        if self.kind == KIND_FLAT:
            return self.ntotal * (self.dim * 4 + 8)
        ivf = self.index
        return self.ntotal * (ivf.code_size + 8) + ivf.nlist * self.dim * 4

    @_locked
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) vectors under these photo ids."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self.remove(ids)
        self._ids_cache = None
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    @_locked
    def remove(self, ids: np.ndarray | list[int]) -> int:
        arr = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(arr) or not self.ntotal:
            return 0
        self._ids_cache = None
        if self.kind != KIND_FLAT:  # the IVF's id hashtable removes only by an id array
            return int(self.index.remove_ids(faiss.IDSelectorArray(len(arr), faiss.swig_ptr(arr))))
        return int(self.index.remove_ids(faiss.IDSelectorBatch(arr)))

    @_locked
    def reconstruct(self, photo_id: int) -> np.ndarray | None:
        """A stored vector (approximate for the IVF kind: 8-bit codes)."""
        try:
            return self.index.reconstruct(int(photo_id))
        except RuntimeError:
            return None

    @_locked
    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector; ``allowed_ids`` filters inside FAISS."""
        if self.ntotal == 0 or k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        sel = None
        if allowed_ids is not None:
            if not len(allowed_ids):
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            allowed = np.ascontiguousarray(allowed_ids, dtype=np.int64)
            if self.kind != KIND_FLAT and len(allowed) <= FILTER_EXACT_MAX:
                return self._search_subset(q, k, allowed)
            sel = faiss.IDSelectorBatch(allowed)
            k = min(k, len(allowed))
        k = min(k, self.ntotal)
        # omp_set_num_threads binds the calling thread only: a writer's builds keep theirs
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(SEARCH_THREADS)
        try:
            scores, ids = self.index.search(q, k, params=self._params(sel, allowed_ids))
        finally:
            faiss.omp_set_num_threads(threads)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _params(self, sel: object, allowed: np.ndarray | None) -> faiss.SearchParameters | None:
        if self.kind == KIND_FLAT:
            return faiss.SearchParameters(sel=sel) if sel is not None else None
        nprobe = self.nprobe
        if allowed is not None and len(allowed):
            # a filter keeps a fraction of each list: probe more lists to find k of them
            nprobe = math.ceil(nprobe * self.ntotal / len(allowed))
        params = faiss.SearchParametersIVF(nprobe=min(self.index.nlist, max(1, nprobe)))
        if sel is not None:
            params.sel = sel
        return params

    def _search_subset(
        self, q: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores over a small filtered set, from the stored codes.

        Cheaper than probing every list for a handful of ids, and never misses one.
        """
        known = self._known_ids()
        at = np.searchsorted(known, allowed).clip(max=max(0, len(known) - 1))
        present = allowed[known[at] == allowed] if len(known) else allowed[:0]
        if not len(present):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        vecs = self.index.reconstruct_batch(present)
        scores = vecs @ q[0]
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top].astype(np.float32), present[top]

    # ------------------------------------------------------------ persistence
    @_locked
    def save(self, path: Path, generation: int) -> None:
        """Write atomically (temp file, fsync, rename) and record the store generation."""
        self.generation = generation
        body = faiss.serialize_index(self.index).tobytes()
        meta = dict(
            model_id=self.model_id, generation=generation, count=self.ntotal, dim=self.dim,
            kind=self.kind, nprobe=self.nprobe, trained_on=self.trained_on,
            crc32=zlib.crc32(body),  # flipped bits in vectors would load silently
        )  # fmt: skip
        header = json.dumps(meta).encode()
        remove_stale_temps(path)  # left by a writer killed mid-save (one writer only)
        with atomic_writer(path, durable=True) as f:
            f.write(MAGIC + struct.pack("<I", len(header)) + header)
            f.write(struct.pack("<Q", len(body)) + body)
            fault_point("faiss-save")

    @classmethod
    def load(cls, path: Path, model_id: str) -> VectorIndex:
        """Read an index file; raises :class:`IndexFileError` on any doubt about it."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise IndexFileError("missing") from None
        except OSError as err:  # a folder in its place, no permission, an I/O error
            raise IndexFileError(f"unreadable ({err.strerror or err})") from None
        try:
            if raw[:8] != MAGIC:
                raise IndexFileError("not a searchapp index file")
            (hlen,) = struct.unpack_from("<I", raw, 8)
            header = json.loads(raw[12 : 12 + hlen])
            (blen,) = struct.unpack_from("<Q", raw, 12 + hlen)
            body = raw[20 + hlen :]
            if len(body) != blen:
                raise IndexFileError("truncated")
            if "crc32" in header and zlib.crc32(body) != header["crc32"]:
                raise IndexFileError("damaged (checksum mismatch)")
            index = faiss.deserialize_index(np.frombuffer(body, dtype=np.uint8))
        except IndexFileError:
            raise
        except Exception as err:  # noqa: BLE001 - struct, json and faiss all fail differently
            raise IndexFileError(f"damaged ({err})") from None
        info = _header_info(header, len(raw))
        if info.model_id != model_id:
            raise IndexFileError(f"built for another model ({info.model_id})")
        if index.ntotal != info.count or index.d != info.dim:
            raise IndexFileError("count or length does not match its header")
        out = cls(info.dim, model_id, info.generation)
        out.kind, out.nprobe, out.trained_on = info.kind, info.nprobe, info.trained_on
        out.index = index
        return out

    @classmethod
    def build_from_store(
        cls, store: Store, model_id: str, dim: int, threshold: int | None = None
    ) -> VectorIndex:
        """Rebuild from the embeddings stored in SQLite (never from the model)."""
        # generation first: a commit between the reads labels the index older than its rows
        # (a reader reloads once more), never newer (it would keep missing those photos)
        generation = store.generation()
        ids, vecs = store.load_vectors(model_id)
        return cls.build(ids, vecs, model_id, dim, generation, threshold)

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        vecs: np.ndarray,
        model_id: str,
        dim: int,
        generation: int = 0,
        threshold: int | None = None,
    ) -> VectorIndex:
        """An index of the kind that suits ``len(ids)`` vectors, filled with them."""
        out = cls(vecs.shape[1] if len(ids) else dim, model_id, generation)
        if kind_for(len(ids), threshold) == KIND_IVF:
            out._fill_ivf(np.asarray(ids, np.int64), np.ascontiguousarray(vecs, np.float32))
        elif len(ids):
            out.index.add_with_ids(np.ascontiguousarray(vecs, np.float32), ids)
        return out

    def needs_rebuild(self, threshold: int | None = None) -> bool:
        """Whether the size has moved past what this index's kind or training suits."""
        threshold = threshold or DEFAULT_APPROX_THRESHOLD
        if self.kind == KIND_FLAT:
            return self.ntotal >= threshold
        # back to exact well below the threshold (not at it, so sizes near it do not flap)
        return self.ntotal < threshold // 2 or self.ntotal > RETRAIN_GROWTH * self.trained_on

    @_locked
    def catch_up(self, store: Store) -> int:
        """Bring an index from an older generation up to the store's without retraining:
        the photos given a vector since are (re)added, the ones no longer indexed removed.
        Returns how many photos changed."""
        for _ in range(CATCH_UP_TRIES):
            # generation first: a commit between the reads labels the index older than its
            # rows (caught up again from there), never newer (it would miss those photos)
            generation = store.generation()
            ids, vecs = store.vectors_since(self.model_id, self.generation)
            indexed = store.indexed_ids(self.model_id)
            if store.generation() == generation:
                break  # no commit between the reads: one moment
        keep = np.isin(ids, indexed)  # a photo removed between the two reads stays out
        gone = np.setdiff1d(self.ids(), indexed, assume_unique=True)
        self.remove(gone)
        self.add(ids[keep], vecs[keep])  # replaces the vectors of photos changed in place
        self.generation = generation
        return int(keep.sum()) + len(gone)

    @_locked
    def refit(self, store: Store, threshold: int | None = None) -> bool:
        """Rebuild in place from the store when the size calls for the other kind.

        The writer calls this before saving; readers go on with the previous file until
        the new one replaces it.
        """
        if not self.needs_rebuild(threshold):
            return False
        fresh = VectorIndex.build_from_store(store, self.model_id, self.dim, threshold)
        fresh.__dict__.pop("lock")  # searches wait on this index's lock, kept
        self.__dict__.update(fresh.__dict__)
        return True

    def _fill_ivf(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        self.index, self.nprobe = build_ivf(ids, vecs)
        self.kind, self.trained_on = KIND_IVF, len(ids)
        self._ids_cache = None


def open_index(
    path: Path, store: Store, model_id: str, dim: int, *, save: bool = True
) -> VectorIndex:
    """The index matching the store's current generation: loaded if fresh, else made so.

    An approximate file behind the store is caught up with the photos changed since its
    generation (retraining it costs 27-85 s at a million vectors); any other stale file
    (exact, or ahead of a store put back from a backup), or a missing, damaged or
    other-model one, is rebuilt from the stored embeddings. Either is written back when
    ``save`` is set.
    """
    generation = store.generation()
    try:
        index = VectorIndex.load(path, model_id)
        if index.generation > generation:  # saved after the store was read (files follow
            generation = store.generation()  # their commits); still ahead: a restored store
        if index.generation == generation:
            return index
        reason = f"stale (generation {index.generation}, library {generation})"
        if catches_up(index.kind, index.generation, generation):
            changed = index.catch_up(store)
            log.info("vector index %s was %s; caught up (%d photos changed)", path, reason,
                     changed)  # fmt: skip
            if save:
                index.save(path, index.generation)
            return index
    except IndexFileError as err:
        reason = str(err)
    # behind the library is routine (a writer commits between its saves), and another
    # model's file follows a switch of --model/--weights (whose searches say so): not damage
    routine = reason.startswith(("stale", "built for another model"))
    level = logging.INFO if routine else logging.WARNING
    if reason != "missing" or store.counts()["photos"]:
        log.log(level, "vector index %s is %s; rebuilding it from the stored embeddings", path,
                reason)  # fmt: skip
    index = VectorIndex.build_from_store(store, model_id, dim)
    if save:
        index.save(path, index.generation)
    return index


@dataclass(frozen=True)
class IndexFileInfo:
    """An index file's header, read without loading its vectors (for status reports)."""

    model_id: str
    generation: int
    count: int
    kind: str
    nprobe: int
    size_bytes: int
    dim: int
    trained_on: int

    def describe(self) -> str:
        return describe_kind(self.kind, self.nprobe)


def describe_kind(kind: str, nprobe: int, lists: int | None = None) -> str:
    """An index's kind in words, for status output."""
    if kind == KIND_FLAT:
        return "exact: faiss IndexIDMap2(IndexFlatIP)"
    lists_text = f"{lists} lists, " if lists else ""
    return f"approximate: faiss IndexIVFScalarQuantizer (SQ8, {lists_text}nprobe {nprobe})"


def _header_info(header: object, size: int) -> IndexFileInfo:
    """A parsed header's fields, checked: a header that is JSON but not ours is damage."""
    if not isinstance(header, dict):
        raise IndexFileError("damaged (header: not an object)")
    try:
        return IndexFileInfo(
            str(header["model_id"]),
            int(header["generation"]),
            int(header["count"]),
            str(header.get("kind", KIND_FLAT)),
            int(header.get("nprobe", 0)),
            size,
            int(header["dim"]),
            int(header.get("trained_on", 0)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise IndexFileError(f"damaged (header: {err})") from None


def read_index_info(path: Path) -> IndexFileInfo:
    """The header of an index file; :class:`IndexFileError` when missing or unreadable.

    Reads a few hundred bytes and checks the file's length, not the vectors' checksum
    (:meth:`VectorIndex.load` does that).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:8] != MAGIC:
                raise IndexFileError("not a searchapp index file")
            (hlen,) = struct.unpack_from("<I", head, 8)
            if hlen > 1 << 20:
                raise IndexFileError("damaged (header too long)")
            header = json.loads(f.read(hlen))
            (blen,) = struct.unpack("<Q", f.read(8))
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise IndexFileError("missing") from None
    except OSError as err:
        raise IndexFileError(f"unreadable ({err.strerror or err})") from None
    except (struct.error, ValueError) as err:
        raise IndexFileError(f"damaged ({err})") from None
    if size != 20 + hlen + blen:
        raise IndexFileError("truncated")
    return _header_info(header, size)
