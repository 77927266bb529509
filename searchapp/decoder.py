"""Reading photo files: hash the bytes, decode near the model's size, orient, read EXIF.

Fast path for big JPEGs: Pillow's draft mode lets libjpeg scale by 1/2, 1/4 or 1/8 in
the DCT, so a 12 MP photo decodes at ~500x375 instead of 4000x3000. Other formats are
decoded whole and shrunk (in stripes, by an integer box filter) before any colour
conversion. EXIF orientation is applied after the shrink.

Bounds (see :mod:`searchapp.decode_limits`): only regular files are read, never more than
:data:`MAX_FILE_BYTES`; only a fixed set of decoders is reachable; what a decode would
allocate is estimated from the header and refused over budget; decoding stops at a time
limit. Whatever goes wrong becomes an :class:`ImageDecodeError` whose text is the
one-line reason stored for the file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from searchapp import decode_limits
from searchapp.decode_limits import (
    FORMATS,
    REDUCIBLE_MODES,
    DeadlineReader,
    DecodeTimeout,
    check_deadline,
    check_decode_cost,
    deadline_after,
    shrink_factor,
)
from searchapp.errors import ImageDecodeError
from searchapp.libmessages import route_library_messages

try:  # HEIC/HEIF support is optional at import time but listed as a dependency
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - only when the wheel is missing for a platform
    HEIF_AVAILABLE = False

# Truncated files must fail loudly, never decode as half-grey pictures.
ImageFile.LOAD_TRUNCATED_IMAGES = False
route_library_messages()

PHOTO_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif",
    *((".avif",) if "AVIF" in FORMATS else ()),
})  # fmt: skip
MAX_FILE_BYTES = 512 * 1024 * 1024
HASH_BYTES = 16
_READ_CHUNK = 1 << 20
_STRIPE_BYTES = 4 << 20  # source rows shrunk at a time: a few MB, never a full-size copy
_FILE_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}

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
    """Read a whole regular file (links followed), turning OS errors into one-line reasons.

    FIFOs, devices (a link to ``/dev/zero``) and sockets are refused by ``stat`` before
    any open (opening some devices has side effects), and again by ``fstat`` on the
    opened descriptor (the name may have been swapped in between). The open is
    non-blocking, so a FIFO cannot hang it; never more than :data:`MAX_FILE_BYTES` is
    read, even from a file that grows meanwhile.
    """
    try:
        _require_regular(os.stat(path).st_mode)
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        raise ImageDecodeError(_open_failure(path, err)) from None
    try:
        st = os.fstat(fd)
        _require_regular(st.st_mode)
        if st.st_size > MAX_FILE_BYTES:
            raise ImageDecodeError(f"file too large ({st.st_size // 2**20} MB)")
        if _NONBLOCK:
            os.set_blocking(fd, True)  # a regular file, checked: reads may wait for the disk
        return _read_at_most(fd, st.st_size)
    except OSError as err:
        raise ImageDecodeError(f"cannot read file ({err.strerror or err})") from None
    finally:
        os.close(fd)


# the flags Windows lacks are left out there (it has no FIFOs to hang an open)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_OPEN_FLAGS = (
    os.O_RDONLY | _NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)  # fmt: skip


def _require_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ImageDecodeError("is a folder, not a file")
    kind = _FILE_KINDS.get(stat.S_IFMT(mode), "a special file")
    raise ImageDecodeError(f"not a regular file ({kind}); only regular files are read")


def _open_failure(path: str | Path, err: OSError) -> str:
    if err.errno == errno.ENOENT:
        return (
            "broken symbolic link"
            if os.path.islink(path)
            else "file vanished before it could be read"
        )
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if err.errno == errno.ENXIO:
        return "not a regular file (a socket); only regular files are read"
    return f"cannot read file ({err.strerror or err})"


def _read_at_most(fd: int, size_hint: int) -> bytes:
    """The file's bytes; one byte past the expected size tells a file that grew."""
    parts: list[bytes] = []
    total = 0
    while True:
        want = max(size_hint + 1 - total, _READ_CHUNK)
        chunk = os.read(fd, min(want, MAX_FILE_BYTES + 1 - total))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if total > MAX_FILE_BYTES:
            raise ImageDecodeError(f"file too large (over {MAX_FILE_BYTES // 2**20} MB)")


