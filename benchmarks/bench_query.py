"""Text query latency end to end (encode + search + fetch metadata) on a large library.

Uses the cached synthetic library of ``synth_store.py`` (N indexed photos, clustered random
vectors) and the real MobileCLIP-S2 architecture (random weights: speed does not depend on
weight values). Prints model load and warm-up time, the first query after warm-up, and
p50/p95 over the timed queries.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_query.py --count 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_store import ensure_store  # noqa: E402

from searchapp.library import Library  # noqa: E402

WORDS = [
    "dog",
    "beach",
    "sunset",
    "mountain",
    "snow",
    "city",
    "night",
    "kayak",
    "red",
    "blue",
    "birthday",
    "cake",
    "forest",
    "river",
    "bridge",
    "car",
    "bicycle",
    "cat",
    "garden",
    "flowers",
    "wedding",
    "dress",
    "market",
    "street",
    "food",
    "coffee",
    "window",
    "train",
    "station",
    "airport",
    "child",
    "playground",
    "boat",
    "harbour",
    "autumn",
    "leaves",
]


def queries(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 5)))) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000, help="photos in the library")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("-k", type=int, default=20, help="results per query (the page shows 20)")
    args = ap.parse_args()
    settings, _ = ensure_store(args.count)
    started = time.perf_counter()
    service = Library(settings)
    loaded = time.perf_counter()
    service.warm_up()
    warmed = time.perf_counter()
    texts = queries(args.queries + 1)
    t = time.perf_counter()
    first = service.search_text(texts[0], args.k)
    first_s = time.perf_counter() - t
    assert len(first) == args.k
    times = []
    for text in texts[1:]:
        t = time.perf_counter()
        results = service.search_text(text, args.k)
        times.append(time.perf_counter() - t)
        assert results and results[0].path
    print(f"library: {service.index.ntotal:,} photos ({service.index.kind} index)")
    print(f"service start (model load): {loaded - started:.1f} s; warm-up {warmed - loaded:.2f} s")
    print(f"first query after warm-up: {first_s * 1e3:.1f} ms")
    print(
        f"{len(times)} text queries, k={args.k}, end to end: p50 "
        f"{np.percentile(times, 50) * 1e3:.1f} ms, p95 {np.percentile(times, 95) * 1e3:.1f} ms"
    )
    enc = []
    for text in texts[1:21]:
        t = time.perf_counter()
        service.embedder.encode_texts([text])
        enc.append(time.perf_counter() - t)
    print(f"  of which text encoding: p50 {np.percentile(enc, 50) * 1e3:.1f} ms")
    service.close()


if __name__ == "__main__":
    main()
