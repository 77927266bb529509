"""The approximate kind of vector index: an IVF scalar-quantized FAISS index, trained on a
sample of the library's vectors, and the ``nprobe`` that keeps its recall.

Used by :class:`searchapp.vectors.VectorIndex` from ``Settings.ann_threshold`` vectors
on; below that search is exact and nothing here runs.
"""

from __future__ import annotations

import logging
import math
import time

import faiss
import numpy as np

log = logging.getLogger("searchapp.vectors")  # as before the split: same records

TARGET_RECALL = 0.97  # calibrated on held-out queries; leaves room above the 0.95 promise


def build_ivf(ids: np.ndarray, vecs: np.ndarray) -> tuple[faiss.IndexIVFScalarQuantizer, int]:
    """An IVF-SQ8 index holding ``vecs`` under ``ids``, and its calibrated ``nprobe``."""
    n, dim = vecs.shape
    nlist = int(min(8192, max(64, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    rng = np.random.default_rng(0)
    # train on a sample: 64 points a list is plenty for k-means, and bounds build time
    sample = vecs[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
    started = time.monotonic()
    index.train(sample)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct/remove by photo id
    index.add_with_ids(vecs, ids)
    nprobe = calibrate_nprobe(index, ids, vecs, rng)
    log.info(
        "built IVF index: %d vectors, %d lists, nprobe %d (%.1f s)",
        n, nlist, nprobe, time.monotonic() - started,
    )  # fmt: skip
    return index, nprobe


def calibrate_nprobe(
    index: faiss.IndexIVF, ids: np.ndarray, vecs: np.ndarray, rng: np.random.Generator
) -> int:
    """Smallest nprobe whose recall@10 against exact search reaches TARGET_RECALL.

    Queries are stored vectors moved off their point (so a query is not its own answer),
    scored exactly against every vector.
    """
    n = len(vecs)
    picks = rng.choice(n, size=min(n, 200), replace=False)
    noise = rng.normal(0, 1, size=(len(picks), vecs.shape[1])).astype(np.float32)
    noise *= 0.75 / np.sqrt(vecs.shape[1])
    queries = vecs[picks] + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k = min(10, n)
    exact = np.empty((len(queries), k), dtype=np.int64)
    for i in range(0, len(queries), 50):
        sims = queries[i : i + 50] @ vecs.T
        exact[i : i + 50] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    truth = [set(ids[row].tolist()) for row in exact]
    nprobe = 1
    while True:
        _, found = index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        recall = np.mean([len(t & set(f.tolist())) / k for t, f in zip(truth, found, strict=True)])
        if recall >= TARGET_RECALL or nprobe >= index.nlist:
            return nprobe
        nprobe = min(index.nlist, nprobe * 2)
