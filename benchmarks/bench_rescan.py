"""Re-running ``searchapp index`` over an unchanged library: stat only, no decode.

Uses the cached synthetic library of ``synth_store.py`` (N files that the store already
holds as indexed with matching size and mtime) and times the whole command as a user
runs it, plus the indexing run itself as it reports.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_rescan.py --count 100000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_store import ensure_store  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000, help="files in the library")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    settings, _ = ensure_store(args.count)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCHAPP_")}
    env["HF_HUB_OFFLINE"] = "1"
    cmd = [str(REPO / ".venv/bin/searchapp"), "--data-dir", str(settings.data_dir)]
    cmd += ["--weights", "random", "index"]
    for i in range(args.runs):
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        m = re.search(r"unchanged (\d+), failed (\d+) \(([\d.]+) s\)", proc.stdout)
        if not m or int(m.group(1)) != args.count or "added 0," not in proc.stdout:
            raise SystemExit(f"expected {args.count} unchanged files: {proc.stdout!r}")
        print(
            f"run {i + 1}: {args.count:,} unchanged files; whole command {wall:.1f} s, "
            f"indexing run {float(m.group(3)):.1f} s"
        )


if __name__ == "__main__":
    main()
