"""Bounds on decoding one file: memory estimated from the header, and a time limit.

A few hundred bytes can claim a picture of billions of pixels. Before any pixel data is
decoded, :func:`decode_cost` estimates from the header what a decode would allocate, by
format and mode, and :func:`check_decode_cost` refuses what is over
:data:`MAX_DECODE_BYTES`. The factors below were measured (peak RSS of a fresh process
decoding a file at the limit; ``benchmarks/decode_memory.py``) and round up:

- Pillow keeps 3- and 4-band images at 4 bytes a pixel, ``L``/``P``/``1`` at 1 and
  16-bit grey at 2;
- a baseline JPEG is decoded by libjpeg at 1/2..1/8 scale (draft mode), so only the
  scaled picture counts; a progressive (or multi-scan) JPEG needs its full-size DCT
  coefficients, 2 bytes per sample, whatever the scale: draft mode does not help there;
- libwebp needs ~16 bytes a pixel (its canvas, its own buffers and Pillow's copy);
- libheif ~9 (the decoded planes and Pillow's copy); libavif ~12 (measured 9.5-11.9 with
  RGB and RGBA at 4096x4096);
- a TIFF strip or tile is buffered whole before unpacking;
- modes the shrink step cannot work on (palette, 1-bit, 16-bit) are converted first, at
  4 bytes a pixel.

The time limit is cooperative: the decoder reads its input through
:class:`DeadlineReader`, which raises :class:`DecodeTimeout` on the first read after the
deadline, and :func:`check_deadline` is called between decoding steps. A single call
into a C decoder (libwebp, libheif, libjpeg's final pass over a progressive file) is not
interrupted; its length is bounded by the memory estimate above instead.
"""

from __future__ import annotations

import io
import math
import time

from PIL import Image

from searchapp.errors import ImageDecodeError

MAX_DECODE_BYTES = 512 * 2**20
DECODE_TIME_LIMIT_S = 30.0
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's default limit (non-JPEG)
JPEG_MAX_PIXELS = 1_000_000_000  # baseline JPEGs decode at 1/8 scale: <= ~16 MP in memory


def _reads_avif() -> bool:
    """Whether this Pillow reads AVIF (recent ones, built with libavif); older ones do not."""
    try:
        from PIL import AvifImagePlugin
    except ImportError:
        return False
    return bool(AvifImagePlugin.SUPPORTED)


