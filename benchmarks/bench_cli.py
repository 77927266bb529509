"""The resident engine, side by side in one run: `searchapp search` and `index` with and
without a running watcher, against today's code (another checkout's interpreter).

The library is synthetic and built fast: N tiny files and N rows with clustered random
vectors written through the Store (``synth_store.py``), no model run. Weights are a
checkpoint file saved from the random-weight MobileCLIP-S2 (a real checkpoint's load
path: built without init, then the file's tensors), since real weights cannot be
downloaded here. Every figure is process start to output, timed from outside.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_cli.py --count 100000 \\
        --today /work/main/.venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_store import BENCH_DIR, fill_store, write_files  # noqa: E402

from searchapp.config import load_settings  # noqa: E402

OURS = sys.executable
WORDS = ["dog", "beach", "sunset", "red kayak", "snow", "city at night", "birthday cake", "cat"]


def checkpoint(base: Path) -> Path:
    """The random-weight network saved as a safetensors checkpoint (once)."""
    path = base / "mobileclip-s2-random.safetensors"
    base.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        from safetensors.torch import save_file

        from searchapp.model import create_network, resolve_spec

        spec = resolve_spec(load_settings(weights="random", data_dir=base / "tmp"))
        state = create_network(spec, announce=False).state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def library(count: int, weights: Path) -> tuple[Path, Path]:
    """(data dir, photo root) of ``count`` synthetic photos stored for these weights."""
    base = BENCH_DIR / f"cli-{count}"
    data, root = base / "data", base / "photos"
    if not (base / "complete.json").exists():
        shutil.rmtree(base, ignore_errors=True)
        settings = load_settings(data_dir=data, weights=str(weights))
        fill_store(settings, root, write_files(root, count))
        (base / "complete.json").write_text(json.dumps({"count": count}))
    for extra in root.glob("new-*"):  # photos earlier runs added
        shutil.rmtree(extra)
    return data, root


def env(weights: Path, model_cache: Path) -> dict[str, str]:
    # PYTHONSAFEPATH: `python -m` must not import this checkout's code from the working
    # folder; without it today's interpreter ran our core (figures before 2026-11-29 18:05)
    return dict(os.environ, HF_HUB_OFFLINE="1", SEARCHAPP_WEIGHTS=str(weights),
                SEARCHAPP_MODEL_CACHE_DIR=str(model_cache), PYTHONSAFEPATH="1")  # fmt: skip


def timed(python: str, data: Path, e: dict, *args: str) -> float:
    """Seconds from process start to its exit (it prints its output last)."""
    started = time.perf_counter()
    cmd = [python, "-m", "searchapp.cli", "--data-dir", str(data), *args]
    proc = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{args}: {proc.stderr.strip()[-500:]}")
    return took


def stats(xs: list[float]) -> str:
    p95 = float(np.percentile(xs, 95)) if len(xs) > 1 else xs[0]
    return f"median {statistics.median(xs):6.3f} s  p95 {p95:6.3f} s  (n={len(xs)})"


def write_photos(folder: Path, count: int, seed: int, side: int = 320) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        grid = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(grid, "RGB").resize((side * 4 // 3, side), Image.BICUBIC)
        image.save(folder / f"P{seed:03d}_{i:05d}.jpg", quality=85)


def indexed(data: Path) -> int:
    con = sqlite3.connect(f"file:{data / 'library.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM photos WHERE status='indexed'").fetchone()[0]
    finally:
        con.close()


def index_start_up(python: str, base: Path, e: dict, photos: Path) -> float:
    """Process start to the first committed batch of a cold ``index`` on a fresh library."""
    data = base / f"fresh-{time.monotonic_ns()}"
    cmd = [python, "-m", "searchapp.cli", "--data-dir", str(data), "index", str(photos)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            if (data / "library.sqlite3").exists() and _safe_count(data):
                return time.perf_counter() - started
            time.sleep(0.02)
        raise RuntimeError("index ended before any photo was committed")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def _safe_count(data: Path) -> int:
    try:
        return indexed(data)
    except sqlite3.OperationalError:
        return 0  # schema not there yet


class Watcher:
    def __init__(self, data: Path, e: dict, idle_unload: float) -> None:
        cmd = [OURS, "-m", "searchapp.cli", "--data-dir", str(data), "watch"]
        self.log = open(data.parent / "watch.log", "w")  # noqa: SIM115
        cmd += ["--idle-unload", str(idle_unload)]
        self.proc = subprocess.Popen(cmd, env=e, stdout=self.log, stderr=subprocess.STDOUT)
        self.client_env = e
        self.data = data

    def status(self) -> dict | None:
        from searchapp.engine_client import EngineClient

        s = EngineClient(load_settings(data_dir=self.data, weights=self.client_env[
            "SEARCHAPP_WEIGHTS"])).status()  # fmt: skip
        return None if s is None else s.__dict__

    def wait(self, what, timeout_s: float = 600) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while not what():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"watcher: {(self.data.parent / 'watch.log').read_text()}")
            time.sleep(0.1)

    def rss_mb(self) -> str:
        return memory(self.proc.pid)

    def model_rss_mb(self) -> str:
        """The model's own process (ModelHost's spawned child), if one runs now."""
        for child in psutil.Process(self.proc.pid).children():
            try:
                if any("spawn_main" in part for part in child.cmdline()):
                    return memory(child.pid)
            except psutil.Error:  # a child that just exited (not yet reaped)
                continue
        return "no model process"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.log.close()


def memory(pid: int) -> str:
    """RSS, and the anonymous part of it (heap: tensors, vectors; not mapped libraries)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    anon = int(fields["RssAnon"].split()[0]) / 1024
    return f"RSS {psutil.Process(pid).memory_info().rss / 2**20:.0f} MB (anonymous {anon:.0f} MB)"


