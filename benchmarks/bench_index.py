"""Indexing throughput: open_clip's README loop vs ``searchapp index``, alternating runs.

baseline: ``Image.open(p).convert("RGB")``, open_clip's own ``preprocess``, fp32 eager
``encode_image`` in batches of 32, one process (no reparameterization, no bf16, full decode).
ours: ``searchapp index`` on the same files into a fresh data dir: scan, hash, decode,
embed, write, thumbnails. Both run as child processes so each one's peak RSS is its own
(``os.wait4``). Same model (MobileCLIP-S2) and weights (random init: speed does not depend
on weight values). Afterwards the fidelity of what ``searchapp index`` stored is measured
against the fp32 open_clip reference on every photo (upright, as EXIF says).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_index.py --count 96 --rounds 2

``--before OTHER_CHECKOUT`` adds that checkout's ``searchapp index`` to every round, so a
change is measured against the code before it side by side, in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_library import DEFAULT_DIR, ensure_library  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL = "MobileCLIP-S2"


# ---------------------------------------------------------------- the baseline loop


def run_baseline_worker(paths: list[Path], batch_size: int) -> dict:
    """The loop a user writes from open_clip's README (runs in the child process)."""
    import open_clip
    import torch
    from PIL import Image

    started = time.monotonic()
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL)
    model.eval()
    loaded = time.monotonic()
    feats = []
    for i in range(0, len(paths), batch_size):
        batch = paths[i : i + batch_size]
        images = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in batch])
        with torch.no_grad():
            f = model.encode_image(images)
            f /= f.norm(dim=-1, keepdim=True)
        feats.append(f)
    done = time.monotonic()
    assert sum(len(f) for f in feats) == len(paths)
    return {"load_s": loaded - started, "loop_s": done - loaded}


# ---------------------------------------------------------------- child processes


