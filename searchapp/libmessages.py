"""Messages the image libraries print about damaged files go to the log, not to stderr.

Pillow warns through :mod:`warnings` (``Corrupt EXIF data``, ``Tag data larger than
file``) and libtiff writes straight to the C stderr (``ZIPDecode: Decoding error ...``);
both landed in the middle of the progress bar. The file's failed row already says what
went wrong, so these become INFO lines of the ``searchapp.decoder`` logger (shown with
``-v``). Other warnings are left to Python's usual handling.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import warnings
from pathlib import Path

log = logging.getLogger("searchapp.decoder")

# warnings raised from these files are about an image being decoded (Pillow warns with
# stacklevel 1 or 2, so the decoder's own files count too)
_PACKAGES = tuple(os.sep + name + os.sep for name in ("PIL", "pillow_heif"))
_DECODER_FILES = tuple(
    str(Path(__file__).with_name(name)) for name in ("decoder.py", "decode_limits.py")
)
_installed = False
_lock = threading.Lock()
_keep_alive: list[object] = []  # ctypes callbacks must outlive their registration

_TIFF_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)


def route_library_messages() -> None:
    """Install the routing once per process (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        previous = warnings.showwarning
        warnings.showwarning = _make_showwarning(previous)
        _route_libtiff()


def _make_showwarning(previous):  # noqa: ANN001, ANN202 - warnings.showwarning's shape
    def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        name = str(filename)
        if name in _DECODER_FILES or any(part in name for part in _PACKAGES):
            log.info("%s: %s", category.__name__, message)
            return
        previous(message, category, filename, lineno, file, line)

    return showwarning


def _route_libtiff() -> None:
    """Point libtiff's error and warning handlers at the log (where libtiff is found)."""
    for path in _libtiff_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        handler = _TIFF_HANDLER(_tiff_logger)
        _keep_alive.append(handler)
        for setter in ("TIFFSetErrorHandler", "TIFFSetWarningHandler"):
            func = getattr(lib, setter, None)
            if func is not None:
                func.restype = ctypes.c_void_p
                func(handler)


def _tiff_logger(module: bytes | None, fmt: bytes | None, _args: int | None) -> None:
    # the va_list cannot be formatted portably from Python: log the message template
    text = (fmt or b"").decode("utf-8", "replace")
    where = (module or b"libtiff").decode("utf-8", "replace")
    log.info("libtiff: %s: %s", where, text)


def _libtiff_paths() -> list[str]:
    """The libtiff Pillow's C module loaded: from the process maps, else Pillow's own copy."""
    from PIL import Image  # noqa: F401 - loads _imaging and the libtiff it links

    found: list[str] = []
    maps = Path("/proc/self/maps")
    if maps.exists():
        for row in maps.read_text().splitlines():
            path = row.split(maxsplit=5)[-1] if row.count(" ") >= 5 else ""
            if "libtiff" in Path(path).name and path not in found:
                found.append(path)
    if not found:
        import PIL

        base = Path(PIL.__file__).parent
        for folder in (base / ".dylibs", base.parent / "pillow.libs"):
            found += [str(p) for p in sorted(folder.glob("libtiff*"))]
    return found