# The only decoders a file may reach, whatever its name (EPS, PSD, FITS... are refused).
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF") + (
    ("AVIF",) if _reads_avif() else ()
)
REDUCIBLE_MODES = frozenset(
    {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"}
)
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_WEBP_BYTES_PER_PIXEL = 16
_HEIF_BYTES_PER_PIXEL = 9
_AVIF_BYTES_PER_PIXEL = 12
_CONVERT_BYTES_PER_PIXEL = 4
_OVERHEAD_BYTES = 16 * 2**20  # decoder state, stripes, the small output picture
_SOS = b"\xff\xda"  # start of scan: more than one means a multi-scan JPEG


class DecodeTimeout(Exception):
    """Decoding one file ran past :data:`DECODE_TIME_LIMIT_S`."""


def deadline_after(seconds: float | None = None) -> float:
    """A ``time.monotonic()`` deadline ``seconds`` from now (default: the module limit)."""
    return time.monotonic() + (DECODE_TIME_LIMIT_S if seconds is None else seconds)


def check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise DecodeTimeout


class DeadlineReader(io.BytesIO):
    """In-memory file bytes for Pillow; every read after ``deadline`` raises."""

    def __init__(self, data: bytes, deadline: float) -> None:
        super().__init__(data)
        self.deadline = deadline

    def read(self, size: int | None = -1, /) -> bytes:
        check_deadline(self.deadline)
        return super().read(size)


def shrink_factor(width: int, height: int, min_side: int) -> int:
    """The integer reduction that keeps the short side >= twice ``min_side`` (1: none)."""
    return max(1, min(width, height) // (2 * max(min_side, 1)))


def mode_bytes(mode: str) -> int:
    """Bytes a pixel takes in Pillow's memory for ``mode``."""
    if mode in _ONE_BYTE_MODES:
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def decode_cost(im: Image.Image, data: bytes, min_side: int, full_size: tuple[int, int]) -> int:
    """Bytes a decode of ``im`` (opened, draft applied) to a small RGB picture allocates.

    ``full_size`` is the size the header claims; ``im.size`` is the size libjpeg will
    produce after draft mode (the same for every other format).
    """
    width, height = im.size
    pixels = width * height
    raster = pixels * mode_bytes(im.mode)
    fmt = (im.format or "").upper()
    if fmt in ("JPEG", "MPO"):
        decoder = raster + _jpeg_coefficients(im, data, full_size)
    elif fmt == "WEBP":
        decoder = pixels * _WEBP_BYTES_PER_PIXEL
    elif fmt == "HEIF":
        decoder = pixels * _HEIF_BYTES_PER_PIXEL
    elif fmt == "AVIF":
        decoder = pixels * _AVIF_BYTES_PER_PIXEL
    elif fmt == "TIFF":
        decoder = raster + _tiff_strip(im)
    else:
        decoder = raster
    shrinks = fmt not in ("JPEG", "MPO") and shrink_factor(width, height, min_side) > 1
    # shrunk in stripes first, only modes reduce() refuses are converted at full size
    converted = im.mode not in REDUCIBLE_MODES if shrinks else im.mode != "RGB"
    return _OVERHEAD_BYTES + decoder + (pixels * _CONVERT_BYTES_PER_PIXEL if converted else 0)


def check_decode_cost(
    im: Image.Image, data: bytes, min_side: int, full_size: tuple[int, int]
) -> None:
    """Refuse, before decoding, what is over the pixel limits or the memory budget."""
    width, height = full_size
    fmt = (im.format or "UNKNOWN").upper()
    limit = JPEG_MAX_PIXELS if fmt in ("JPEG", "MPO") else MAX_PIXELS
    if width * height > limit:
        raise ImageDecodeError(
            "image too large, refused as a possible decompression bomb "
            f"({width}x{height} {fmt} is over {limit / 10**6:.0f} MP)"
        )
    cost = decode_cost(im, data, min_side, full_size)
    if cost > MAX_DECODE_BYTES:
        kind = "progressive JPEG" if fmt == "JPEG" and _multi_scan(im, data) else fmt
        raise ImageDecodeError(
            f"image too large to decode safely: {width}x{height} {kind} ({im.mode}) "
            f"needs about {cost / 2**20:,.0f} MB, over the {MAX_DECODE_BYTES // 2**20} MB "
            "limit for one file"
        )


def _multi_scan(im: Image.Image, data: bytes) -> bool:
    # An embedded EXIF thumbnail adds a scan marker too; counting it errs on the safe side.
    return bool(im.info.get("progressive")) or data.count(_SOS) > 1


def _jpeg_coefficients(im: Image.Image, data: bytes, full_size: tuple[int, int]) -> int:
    """A multi-scan JPEG's full-size coefficient buffer: 64 x 2 bytes per 8x8 block."""
    if not _multi_scan(im, data):
        return 0
    layers = getattr(im, "layer", None) or [(0, 1, 1, 0)] * len(im.getbands())
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    width, height = full_size
    total = 0
    for _, h, v, _q in layers:
        blocks_w = math.ceil(math.ceil(width * h / h_max) / 8)
        blocks_h = math.ceil(math.ceil(height * v / v_max) / 8)
        total += blocks_w * blocks_h * 64 * 2
    return total


def _tiff_strip(im: Image.Image) -> int:
    """The largest strip or tile libtiff may buffer: at worst the whole image."""
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258, (8,))
    bits_per_pixel = sum(bits) if isinstance(bits, tuple) else int(bits)
    width, height = im.size
    rows = min(int(tags.get(278, height) or height), height)  # RowsPerStrip
    if 322 in tags and 323 in tags:  # TileWidth, TileLength
        width, rows = int(tags[322]), int(tags[323])
    return width * rows * math.ceil(bits_per_pixel / 8)
