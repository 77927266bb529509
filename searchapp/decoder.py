"""Reading photo files: hash the bytes, decode near the model's size, orient, read EXIF.

Fast path for big JPEGs: Pillow's draft mode lets libjpeg scale by 1/2, 1/4 or 1/8 in
the DCT, so a 12 MP photo decodes at ~500x375 instead of 4000x3000. EXIF orientation is
applied after the shrink. Every failure becomes an :class:`ImageDecodeError` whose text
is the one-line reason stored for the file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from searchapp.errors import ImageDecodeError

try:  # HEIC/HEIF support is optional at import time but listed as a dependency
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - only when the wheel is missing for a platform
    HEIF_AVAILABLE = False

# Truncated files must fail loudly, never decode as half-grey pictures.
ImageFile.LOAD_TRUNCATED_IMAGES = False

PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)
MAX_FILE_BYTES = 512 * 1024 * 1024
JPEG_MAX_PIXELS = 1_000_000_000  # decoded at 1/8 scale in draft mode: <= ~16 MP in memory
HASH_BYTES = 16

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_DATETIME_DIGITIZED = 36868
_DATETIME = 306
_MAKE, _MODEL = 271, 272
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodedPhoto:
    """A decoded file: a small RGB image (short side >= the asked size) and its facts."""

    image: Image.Image
    content_hash: str
    size: int
    width: int  # of the original, after EXIF orientation
    height: int
    format: str
    taken_at: float | None
    camera: str | None


def is_photo_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in PHOTO_EXTENSIONS


def hash_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).hexdigest()


def read_file(path: str | Path) -> bytes:
    """Read a whole file, turning OS errors into one-line reasons."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > MAX_FILE_BYTES:
                raise ImageDecodeError(f"file too large ({st.st_size // 2**20} MB)")
            return f.read()
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageDecodeError("broken symbolic link") from None
        raise ImageDecodeError("file vanished before it could be read") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except IsADirectoryError:
        raise ImageDecodeError("is a folder, not a file") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ImageDecodeError("symbolic link loop") from None
        raise ImageDecodeError(f"cannot read file ({err.strerror or err})") from None


def decode_photo(data: bytes, min_side: int, content_hash: str | None = None) -> DecodedPhoto:
    """Decode image bytes to RGB with the short side >= ``min_side`` where possible.

    ``content_hash`` saves hashing the bytes again when the caller already has it.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, min_side, content_hash or hash_bytes(data))
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(
            f"image too large, refused as a possible decompression bomb ({err})"[:300]
        ) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image, or a format Pillow cannot read") from None
    except MemoryError:
        raise ImageDecodeError("image needs more memory than is available") from None
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError) as err:
        text = str(err).strip() or type(err).__name__
        if "truncated" in text.lower() or isinstance(err, EOFError):
            raise ImageDecodeError(f"truncated or damaged image data ({text})"[:300]) from None
        raise ImageDecodeError(f"damaged image ({text})"[:300]) from None


def _decode(data: bytes, min_side: int, content_hash: str) -> DecodedPhoto:
    im = _open(data)
    fmt = (im.format or "UNKNOWN").upper()
    exif = im.getexif()
    orientation = exif.get(0x0112, 1)
    if getattr(im, "is_animated", False):
        im.seek(0)
    width, height = im.size
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if fmt in ("JPEG", "MPO"):  # MPO: a JPEG with extra frames (some cameras)
        im.draft("RGB", (min_side, min_side))
    im.load()
    im = _to_rgb(im)
    if orientation in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[orientation])
    return DecodedPhoto(
        image=im,
        content_hash=content_hash,
        size=len(data),
        width=width,
        height=height,
        format=fmt,
        taken_at=_taken_at(exif),
        camera=_camera(exif),
    )


def _open(data: bytes) -> Image.Image:
    """Open image bytes; JPEGs past Pillow's pixel limit are allowed up to our own.

    Pillow refuses anything over ~179 MP (and warns past ~89 MP) because a full decode
    would need gigabytes. A JPEG is decoded in draft mode at 1/8 scale by libjpeg, so a
    1 GP panorama needs ~16 MP of memory; only larger claims are refused as bombs.
    """
    try:
        return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        if not data.startswith(b"\xff\xd8\xff"):
            raise
    im = JpegImagePlugin.jpeg_factory(io.BytesIO(data))
    if im.width * im.height > JPEG_MAX_PIXELS:
        raise Image.DecompressionBombError(
            f"{im.width}x{im.height} JPEG is over {JPEG_MAX_PIXELS // 10**6} MP"
        )
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB for the model; transparent pixels become white, as a viewer shows them."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # Pillow's 16-bit -> L conversion clips at 255; stretch the used range instead.
        im = ImageOps.autocontrast(
            im.convert("F").convert("I").point(_scale_to_byte(im)).convert("L")
        )
    return im.convert("RGB") if im.mode != "RGB" else im


def _scale_to_byte(im: Image.Image) -> object:
    lo, hi = im.convert("F").getextrema()
    span = (hi - lo) or 1
    return lambda v: (v - lo) * 255 / span


def _taken_at(exif: Image.Exif) -> float | None:
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - broken EXIF must not fail the photo
        sub = {}
    for raw in (sub.get(_DATETIME_ORIGINAL), sub.get(_DATETIME_DIGITIZED), exif.get(_DATETIME)):
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", "ignore")
        if isinstance(raw, str):
            try:
                return datetime.strptime(raw.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S").timestamp()
            except ValueError:
                continue
    return None


def _camera(exif: Image.Exif) -> str | None:
    parts = []
    for tag in (_MAKE, _MODEL):
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("ascii", "ignore")
        if isinstance(value, str) and value.strip("\x00 "):
            parts.append(value.strip("\x00 "))
    if len(parts) == 2 and parts[1].lower().startswith(parts[0].lower()):
        parts = parts[1:]
    return " ".join(parts)[:120] or None


def load_photo(path: str | Path, min_side: int) -> DecodedPhoto:
    """Read and decode one file (used for image queries and uploads)."""
    return decode_photo(read_file(path), min_side)
