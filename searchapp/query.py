"""The query language: weighted text and image parts, rclip style.

``beach + 2:dog - people`` is three parts (weights 1, 2 and -1); a term can also be
``photo:ID`` (an indexed photo) or ``image:PATH`` (an image file), so text and images mix
in one query. Parsing is pure: nothing here reads the library or runs the model.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from searchapp.errors import QueryError

_TERM = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*:)?\s*(.+?)\s*$")
MAX_WEIGHT = 100.0  # far beyond any useful mix; 1e20 overflowed float32 into NaN scores
# A query "looks like a name" when it is one token with a digit, an underscore, a slash or
# a file extension: IMG_2041, DSC01234.JPG, 2023/Juli. Plain words go to the model only.
_NAME_TOKEN = re.compile(r"^[^\s+:]*([0-9_/\\]|\.[A-Za-z]{3,4}$)[^\s+:]*$")
# Names hold spaces too ("Café au lait.jpg", "2024/Trip to Rome"): with spaces, a query is
# a name when it holds a slash or ends in a photo extension, and no "+", ":" or " - " of
# the query language.
_SPACED_NAME = re.compile(
    r"^[^+:]*(/|\.(jpe?g|png|heic|heif|webp|avif|tiff?|gif|bmp|dng|cr2|nef|arw)$)[^+:]*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class QueryPart:
    """One weighted term: ``kind`` is text, image (a path or bytes) or photo (an id)."""

    kind: str
    value: str | bytes | int
    weight: float = 1.0


def parse_query(text: str) -> list[QueryPart]:
    """Split ``a + 2:b - c`` into weighted parts (negative weight for ``-``)."""
    parts: list[QueryPart] = []
    tokens = re.split(r"\s+([+-])\s+", " " + text.strip() + " ")
    sign = 1.0
    for tok in tokens:
        if tok in ("+", "-"):
            sign = 1.0 if tok == "+" else -1.0
            continue
        if not tok.strip():
            continue
        m = _TERM.match(tok)
        weight = float(m.group(1)) if m.group(1) else 1.0
        if weight > MAX_WEIGHT:
            raise QueryError(f"'{tok.strip()}': a weight goes up to {MAX_WEIGHT:g}, e.g. 2:sunset.")
        parts.append(_term_part(m.group(2), sign * weight))
    if not parts:
        raise QueryError("the query is empty; type what to look for, e.g. 'dog on a beach'.")
    return parts


def _term_part(term: str, weight: float) -> QueryPart:
    """``photo:ID`` and ``image:PATH`` terms name images; anything else is text."""
    kind, _, value = term.partition(":")
    if kind == "photo" and value.strip():
        if not value.strip().isdigit():
            raise QueryError(f"'{term}': photo: takes a photo id, e.g. photo:42.")
        return QueryPart("photo", int(value), weight)
    if kind == "image" and value.strip():
        return QueryPart("image", value.strip(), weight)
    return QueryPart("text", term, weight)


def describe_parts(parts: list[QueryPart], names: dict[int, str] | None = None) -> str:
    """``beach + 2 × photo cat.png - people``: a query as one line for people."""
    out = []
    for i, p in enumerate(parts):
        sign = "-" if p.weight < 0 else "+"
        weight = abs(p.weight)
        if p.kind == "photo":
            label = f"photo {(names or {}).get(int(p.value), p.value)}"
        elif p.kind == "image":
            label = "uploaded image" if isinstance(p.value, bytes) else f"image {p.value}"
        else:
            label = str(p.value)
        term = label if weight == 1 else f"{weight:g} × {label}"
        out.append(term if i == 0 and sign == "+" else f"{sign} {term}")
    return " ".join(out)


VARIATION_SELECTOR = "\ufe0f"  # "emoji style": some keyboards type it, some do not


def name_variants(fragment: str) -> tuple[str, ...]:
    """``fragment`` as a file name may spell it: accents composed (NFC) or decomposed (NFD,
    as macOS writes names), without emoji variation selectors (compared on both sides)."""
    plain = fragment.replace(VARIATION_SELECTOR, "")
    return tuple(dict.fromkeys(unicodedata.normalize(f, plain) for f in ("NFC", "NFD")))


def fold_name(text: str) -> str:
    """A name as :func:`name_variants` compares it: composed, no variation selectors,
    lower case."""
    return unicodedata.normalize("NFC", text.replace(VARIATION_SELECTOR, "")).lower()


def name_fragment(text: str) -> str | None:
    """The part of a query to match against file and folder names, if it looks like one."""
    text = text.strip()
    if text and _NAME_TOKEN.match(text):
        return text
    return text if _SPACED_NAME.match(text) and " - " not in text else None


__all__ = [
    "VARIATION_SELECTOR",
    "QueryPart",
    "describe_parts",
    "fold_name",
    "name_fragment",
    "name_variants",
    "parse_query",
]