def page_rss(data: Path, e: dict, engine: bool) -> str:
    """RSS (MB) of a process doing what the page does: warm up, then one text query."""
    code = (
        "import os, sys; from searchapp.config import load_settings\n"
        "from searchapp.library import Library; from searchapp.engine_client import EngineClient\n"
        "s = load_settings(data_dir=sys.argv[1])\n"
        "lib = Library(s, engine=EngineClient(s) if sys.argv[2] == '1' else None)\n"
        "lib.warm_up(); lib.search_text('dog', 20)\n"
        "sys.path.insert(0, sys.argv[3]); from bench_cli import memory\n"
        "print(memory(os.getpid()))\n"
    )
    here = str(Path(__file__).resolve().parent)
    cmd = [OURS, "-c", code, str(data), "1" if engine else "0", here]
    out = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=600, check=True)
    return out.stdout.strip()


def main() -> None:  # noqa: PLR0915 - one run, in order, printed as it goes
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--today", required=True, help="python of a checkout of today's code")
    ap.add_argument("--cold", type=int, default=5, help="cold runs per side")
    ap.add_argument("--warm", type=int, default=30, help="searches with the watcher")
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--no-watcher", action="store_true", help="only the cold part")
    args = ap.parse_args()
    base = BENCH_DIR
    weights = checkpoint(base)
    data, root = library(args.count, weights)
    model_cache = base / "model-cache"  # ours only; emptied: the first run builds it
    shutil.rmtree(model_cache, ignore_errors=True)
    (data / "model-spec.json").unlink(missing_ok=True)
    e = env(weights, model_cache)
    cpu = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
               if "model name" in x)  # fmt: skip
    print(f"CPU {cpu}, {os.cpu_count()} cores; library {args.count:,} photos; {data}")
    start_set = base / "start-up-32"
    if not start_set.exists():
        write_photos(start_set, 32, seed=900)

    print("\n== cold, no watcher (process start to output) ==")
    res: dict[str, list[float]] = {}
    for side in ("today", "ours"):
        res[f"search {side}"], res[f"index {side}"] = [], []
    if args.cold:  # after an install or upgrade: builds the model, keeps its traced towers
        first = timed(OURS, data, e, "search", "the first query", "-k", "10")
        print(f"  search ours, first after install (keeps the model cache): {first:.2f} s")
    for i in range(args.cold):  # alternated, so load on the machine hits both alike
        for side, py in (("today", args.today), ("ours", OURS)):
            res[f"search {side}"].append(timed(py, data, e, "search", WORDS[i % 8], "-k", "10"))
            res[f"index {side}"].append(index_start_up(py, base, e, start_set))
    for name, xs in res.items():
        if xs:  # --cold 0: only the watcher's part
            print(f"  {name:14s} {stats(xs)}")

    today_index = float("nan")
    if args.no_watcher:
        return
    if args.cold:
        write_photos(root / "new-today", 100, seed=901)
        today_index = timed(args.today, data, e, "index")
        print(f"  index of 100 new photos, today's code, no watcher: {today_index:.2f} s")

    print("\n== with the watcher ==")
    w = Watcher(data, e, idle_unload=30)
    try:
        w.wait(lambda: w.status() is not None)
        timed(OURS, data, e, "search", "warm up", "-k", "10")
        warm = [timed(OURS, data, e, "search", WORDS[i % 8], "-k", "10") for i in range(args.warm)]
        print(f"  search, watcher has the model: {stats(warm)}")
        if res["search ours"]:
            ratio = statistics.median(res["search ours"]) / statistics.median(warm)
            print(f"  speed-up against no watcher (medians): {ratio:.1f}x")
        print(f"  watcher, model loaded, {args.count:,} vectors: {w.rss_mb()}")
        print(f"  its model process: {w.model_rss_mb()}")

        before = indexed(data)
        write_photos(root / "new-burst", args.burst, seed=902)
        during: list[float] = []
        started = time.perf_counter()
        while indexed(data) < before + args.burst:
            during.append(timed(OURS, data, e, "search", WORDS[len(during) % 8], "-k", "10"))
        took = time.perf_counter() - started
        print(f"  search while the watcher indexes {args.burst} photos ({took:.0f} s): "
              f"{stats(during)}")  # fmt: skip

        write_photos(root / "new-handoff", 100, seed=903)
        handoff = timed(OURS, data, e, "index")
        print(f"  index of 100 new photos handed to the watcher: {handoff:.2f} s "
              f"(today, no watcher: {today_index:.2f} s)")  # fmt: skip

        w.wait(lambda: not (w.status() or {}).get("model_loaded", True), 300)
        print(f"  watcher after idle unload: {w.rss_mb()}; {w.model_rss_mb()}")
        reload = timed(OURS, data, e, "search", "a query not asked before", "-k", "10")
        print(f"  first search after the unload (loads the model again): {reload:.2f} s")
        own, shared = page_rss(data, e, engine=False), page_rss(data, e, engine=True)
        print(f"  page-like process, own model: {own}")
        print(f"  page-like process, the watcher's model: {shared}")
    finally:
        w.stop()


if __name__ == "__main__":
    main()
