"""Where a cold text search spends its time before the query: one fresh process per run,
today's code and ours alternated (``--today`` is another checkout's python).

Stages: interpreter + the CLI's own imports, numpy/FAISS/SQLAlchemy, torch, the model
(whatever ``load_embedder`` does: today, importing open_clip with torchvision and
``torch._dynamo``, resolving the spec, building the network and loading the checkpoint;
ours, the traced towers from the model cache when it holds them), the first text
encoding, then the first two photos embedded (as ``search --image`` or the first batches
of an ``index`` run do in a process that loads the cached towers). Each side has its own
library folder and model cache, warmed by one run that is not counted, as a user's would
be after their first search.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_startup.py \\
        --today /work/today/.venv/bin/python --weights CHECKPOINT --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = (
    "cli imports", "numpy faiss sqlalchemy", "torch", "model", "first text", "first image",
    "second image",
)  # fmt: skip

PROBE = r"""
import json, sys, time
t0 = time.perf_counter(); out = {}
def lap(name):
    global t0
    now = time.perf_counter(); out[name] = now - t0; t0 = now
import searchapp.cli.main; lap("cli imports")
import numpy, faiss, sqlalchemy; lap("numpy faiss sqlalchemy")
import torch; lap("torch")
from searchapp.config import load_settings
from searchapp.model import load_embedder
e = load_embedder(load_settings(data_dir=sys.argv[1], weights=sys.argv[2]))
lap("model")
e.encode_texts(["a red kayak"]); lap("first text")
from PIL import Image
photo = Image.effect_noise((1024, 768), 64).convert("RGB")
e.encode_images([photo]); lap("first image")
e.encode_images([photo]); lap("second image")
print(json.dumps({"laps": out, "open_clip": "open_clip" in sys.modules}))
keep = getattr(e, "keep_traced", None)  # as a cold search does after printing (not timed)
if keep: keep()
"""


def run(python: str, data: Path, weights: str) -> dict:
    # PYTHONSAFEPATH: `-c` must not import this checkout's code from the working folder
    env = dict(os.environ, PYTHONSAFEPATH="1", SEARCHAPP_MODEL_CACHE_DIR=str(data / "cache"))
    cmd = [python, "-c", PROBE, str(data / "lib"), weights]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--today", required=True)
    ap.add_argument("--weights", required=True, help="a checkpoint file (or 'random')")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sides = (("today", args.today), ("ours", sys.executable))
    results: dict[str, list[dict[str, float]]] = {"today": [], "ours": []}
    with tempfile.TemporaryDirectory() as base:
        for side, python in sides:  # warm-up: the spec and the model cache written once
            (Path(base) / side / "lib").mkdir(parents=True)
            run(python, Path(base) / side, args.weights)
        for _ in range(args.runs):
            for side, python in sides:
                answer = run(python, Path(base) / side, args.weights)
                results[side].append(answer["laps"])
                print(f"  {side}: imports open_clip: {answer['open_clip']}")
    print(f"{'stage (median s)':26s} {'today':>8s} {'ours':>8s}")
    for stage in (*STAGES, "total"):
        cells = []
        for side in ("today", "ours"):
            values = [sum(r.values()) if stage == "total" else r[stage] for r in results[side]]
            cells.append(f"{statistics.median(values):8.2f}")
        print(f"{stage:26s} {' '.join(cells)}")


if __name__ == "__main__":
    main()
