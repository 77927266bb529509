"""Path facts shared by the scanner, the watcher, the store and the page."""

from __future__ import annotations

import os
import shlex


def is_under(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` itself or anything below it (plain string test)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# File names are bytes on POSIX; Python hands undecodable bytes over as lone surrogates
# (os.fsdecode's surrogateescape), which SQLite's UTF-8 text cannot hold. They are stored
# as ESCAPE + two hex digits, and a literal ESCAPE is doubled, so the mapping reverses
# exactly, keeps every ordinary name as it is, and keeps prefixes (folder filters) intact.
PATH_ESCAPE = "\uf8ff"  # a private-use character, never produced by a surrogate escape


def encode_path(text: str) -> str:
    """``text`` as valid UTF-8 text for the database (identity for ordinary names)."""
    if PATH_ESCAPE not in text and text.isascii():
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == PATH_ESCAPE:
            out.append(PATH_ESCAPE * 2)
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte 0x80..0xFF
            out.append(f"{PATH_ESCAPE}{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:  # any other lone surrogate
            out.append(f"{PATH_ESCAPE}u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def decode_path(text: str) -> str:
    """The inverse of :func:`encode_path`."""
    if PATH_ESCAPE not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != PATH_ESCAPE:
            out.append(ch)
            i += 1
        elif text[i + 1] == PATH_ESCAPE:
            out.append(PATH_ESCAPE)
            i += 2
        elif text[i + 1] == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(chr(0xDC00 + int(text[i + 1 : i + 3], 16)))
            i += 3
    return "".join(out)


def shell_quote(text: str) -> str:
    """``text`` quoted for the shell, so a suggested command can be pasted as it is; a
    name with bytes that are not UTF-8 as ``$'...\\xNN'`` (bash, zsh and ksh: no other
    spelling survives a UTF-8 page or terminal)."""
    if not any(0xDC80 <= ord(ch) <= 0xDCFF for ch in text):  # os.fsdecode's escapes
        return shlex.quote(text)
    body = "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in b"\\'" else f"\\x{b:02x}" for b in os.fsencode(text)
    )
    return f"$'{body}'"
