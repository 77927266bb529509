"""A cached synthetic library of phone-sized JPEGs (about 4000x3000, quality 88).

Each photo is smooth low-frequency colour, a few shapes and sensor-like noise, so its
JPEG is a few MB like a phone photo and every photo looks different to the model. Every
fourth photo is stored sideways (3000x4000 pixels) with EXIF orientation 6, as phones do.
Photos are written once to a cache folder and reused by later runs.

    python benchmarks/synth_library.py --count 96 --out /tmp/searchapp-bench/photos
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEFAULT_DIR = Path(os.environ.get("SEARCHAPP_BENCH_DIR", "/tmp/searchapp-bench")) / "photos"
WIDTH, HEIGHT = 4000, 3000
QUALITY = 88
ORIENTATION_TAG = 0x0112


def photo_name(i: int) -> str:
    return f"IMG_{i:05d}.jpg"


def make_photo(seed: int) -> tuple[Image.Image, int]:
    """One synthetic photo and its EXIF orientation (1, or 6 for every fourth)."""
    rng = np.random.default_rng(seed)
    # low-frequency colour field: a small random grid upsampled smoothly
    grid = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    base = Image.fromarray(grid, "RGB").resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(int(rng.integers(6, 14))):
        x, y = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        r = int(rng.integers(120, 900))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    base = base.filter(ImageFilter.GaussianBlur(3))
    # fine texture + sensor noise: what makes a real 12 MP JPEG weigh megabytes
    pixels = np.asarray(base, dtype=np.int16)
    texture = rng.normal(0.0, 7.0, size=(HEIGHT // 2, WIDTH // 2, 1)).astype(np.int16)
    pixels = pixels + np.repeat(np.repeat(texture, 2, axis=0), 2, axis=1)
    pixels += rng.integers(-4, 5, size=pixels.shape, dtype=np.int16)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    orientation = 6 if seed % 4 == 3 else 1
    if orientation == 6:
        # stored sideways; a viewer rotates it 90 degrees clockwise to show it upright
        image = image.transpose(Image.Transpose.ROTATE_90)
    return image, orientation


def write_photo(path: Path, seed: int) -> None:
    image, orientation = make_photo(seed)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    exif[0x010F], exif[0x0110] = "Synthetic", "Bench Phone"
    tmp = path.with_suffix(".tmp")
    image.save(tmp, "JPEG", quality=QUALITY, exif=exif.tobytes())
    os.replace(tmp, path)


def ensure_library(count: int, folder: Path = DEFAULT_DIR, *, quiet: bool = False) -> list[Path]:
    """The first ``count`` photos of the cached library, generating the missing ones."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / photo_name(i) for i in range(count)]
    missing = [(i, p) for i, p in enumerate(paths) if not p.exists()]
    started = time.monotonic()
    for n, (i, p) in enumerate(missing, 1):
        write_photo(p, i)
        if not quiet and (n % 16 == 0 or n == len(missing)):
            print(f"  generated {n}/{len(missing)} photos", file=sys.stderr)
    if missing and not quiet:
        print(f"  ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=96)
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args()
    paths = ensure_library(args.count, args.out)
    sizes = [p.stat().st_size for p in paths]
    print(
        f"{len(paths)} photos in {args.out}: mean {np.mean(sizes) / 2**20:.1f} MB, "
        f"{sum(s for s in sizes) / 2**30:.2f} GB"
    )


if __name__ == "__main__":
    main()
