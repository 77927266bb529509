"""One decode's memory and time, measured in a fresh process.

``measure_decode(path)`` runs this file as a script on ``path``: the script decodes it as
the indexer does and prints the peak RSS growth (MB), the seconds and ``ok WxH`` or
``refused: reason``. Shared by ``bench_decode_limits.py`` and the decoder's memory tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

GB = 2**30


def measure_decode(path: Path, address_space: int = 3 * GB) -> tuple[float, float, str]:
    """Peak RSS growth (MB), seconds and outcome of decoding ``path`` in a fresh process
    whose address space is capped (a runaway decode fails instead of swapping)."""

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    proc = subprocess.run(
        [sys.executable, __file__, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"decoding {path} crashed its process: {proc.stderr[-2000:]}")
    grew, seconds, out = proc.stdout.strip().split(" ", 2)
    return float(grew), float(seconds), out


def _kb(field: str) -> int:
    """This process's memory (VmRSS, VmHWM); not ru_maxrss: that one is inherited."""
    text = Path("/proc/self/status").read_text()
    return int(text.split(field + ":")[1].split()[0])


def _probe(path: str) -> None:
    from searchapp.decoder import decode_photo
    from searchapp.errors import ImageDecodeError

    data = Path(path).read_bytes()
    base = _kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from here
    started = time.perf_counter()
    try:
        width, height = decode_photo(data, 256).image.size
        out = f"ok {width}x{height}"
    except ImageDecodeError as err:
        out = f"refused: {err}"
    seconds = time.perf_counter() - started
    print(f"{(_kb('VmHWM') - base) / 1024:.0f} {seconds:.2f} {out}")


if __name__ == "__main__":
    _probe(sys.argv[1])
