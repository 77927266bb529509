"""Text for a terminal: file names may hold control characters that must not act there.

A name with ESC can recolour or rewrite the terminal, CR can hide what precedes it, and a
newline can forge a whole line of output. Human output shows them escaped; JSON output
keeps names exact (JSON escapes control characters itself).
"""

from __future__ import annotations

import unicodedata

# Format characters that reorder text (bidi overrides, isolates, marks) can disguise a
# name as another, e.g. "photo\u202egpj.exe"; line and paragraph separators break lines.
_INVISIBLE = frozenset(
    "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``, ``\\u202e``).

    Undecodable bytes of a file name (lone surrogates, printed as the original bytes)
    that would be C1 controls on a Latin-1 terminal (0x80-0x9f) are escaped too; other
    characters are kept as they are.
    """
    if text.isprintable() and text.isascii():
        return text
    return "".join(_escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= code <= 0xDC9F:  # surrogate-escaped byte 0x80-0x9f
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:  # other undecodable bytes: printed as themselves
        return ch
    if ch in _INVISIBLE or unicodedata.category(ch) == "Cc":
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return ch
