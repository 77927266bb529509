"""Vector search at scale: exact (flat float32) vs the approximate index (IVF, 8-bit codes).

Synthetic, clustered, L2-normalized 512-d vectors with low intrinsic dimension stand in
for photo embeddings; queries are fresh points from the same scenes. Prints build time, search
p50/p95, recall@10 against exact search, index bytes and process RSS, plain and filtered.

    .venv/bin/python benchmarks/bench_ann.py --count 1000000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import psutil

from searchapp.vectors import KIND_IVF, VectorIndex

DIM = 512


LATENT = 48  # photo embeddings vary along far fewer directions than they have


def make_centres(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scene centres in a low-dimensional latent space, and its map into 512-d."""
    return (
        rng.standard_normal((count, LATENT), dtype=np.float32),
        rng.standard_normal((LATENT, DIM), dtype=np.float32) / np.sqrt(LATENT),
    )


def clustered(n: int, rng: np.random.Generator, model: tuple) -> np.ndarray:  # noqa: ANN001
    """Points around scene centres in the latent space, mapped up, plus a little noise."""
    centres, lift = model
    out = np.empty((n, DIM), dtype=np.float32)
    for i in range(0, n, 100_000):  # in chunks: bounded temporaries
        m = min(100_000, n - i)
        z = centres[rng.integers(0, len(centres), m)]
        z += 0.6 * rng.standard_normal((m, LATENT), dtype=np.float32)
        x = z @ lift + 0.15 * rng.standard_normal((m, DIM), dtype=np.float32)
        out[i : i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top(vecs: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[set]:
    out = []
    for i in range(0, len(queries), 20):
        sims = queries[i : i + 20] @ vecs.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out.extend(set(ids[row].tolist()) for row in top)
    return out


def time_searches(index: VectorIndex, queries: np.ndarray, allowed=None) -> tuple:  # noqa: ANN001
    index.search(queries[0], 10, allowed)  # warm caches
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q, 10, allowed)
        times.append(time.perf_counter() - t)
        found.append(set(ids.tolist()))
    return np.percentile(times, 50) * 1e3, np.percentile(times, 95) * 1e3, found


def recall(found: list[set], truth: list[set]) -> float:
    return float(np.mean([len(f & t) / max(1, len(t)) for f, t in zip(found, truth, strict=True)]))


def rss() -> str:
    return f"{psutil.Process().memory_info().rss / 2**30:.2f} GB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--per-scene", type=int, default=100, help="vectors per scene centre")
    ap.add_argument("--skip-exact-timing", action="store_true", help="no flat index (saves 2 GB)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = make_centres(max(1, args.count // args.per_scene), rng)
    started = time.monotonic()
    vecs = clustered(args.count, rng, centres)
    queries = clustered(args.queries, rng, centres)
    ids = np.arange(1, args.count + 1, dtype=np.int64)
    print(
        f"{args.count:,} vectors x {DIM} generated in {time.monotonic() - started:.0f} s; "
        f"RSS {rss()}"
    )
    truth = exact_top(vecs, ids, queries, 10)
    subset = np.sort(rng.choice(ids, size=args.count // 10, replace=False))
    mask = np.isin(ids, subset)
    truth_f = exact_top(vecs[mask], ids[mask], queries[:50], 10)

    t = time.monotonic()
    ann = VectorIndex.build(ids, vecs, "bench", DIM, threshold=1)
    build_s = time.monotonic() - t
    assert ann.kind == KIND_IVF
    p50, p95, found = time_searches(ann, queries)
    fp50, fp95, ffound = time_searches(ann, queries[:50], subset)
    print(
        f"approximate (IVF{ann.index.nlist}, SQ8, nprobe {ann.nprobe} calibrated): "
        f"build {build_s:.0f} s, index {ann.memory_bytes() / 2**20:.0f} MB, RSS {rss()}"
    )
    print(f"  search p50 {p50:.2f} ms, p95 {p95:.2f} ms, recall@10 {recall(found, truth):.3f}")
    print(
        f"  filtered to 10%: p50 {fp50:.2f} ms, p95 {fp95:.2f} ms, "
        f"recall@10 {recall(ffound, truth_f):.3f}"
    )
    del ann
    if args.skip_exact_timing:
        return
    t = time.monotonic()
    flat = VectorIndex.build(ids, vecs, "bench", DIM, threshold=args.count + 1)
    build_s = time.monotonic() - t
    del vecs
    p50, p95, found = time_searches(flat, queries[:50])
    print(
        f"exact (flat float32): build {build_s:.0f} s, index "
        f"{flat.memory_bytes() / 2**20:.0f} MB, RSS {rss()}"
    )
    print(f"  search p50 {p50:.2f} ms, p95 {p95:.2f} ms, recall@10 {recall(found, truth[:50]):.3f}")


if __name__ == "__main__":
    main()
