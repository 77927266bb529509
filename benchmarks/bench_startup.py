"""Where a cold text search spends its time before the query: one fresh process per run,
today's code and ours alternated (``--today`` is another checkout's python).

Stages: interpreter + the CLI's own imports, numpy/FAISS/SQLAlchemy, torch, torchvision
(which pulls in torch._dynamo), the rest of open_clip, the spec (a checkpoint's hash),
building the network and loading the weights, and the first text encoding.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_startup.py \\
        --today /work/main/.venv/bin/python --weights CHECKPOINT --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

STAGES = ("cli imports", "numpy faiss sqlalchemy", "torch", "torchvision", "open_clip rest",
          "spec", "build + weights", "first text")  # fmt: skip

PROBE = r"""
import json, sys, time
t0 = time.perf_counter(); out = {}
def lap(name):
    global t0
    now = time.perf_counter(); out[name] = now - t0; t0 = now
import searchapp.cli.main; lap("cli imports")
import numpy, faiss, sqlalchemy; lap("numpy faiss sqlalchemy")
import torch; lap("torch")
import torchvision; lap("torchvision")
import open_clip; lap("open_clip rest")
from searchapp.config import load_settings
from searchapp.model import load_embedder, resolve_spec
s = load_settings(data_dir=sys.argv[1], weights=sys.argv[2])
spec = resolve_spec(s); lap("spec")
e = load_embedder(s, announce=False, spec=spec); lap("build + weights")
e.encode_texts(["a red kayak"]); lap("first text")
print(json.dumps(out))
"""


def run(python: str, weights: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data:
        cmd = [python, "-c", PROBE, data, weights]
        # PYTHONSAFEPATH: `-c` must not import this checkout's code from the working folder
        env = dict(os.environ, PYTHONSAFEPATH="1")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900,
                             env=env)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--today", required=True)
    ap.add_argument("--weights", required=True, help="a checkpoint file (or 'random')")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {"today": [], "ours": []}
    for _ in range(args.runs):
        for side, python in (("today", args.today), ("ours", sys.executable)):
            results[side].append(run(python, args.weights))
    print(f"{'stage (median s)':26s} {'today':>8s} {'ours':>8s}")
    for stage in (*STAGES, "total"):
        cells = []
        for side in ("today", "ours"):
            values = [sum(r.values()) if stage == "total" else r[stage] for r in results[side]]
            cells.append(f"{statistics.median(values):8.2f}")
        print(f"{stage:26s} {' '.join(cells)}")


if __name__ == "__main__":
    main()
