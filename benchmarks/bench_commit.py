"""SQLite commit rows/s of ``Store.write_batch``, this checkout against another, side by side.

One batch of 16 files per transaction, as a run commits: new indexed photos (row + vector;
an EXIF date on half of them, a camera on a third), the same photos indexed again (known
rows), and new failed files. Each round runs both
checkouts in fresh processes, one after the other, so the machine's drift hits both.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/bench_commit.py --against /tmp/before --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
KINDS = ("new indexed", "indexed again", "new failed")


def measure(rows: int) -> dict[str, float]:
    """Rows a second of each kind, in this process, with whichever searchapp is importable."""
    from searchapp.store import BatchWrite, FailureWrite, PhotoWrite, Store

    folder = Path(tempfile.mkdtemp(prefix="bench-commit-"))
    store = Store(folder / "library.sqlite3")
    root_id = store.add_root(folder).id
    rng = np.random.default_rng(0)

    def batches(kind: str):  # noqa: ANN202
        for i in range(0, rows, 16):
            batch = BatchWrite(model_id="bench")
            for j in range(i, i + 16):
                h = f"{j:032x}"
                if kind == "new failed":
                    batch.failed.append(FailureWrite(root_id, f"/f/{h}.jpg", 1, 1, "damaged"))
                    continue
                exif = {
                    "taken_at": 1e9 + j if j % 2 else None,  # on some photos only,
                    "camera": "Pixel 7" if j % 3 == 0 else None,
                }  # as in a real folder
                batch.indexed.append(
                    PhotoWrite(root_id, f"/x/{h}.jpg", 1, 1, h, 40, 30, "JPEG", **exif)
                )
                if kind == "new indexed":
                    batch.vectors[h] = rng.standard_normal(512, dtype=np.float32)
            yield batch

    rates = {}
    for kind in KINDS:
        spent = 0.0
        for batch in batches(kind):
            started = time.perf_counter()
            store.write_batch(batch)
            spent += time.perf_counter() - started
        rates[kind] = rows / spent
    store.close()
    return rates


def run_in(tree: Path, rows: int) -> dict[str, float]:
    code = (
        f"import sys, json; sys.path[:0] = [{str(tree)!r}, {str(HERE / 'benchmarks')!r}]\n"
        f"from bench_commit import measure; print(json.dumps(measure({rows})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", type=Path, required=True, help="another checkout's root")
    ap.add_argument("--rows", type=int, default=4096, help="rows of each kind (default 4096)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    args = ap.parse_args()
    print(f"{'round':<7}{'kind':<15}{'against':>10}{'this':>10}  this / against (rows/s)")
    for r in range(args.rounds):
        before, after = run_in(args.against, args.rows), run_in(HERE, args.rows)
        for kind in KINDS:
            ratio = after[kind] / before[kind]
            print(f"{r + 1:<7}{kind:<15}{before[kind]:>10.0f}{after[kind]:>10.0f}  {ratio:.2f}x")


if __name__ == "__main__":
    main()
