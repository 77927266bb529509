"""The writes a library accepts, as typed commands, and what each one did.

Every write goes through a :class:`~searchapp.indexer.writer.Writer` as one of these
commands: from the CLI, the page, or another process through the hand-off folder. The
JSON form (``command_to_json`` / ``command_from_json``) is how a command travels to a
running watcher; reading it back is strict, because the hand-off folder is input from
outside the process.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from searchapp.errors import HandoffError, not_a_folder
from searchapp.indexer.pipeline import IndexStats
from searchapp.paths import is_under


class StopRequested(KeyboardInterrupt):
    """Raised from a run's progress callback, between batches, to stop it (the daemon's
    shutdown, the page's Stop button): a KeyboardInterrupt, so the run's record says
    "interrupted" and everything committed stays, as for Ctrl+C."""


@dataclass(frozen=True)
class AddRoots:
    """Register photo folders (nothing is indexed until an ``Index`` runs)."""

    paths: tuple[str, ...]


@dataclass(frozen=True)
class Index:
    """Add ``add_roots``, then index every root, or only ``paths`` (files or folders)."""

    paths: tuple[str, ...] | None = None
    retry_failed: bool = False  # forget failed rows (of ``paths``) so they are read again
    add_roots: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoveRoot:
    """Forget a photo folder and its photos (the files are never touched)."""

    path: str


Command = AddRoots | Index | RemoveRoot
_TYPES: dict[str, type] = {"add_roots": AddRoots, "index": Index, "remove_root": RemoveRoot}
_NAMES = {cls: name for name, cls in _TYPES.items()}


def covered_note(asked: str, root: str, shown: str | None = None) -> str | None:
    """What to say when a folder asked to be added (``asked``, absolute; ``shown`` as the
    person typed it) came back as ``root``: inside a photo folder, which covers it
    already; None when it was added (or was a root) itself."""
    if root == asked or not is_under(asked, root):
        return None
    return f"{shown or asked} is inside the photo folder {root}, which covers it already"


@dataclass(frozen=True)
class Outcome:
    """What a command did; ``done_by`` is the watcher's pid when it was handed over."""

    stats: IndexStats | None = None
    roots: tuple[str, ...] = ()  # roots added or removed
    new_roots: tuple[str, ...] = ()  # of those added, the ones that were not roots before
    removed_photos: int = 0
    done_by: int | None = None

    def to_json(self) -> dict:
        value = asdict(self)
        value["roots"], value["new_roots"] = list(self.roots), list(self.new_roots)
        return value

    @classmethod
    def from_json(cls, value: dict) -> Outcome:
        stats = value.get("stats")
        known = {f.name for f in fields(IndexStats)}
        return cls(
            stats=IndexStats(**{k: v for k, v in stats.items() if k in known}) if stats else None,
            roots=tuple(value.get("roots") or ()),
            new_roots=tuple(value.get("new_roots") or ()),
            removed_photos=int(value.get("removed_photos") or 0),
            done_by=value.get("done_by"),
        )


def absolute(path: str | Path) -> str:
    """The form roots and paths travel in: absolute, ``~`` expanded, links resolved."""
    return str(Path(path).expanduser().resolve())


def absolute_folder(path: str | Path) -> str:
    """:func:`absolute` of a photo folder to add, checked here first: a typo is said at
    once, not after waiting for the writer (the store checks again where it adds it)."""
    resolved = absolute(path)
    if not os.path.isdir(resolved):
        raise not_a_folder(resolved)
    return resolved


def command_to_json(command: Command) -> dict:
    value = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(command).items()}
    return {"type": _NAMES[type(command)], **value}


def command_from_json(value: object) -> Command:
    """Rebuild a command, refusing anything that is not exactly one of ours."""
    if not isinstance(value, dict) or value.get("type") not in _TYPES:
        raise HandoffError("not a searchapp command")
    cls = _TYPES[value["type"]]
    spec = {f.name: f for f in fields(cls)}
    args = {k: v for k, v in value.items() if k != "type"}
    unknown = set(args) - set(spec)
    if unknown:
        raise HandoffError(f"unknown field(s) {', '.join(sorted(unknown))}")
    clean: dict[str, object] = {}
    for name, raw in args.items():
        clean[name] = _field_value(name, raw)
    try:
        return cls(**clean)
    except TypeError as err:  # a required field is missing
        raise HandoffError(f"incomplete command: {err}") from None


def _field_value(name: str, raw: object) -> object:
    if name == "retry_failed":
        if not isinstance(raw, bool):
            raise HandoffError("retry_failed must be true or false")
        return raw
    if name == "path":
        return _path(raw)
    if raw is None and name == "paths":
        return None
    if not isinstance(raw, list):
        raise HandoffError(f"{name} must be a list of paths")
    return tuple(_path(p) for p in raw)


def _path(raw: object) -> str:
    if not isinstance(raw, str) or not os.path.isabs(raw) or "\0" in raw:
        raise HandoffError("paths must be absolute")
    return raw


__all__ = [
    "AddRoots",
    "Command",
    "covered_note",
    "Index",
    "Outcome",
    "RemoveRoot",
    "absolute",
    "command_from_json",
    "command_to_json",
]
