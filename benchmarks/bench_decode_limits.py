"""Decoder bounds, measured: worst-case memory per format and the time limit's cost.

Part 1: for each format and mode, the largest picture the decoder accepts (the pixel
limit or the memory budget, whichever comes first) is written as a real file and decoded
in a fresh process; the peak RSS growth and the time are printed beside the estimate.
Part 2: normal photos (12 MP phone-like JPEGs and 2 MP PNGs) are decoded with the
deadline checks and without them (a plain reader, no checks), interleaved, best of 6.

    .venv/bin/python benchmarks/bench_decode_limits.py [--skip-heif] [--photos N]
"""

from __future__ import annotations

import argparse
import io
import math
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decode_probe import GB, measure_decode  # noqa: E402
from synth_library import write_photo  # noqa: E402

import searchapp.decoder as decoder  # noqa: E402
from searchapp import decode_limits  # noqa: E402
from searchapp.decode_limits import MAX_DECODE_BYTES, MAX_PIXELS, decode_cost  # noqa: E402

MIN_SIDE = 256


def png(side: int, bit_depth: int, colour: int, channels: int, plte: bytes = b"") -> bytes:
    """A one-colour PNG (mode by bit depth and colour type), compressed to a few hundred KB."""
    z = zlib.compressobj(9)
    row = b"\x00" + b"\x01" * (side * channels * bit_depth // 8)
    body = b"".join(z.compress(row * 100) for _ in range(side // 100))
    body += z.compress(row * (side % 100)) + z.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", side, side, bit_depth, colour, 0, 0, 0)
    palette = chunk(b"PLTE", plte) if plte else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + palette
        + chunk(b"IDAT", body)
        + chunk(b"IEND", b"")
    )


def pillow(fmt: str, mode: str, **kw: object) -> Callable[[int], bytes]:
    def make(side: int) -> bytes:
        buf = io.BytesIO()
        bands = Image.getmodebands(mode)
        Image.new(mode, (side, side), 9 if bands == 1 else (9,) * bands).save(buf, fmt, **kw)
        return buf.getvalue()

    return make


def single_strip_tiff(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (side, side)).save(
        buf, "TIFF", compression="tiff_adobe_deflate", tiffinfo={278: side}
    )
    return buf.getvalue()


def progressive_jpeg(subsampling: int, mode: str = "RGB") -> Callable[[int], bytes]:
    def make(side: int) -> bytes:
        im = Image.new(mode, (16, 16), 90)
        buf = io.BytesIO()
        im.save(buf, "JPEG", progressive=True, subsampling=subsampling)
        data = bytearray(buf.getvalue())
        sof = data.find(b"\xff\xc2")
        struct.pack_into(">HH", data, sof + 5, side, side)  # header claims; data is 16x16
        return bytes(data)

    return make


def baseline_jpeg(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), 90).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    struct.pack_into(">HH", data, data.find(b"\xff\xc0") + 5, side, side)
    return bytes(data)


def heif(mode: str) -> Callable[[int], bytes]:
    def make(side: int) -> bytes:
        import pillow_heif

        buf = io.BytesIO()
        colour = (10, 20, 30, 255)[: len(mode)]
        pillow_heif.from_pillow(Image.new(mode, (side, side), colour)).save(buf, quality=10)
        return buf.getvalue()

    return make


CASES: list[tuple[str, Callable[[int], bytes], str]] = [
    ("JPEG baseline RGB (header claims)", baseline_jpeg, "JPEG"),
    ("JPEG progressive 4:4:4 (header claims)", progressive_jpeg(0), "JPEG"),
    ("JPEG progressive 4:2:0 (header claims)", progressive_jpeg(2), "JPEG"),
    ("JPEG progressive grey (header claims)", progressive_jpeg(0, "L"), "JPEG"),
    ("PNG RGBA 8-bit", lambda s: png(s, 8, 6, 4), "PNG"),
    ("PNG RGBA 16-bit", lambda s: png(s, 16, 6, 4), "PNG"),
    ("PNG grey 16-bit (I;16)", lambda s: png(s, 16, 0, 1), "PNG"),
    ("PNG palette", lambda s: png(s, 8, 3, 1, plte=b"\x09\x09\x09"), "PNG"),
    ("TIFF RGBA deflate, one strip", single_strip_tiff, "TIFF"),
    ("TIFF I;16 deflate", pillow("TIFF", "I;16", compression="tiff_adobe_deflate"), "TIFF"),
    ("GIF palette", pillow("GIF", "P"), "GIF"),
    ("BMP RGB", pillow("BMP", "RGB"), "BMP"),
    ("WebP lossless RGBA", pillow("WEBP", "RGBA", lossless=True, method=0), "WEBP"),
    ("WebP lossy RGBA", pillow("WEBP", "RGBA", quality=10, method=0), "WEBP"),
    ("HEIF RGB", heif("RGB"), "HEIF"),
    ("HEIF RGBA", heif("RGBA"), "HEIF"),
    ("AVIF RGB", pillow("AVIF", "RGB", quality=10, speed=10), "AVIF"),
    ("AVIF RGBA", pillow("AVIF", "RGBA", quality=10, speed=10), "AVIF"),
]


def estimate(data: bytes) -> int:
    im = decoder._open(data, decode_limits.deadline_after())
    full = im.size
    if im.format in ("JPEG", "MPO"):
        im.draft("RGB", (MIN_SIDE, MIN_SIDE))
    return decode_cost(im, data, MIN_SIDE, full)


def largest_accepted(make: Callable[[int], bytes], fmt: str) -> int:
    """The largest square side within the pixel limit and the memory budget.

    Past the shrink threshold the estimate is the overhead plus a fixed cost per pixel,
    so one probe at 2048x2048 gives it; a JPEG's draft-scaled part is not linear, but its
    files are header-only and cheap, so it steps down until the estimate fits.
    """
    limit = decode_limits.JPEG_MAX_PIXELS if fmt == "JPEG" else MAX_PIXELS
    side = math.isqrt(limit)
    probe = 2048
    per_pixel = (estimate(make(probe)) - decode_limits._OVERHEAD_BYTES) / probe**2
    room = MAX_DECODE_BYTES - decode_limits._OVERHEAD_BYTES
    side = min(side, math.isqrt(int(room / per_pixel)))
    if fmt == "JPEG":
        side = math.isqrt(limit)
        while estimate(make(side)) > MAX_DECODE_BYTES:
            side -= 50
    return side


def measure_memory(skip_heif: bool) -> None:
    print(f"budget {MAX_DECODE_BYTES // 2**20} MB, pixel limit {MAX_PIXELS / 1e6:.1f} MP")
    print("| file | largest accepted | estimate MB | peak RSS growth MB | seconds |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make, fmt in CASES:
            if skip_heif and fmt == "HEIF":
                continue
            side = largest_accepted(make, fmt)
            data = make(side)
            path = Path(tmp) / "case"
            path.write_bytes(data)
            grew, seconds, out = measure_decode(path, address_space=64 * GB)
            print(
                f"| {name} | {side}x{side} ({side * side / 1e6:.1f} MP) | "
                f"{estimate(data) / 2**20:.0f} | {grew:.0f} | {seconds:.2f} |"
                + ("" if out.startswith("ok") else f" {out[:80]}")
            )


class _PlainReader(io.BytesIO):
    def __init__(self, data: bytes, _deadline: float) -> None:
        super().__init__(data)


def measure_time_limit_cost(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for seed in range(count):
            path = Path(tmp) / f"p{seed}.jpg"
            write_photo(path, seed)
            files.append(path.read_bytes())
        rng = np.random.default_rng(0)
        for _ in range(count // 2):
            buf = io.BytesIO()
            arr = rng.integers(0, 256, (1200, 1600, 3), np.uint8)
            Image.fromarray(arr).save(buf, "PNG", compress_level=1)
            files.append(buf.getvalue())
        checks = decoder.check_deadline, decoder.DeadlineReader
        best = {"with the time limit": math.inf, "without": math.inf}
        for round_ in range(6):  # alternate which goes first: no order bias
            for label in sorted(best, reverse=bool(round_ % 2)):
                if label == "without":
                    decoder.check_deadline, decoder.DeadlineReader = (lambda _d: None), _PlainReader
                started = time.perf_counter()
                for data in files:
                    decoder.decode_photo(data, MIN_SIDE)
                best[label] = min(best[label], time.perf_counter() - started)
                decoder.check_deadline, decoder.DeadlineReader = checks
        n = len(files)
        for label, seconds in best.items():
            print(f"{n} photos {label}: {seconds:.3f} s, {1000 * seconds / n:.2f} ms/photo")
        diff = best["with the time limit"] / best["without"] - 1
        print(f"difference: {100 * diff:+.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-heif", action="store_true", help="HEIF files take minutes")
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--only", choices=["memory", "time"])
    args = parser.parse_args()
    if args.only != "time":
        measure_memory(args.skip_heif)
    if args.only != "memory":
        measure_time_limit_cost(args.photos)


if __name__ == "__main__":
    main()