def measure(cmd: list[str], env: dict[str, str]) -> tuple[str, float, int, float]:
    """Run ``cmd`` under a tiny wrapper that reports the child's own peak RSS and CPU time.

    CPU seconds (user + system) hardly move when another process shares the cores, where
    wall time does: on a shared machine they are the before/after figure to trust.
    """
    wrapper = [
        sys.executable,
        "-c",
        "import resource,subprocess,sys;"
        "r=subprocess.run(sys.argv[1:]);"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print('PEAK_RSS_KB',u.ru_maxrss,'CPU_S',u.ru_utime+u.ru_stime,"
        "file=sys.stderr);sys.exit(r.returncode)",
        *cmd,
    ]
    started = time.monotonic()
    proc = subprocess.run(wrapper, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        tail = proc.stderr[-3000:]
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{tail}")
    found = re.search(r"PEAK_RSS_KB (\d+) CPU_S ([\d.]+)", proc.stderr)
    return proc.stdout, wall, int(found.group(1)) * 1024, float(found.group(2))


def run_baseline(folder: Path, count: int, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--baseline-worker", "--photos", str(folder)]
    cmd += ["--count", str(count)]
    out, wall, peak, _cpu = measure(cmd, env)
    result = json.loads(out.strip().splitlines()[-1])
    return {
        **result,
        "wall_s": wall,
        "peak_rss": peak,
        "images_per_s": count / result["loop_s"],
        "images_per_s_wall": count / wall,
    }


def run_ours(
    folder: Path, count: int, env: dict[str, str], args: argparse.Namespace, repo: Path = REPO
) -> dict:
    """``searchapp index`` of the checkout ``repo`` (its ``.venv``) into a fresh data dir."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-index-", dir=args.work))
    cmd = [str(repo / ".venv/bin/searchapp"), "--data-dir", str(data_dir), "--weights", "random"]
    cmd += ["--precision", args.precision]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    out, wall, peak, cpu = measure([*cmd, "index", str(folder)], env)
    m = re.search(r"added (\d+).*\(([\d.]+) s\)", out)
    if not m or int(m.group(1)) != count:
        raise SystemExit(f"searchapp index did not add {count} photos: {out!r}")
    run_s = float(m.group(2))
    return {
        "data_dir": data_dir,
        "run_s": run_s,
        "wall_s": wall,
        "peak_rss": peak,
        "images_per_s": count / run_s,
        "images_per_s_wall": count / wall,
        "cpu_s_per_image": cpu / count,
    }


# ---------------------------------------------------------------- fidelity


def measure_fidelity(data_dir: Path, folder: Path, paths: list[Path]) -> dict:
    """Stored vectors of the fast path vs the fp32 open_clip reference on the same files."""
    from PIL import Image, ImageOps
    from reference import ReferenceEncoder

    from searchapp.config import load_settings
    from searchapp.model import model_id_for
    from searchapp.store import Store

    settings = load_settings(data_dir=data_dir, weights="random", precision="fp32")
    store = Store(settings.db_path, readonly=True)
    ids, vecs = store.load_vectors(model_id_for(settings))
    photos = store.get_photos(ids.tolist())
    by_path = {photos[int(i)].path: v for i, v in zip(ids, vecs, strict=True)}
    store.close()
    fast = np.stack([by_path[str(folder.resolve() / p.name)] for p in paths])
    ref_encoder = ReferenceEncoder(settings)
    ref = []
    for i in range(0, len(paths), 8):
        images = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in paths[i : i + 8]]
        ref.append(ref_encoder.encode_images(images))
    ref = np.concatenate(ref)
    cos = (fast * ref).sum(axis=1)
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()), **neighbours(fast, ref)}


def neighbours(a: np.ndarray, b: np.ndarray, k: int = 10) -> dict:
    """Mean overlap of each photo's top-k neighbours (itself excluded) under a and b."""
    k = min(k, len(a) - 1)

    def top(x: np.ndarray) -> np.ndarray:
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    ta, tb = top(a), top(b)
    overlap = [len(set(x) & set(y)) / k for x, y in zip(ta, tb, strict=True)]
    return {"topk": k, "topk_agreement_mean": float(np.mean(overlap)), "topk_min": min(overlap)}


# ---------------------------------------------------------------- main


def link_set(paths: list[Path], target: Path) -> Path:
    """A folder holding exactly these photos (hard links, so no copies)."""
    target.mkdir(parents=True, exist_ok=True)
    for p in paths:
        dst = target / p.name
        if not dst.exists():
            try:
                os.link(p, dst)
            except OSError:
                shutil.copy2(p, dst)
    return target


def mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=96, help="photos (default 96)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    ap.add_argument("--photos", type=Path, default=DEFAULT_DIR, help="cached library folder")
    ap.add_argument("--work", type=Path, default=DEFAULT_DIR.parent, help="scratch folder")
    ap.add_argument("--precision", default="auto", help="ours: auto (default), fp32, bf16")
    ap.add_argument("--batch-size", type=int, default=0, help="ours: batch size (default app's)")
    ap.add_argument("--no-fidelity", action="store_true", help="skip the fidelity pass")
    ap.add_argument(
        "--before",
        type=Path,
        help="another checkout (with its own .venv) whose searchapp index runs in the same "
        "rounds, for a before/after ratio of a change",
    )
    ap.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.baseline_worker:
        paths = sorted(args.photos.glob("*.jpg"))[: args.count]
        print(json.dumps(run_baseline_worker(paths, 32)))
        return

    paths = ensure_library(args.count, args.photos)
    folder = link_set(paths, args.work / f"set-{args.count}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCHAPP_")}
    env["HF_HUB_OFFLINE"] = "1"
    print(f"{args.count} photos, {np.mean([p.stat().st_size for p in paths]) / 2**20:.1f} MB each")
    base_runs, our_runs, before_runs = [], [], []
    for r in range(args.rounds):
        b = run_baseline(folder, args.count, env)
        base_runs.append(b)
        print(
            f"round {r + 1} baseline: {b['images_per_s']:.2f} img/s "
            f"(loop {b['loop_s']:.1f} s, model load {b['load_s']:.1f} s; whole script "
            f"{b['wall_s']:.1f} s = {b['images_per_s_wall']:.2f} img/s), peak {mb(b['peak_rss'])}"
        )
        o = run_ours(folder, args.count, env, args)
        our_runs.append(o)
        print(
            f"round {r + 1} ours:     {o['images_per_s']:.2f} img/s "
            f"(run {o['run_s']:.1f} s; whole command {o['wall_s']:.1f} s "
            f"= {o['images_per_s_wall']:.2f} img/s), peak {mb(o['peak_rss'])}, "
            f"CPU {o['cpu_s_per_image']:.3f} s/img"
        )
        if args.before:
            o0 = run_ours(folder, args.count, env, args, args.before.resolve())
            before_runs.append(o0)
            shutil.rmtree(o0["data_dir"], ignore_errors=True)
            print(
                f"round {r + 1} before:   {o0['images_per_s']:.2f} img/s "
                f"(run {o0['run_s']:.1f} s; whole command {o0['wall_s']:.1f} s "
                f"= {o0['images_per_s_wall']:.2f} img/s), peak {mb(o0['peak_rss'])}, "
                f"CPU {o0['cpu_s_per_image']:.3f} s/img"
            )
        if r < args.rounds - 1:
            shutil.rmtree(o["data_dir"], ignore_errors=True)
    base = float(np.median([b["images_per_s"] for b in base_runs]))
    ours = float(np.median([o["images_per_s"] for o in our_runs]))
    base_wall = float(np.median([b["images_per_s_wall"] for b in base_runs]))
    ours_wall = float(np.median([o["images_per_s_wall"] for o in our_runs]))
    print()
    print("| path | images/s | peak RSS |")
    print("| --- | --- | --- |")
    print(
        f"| baseline (open_clip README loop, fp32) | {base:.2f} | "
        f"{mb(max(b['peak_rss'] for b in base_runs))} |"
    )
    print(
        f"| searchapp index (precision {args.precision}) | {ours:.2f} | "
        f"{mb(max(o['peak_rss'] for o in our_runs))} |"
    )
    print(
        f"ratio: {ours / base:.1f}x (baseline loop vs our indexing run)\n"
        f"ratio of whole processes (interpreter, imports, model load, all work): "
        f"{ours_wall / base_wall:.1f}x ({base_wall:.2f} vs {ours_wall:.2f} img/s)"
    )
    if before_runs:
        was = float(np.median([o["images_per_s"] for o in before_runs]))
        was_wall = float(np.median([o["images_per_s_wall"] for o in before_runs]))
        print(
            f"before/after ({args.before}): run {was:.2f} -> {ours:.2f} img/s "
            f"({ours / was:.2f}x); whole command {was_wall:.2f} -> {ours_wall:.2f} img/s "
            f"({ours_wall / was_wall:.2f}x)"
        )
        cpu_was = float(np.median([o["cpu_s_per_image"] for o in before_runs]))
        cpu_now = float(np.median([o["cpu_s_per_image"] for o in our_runs]))
        print(
            f"before/after CPU per photo (user + system, whole command): {cpu_was:.3f} -> "
            f"{cpu_now:.3f} s ({cpu_was / cpu_now:.2f}x as efficient)"
        )
    if not args.no_fidelity:
        f = measure_fidelity(our_runs[-1]["data_dir"], folder, paths)
        print(
            f"fidelity vs fp32 open_clip reference ({args.count} photos): cosine min "
            f"{f['cos_min']:.5f}, mean {f['cos_mean']:.5f}; top-{f['topk']} neighbour "
            f"agreement mean {f['topk_agreement_mean']:.3f} (min {f['topk_min']:.2f})"
        )
    shutil.rmtree(our_runs[-1]["data_dir"], ignore_errors=True)


if __name__ == "__main__":
    main()
