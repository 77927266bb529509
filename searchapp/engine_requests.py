"""The engine's request bodies, read strictly: typed requests or one-line RequestError.

Every body is a JSON object with only known fields of the right type; anything else is
refused before it reaches the library. The fields are documented in docs/API.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path

from searchapp.errors import RequestError
from searchapp.records import PhotoFilter
from searchapp.results import SORTS

MAX_K = 10_000
_FILTER_FIELDS = {
    "roots": list,
    "folder": str,
    "taken_after": float,
    "taken_before": float,
    "formats": list,
    "min_width": int,
    "min_height": int,
    "min_bytes": int,
}


@dataclass(frozen=True)
class SearchRequest:
    """``POST /v1/search``: exactly one of text, image_path, image_bytes, like."""

    text: str | None = None
    image_path: str | None = None
    image_bytes: bytes | None = None
    like: int | str | None = None
    k: int = 10
    offset: int = 0
    cutoff: bool = False
    sort: str = "relevance"
    skip_query_photos: bool | None = None  # None: only for "like"
    filters: PhotoFilter = field(default_factory=PhotoFilter)


@dataclass(frozen=True)
class EncodeRequest:
    """``POST /v1/encode``: exactly one of text, image_path, image_bytes."""

    text: str | None = None
    image_path: str | None = None
    image_bytes: bytes | None = None


def parse_body(raw: bytes) -> dict:
    """The JSON object of a body (the caller's ``identity`` included)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the body is not valid JSON; send one JSON object.") from None
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object.")
    return body


def search_request(body: dict) -> SearchRequest:
    """A checked search request; raises RequestError naming the bad field."""
    fields = _known(body, SearchRequest.__dataclass_fields__)
    values = _query_source(fields)
    if "like" in fields:
        like = fields["like"]
        if isinstance(like, bool) or not isinstance(like, int | str):
            raise RequestError("'like' must be a photo id (integer) or an indexed path (string).")
        values["like"] = like
    if sum(1 for v in values.values() if v is not None) != 1:
        raise RequestError("give exactly one of: text, image_path, image_base64, like.")
    k = _typed(fields, "k", int, 10)
    offset = _typed(fields, "offset", int, 0)
    if not 1 <= k <= MAX_K or offset < 0:
        raise RequestError(f"'k' must be 1 to {MAX_K} and 'offset' 0 or more.")
    sort = _typed(fields, "sort", str, "relevance")
    if sort not in SORTS:
        raise RequestError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}.")
    return SearchRequest(
        **values,
        k=k,
        offset=offset,
        cutoff=_typed(fields, "cutoff", bool, False),
        sort=sort,
        skip_query_photos=_typed(fields, "skip_query_photos", bool, None),
        filters=_filters(fields.get("filters")),
    )


def encode_request(body: dict) -> EncodeRequest:
    """A checked encode request."""
    fields = _known(body, EncodeRequest.__dataclass_fields__)
    values = _query_source(fields)
    if sum(1 for v in values.values() if v is not None) != 1:
        raise RequestError("give exactly one of: text, image_path, image_base64.")
    return EncodeRequest(**values)


def _known(body: dict, names: object) -> dict:
    allowed = {n for n in names if n != "image_bytes"} | {"image_base64", "identity"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}; see docs/API.md.")
    return body


def _query_source(fields: dict) -> dict:
    text = _typed(fields, "text", str, None)
    path = _typed(fields, "image_path", str, None)
    if path is not None and not Path(path).is_absolute():
        raise RequestError("'image_path' must be an absolute path.")
    data = None
    if "image_base64" in fields:
        encoded = _typed(fields, "image_base64", str, None)
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("'image_base64' is not valid base64.") from None
    return {"text": text, "image_path": path, "image_bytes": data}


def _typed(fields: dict, name: str, kind: type, default: object) -> object:
    if name not in fields or fields[name] is None:
        return default
    value = fields[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise RequestError(f"'{name}' must be {_NAMES[kind]}.")
    return value


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
_NAMES[list] = "a list of strings"


def _filters(raw: object) -> PhotoFilter:
    if raw is None:
        return PhotoFilter()
    if not isinstance(raw, dict):
        raise RequestError("'filters' must be a JSON object.")
    unknown = sorted(set(raw) - set(_FILTER_FIELDS))
    if unknown:
        raise RequestError(f"unknown filter(s): {', '.join(unknown)}; see docs/API.md.")
    values = {name: _typed(raw, name, kind, None) for name, kind in _FILTER_FIELDS.items()}
    for name in ("roots", "formats"):
        items = values[name] or []
        if not all(isinstance(x, str) for x in items):
            raise RequestError(f"'{name}' must be a list of strings.")
        values[name] = tuple(items)
    return PhotoFilter(**values)


__all__ = [
    "EncodeRequest",
    "RequestError",
    "SearchRequest",
    "encode_request",
    "parse_body",
    "search_request",
]