def decode_photo(data: bytes, min_side: int, content_hash: str | None = None) -> DecodedPhoto:
    """Decode image bytes to RGB with the short side >= ``min_side`` where possible.

    ``content_hash`` saves hashing the bytes again when the caller already has it. Any
    failure, whatever a decoder raised, is an :class:`ImageDecodeError` with one line.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        return _decode(data, min_side, content_hash or hash_bytes(data))
    except ImageDecodeError:
        raise
    except DecodeTimeout:
        raise ImageDecodeError(
            f"decoding took over {decode_limits.DECODE_TIME_LIMIT_S:g} s, the limit for one "
            "file; refused"
        ) from None
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(
            _reason(f"image too large, refused as a possible decompression bomb ({err})")
        ) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image, or an image format searchapp cannot read") from None
    except MemoryError:
        raise ImageDecodeError("image needs more memory than is available") from None
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError) as err:
        text = str(err).strip() or type(err).__name__
        if "truncated" in text.lower() or isinstance(err, EOFError):
            # Pillow's "image file is truncated (0 bytes not processed)" adds nothing a
            # person can use, and nested brackets
            detail = "" if text.startswith("image file is truncated") else f" ({text})"
            raise ImageDecodeError(_reason(f"truncated or damaged image data{detail}")) from None
        raise ImageDecodeError(_reason(f"damaged image ({text})")) from None
    except Exception as err:  # noqa: BLE001 - any decoder's surprise fails this file only
        text = str(err).strip()
        name = type(err).__name__
        raise ImageDecodeError(
            _reason(f"damaged image ({name}: {text})" if text else f"damaged image ({name})")
        ) from None


def _reason(text: str) -> str:
    """One line of at most 300 characters."""
    return " ".join(text.split())[:300]


def _decode(data: bytes, min_side: int, content_hash: str) -> DecodedPhoto:
    deadline = deadline_after()
    im = _open(data, deadline)
    fmt = (im.format or "UNKNOWN").upper()
    if getattr(im, "is_animated", False):
        im.seek(0)
    full_size = im.size
    if fmt in ("JPEG", "MPO"):  # MPO: a JPEG with extra frames (some cameras)
        im.draft("RGB", (min_side, min_side))
    check_decode_cost(im, data, min_side, full_size)
    im.load()
    check_deadline(deadline)
    exif = im.getexif()  # only now: a PNG's EXIF may follow its pixels, and reading it loads them
    orientation = exif.get(0x0112, 1)
    width, height = full_size
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    im = _to_rgb(_shrink(im, fmt, min_side, deadline))
    check_deadline(deadline)
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


def _open(data: bytes, deadline: float) -> Image.Image:
    """Open image bytes with one of the allowed decoders.

    Pillow refuses anything over ~179 MP at ``Image.open``. A JPEG past that is opened
    again without Pillow's check: draft mode decodes it at 1/8 scale in libjpeg, and
    :func:`check_decode_cost` applies the JPEG limits before any pixel is decoded.
    """
    try:
        return Image.open(DeadlineReader(data, deadline), formats=FORMATS)
    except Image.DecompressionBombError:
        if not data.startswith(b"\xff\xd8\xff"):
            raise
    return JpegImagePlugin.jpeg_factory(DeadlineReader(data, deadline))


def _shrink(im: Image.Image, fmt: str, min_side: int, deadline: float) -> Image.Image:
    """A big non-JPEG picture reduced by an integer box filter, one stripe at a time.

    Done before colour conversion, so no full-size copy is made (JPEGs were already
    shrunk by libjpeg in draft mode). The short side stays >= twice ``min_side``.
    """
    factor = shrink_factor(*im.size, min_side)
    if fmt in ("JPEG", "MPO") or factor < 2:
        return im
    if im.mode not in REDUCIBLE_MODES:
        im = _reducible(im)
    width, height = im.size
    out = Image.new(im.mode, (-(-width // factor), -(-height // factor)))
    step = factor * max(1, _STRIPE_BYTES // (width * 4 * factor))
    premultiplied = im.mode in ("LA", "RGBA")  # reduce() would convert the whole image
    for top in range(0, height, step):
        check_deadline(deadline)
        box = (0, top, width, min(height, top + step))
        part = im.crop(box).reduce(factor) if premultiplied else im.reduce(factor, box)
        out.paste(part, (0, top // factor))
    return out


def _reducible(im: Image.Image) -> Image.Image:
    """A mode ``Image.reduce`` works on, keeping transparency and 16-bit range."""
    if im.mode in ("P", "PA"):
        alpha = im.mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if alpha else "RGB")
    if im.mode == "1":
        return im.convert("L")
    if im.mode.startswith("I;16"):
        return im.convert("I")
    return im.convert("RGBA" if "A" in im.getbands() else "RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB for the model; transparent pixels become white, as a viewer shows them."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
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
