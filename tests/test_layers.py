"""The layers, read from the source: the core never imports a front-end or the indexer,
and the front-ends read the library only through ``searchapp.library`` (and write only
through the writer's ``submit``)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRONT_ENDS = ("ui", "cli")
PRIVATE_TO_CORE = (
    "searchapp.store",
    "searchapp.store_runs",
    "searchapp.store_facets",
    "searchapp.store_embeddings",
    "searchapp.store_roots",
    "searchapp.store_browse",
    "searchapp.live_index",
    "searchapp.ivf",
    "searchapp.dbfile",
    "searchapp.schema",
    "searchapp.vectors",
    "faiss",
    "sqlalchemy",
)
ABOVE_CORE = ("searchapp.indexer", "searchapp.ui", "searchapp.cli", "indexer", "ui", "cli")


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, enclosing top-level function or "", line) of every import in a file."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for top in tree.body:
        scope = top.name if isinstance(top, ast.FunctionDef | ast.ClassDef) else ""
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                found += [(a.name, scope, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((node.module, scope, node.lineno))
    return found


def _is(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def _sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_front_ends_read_only_through_the_library() -> None:
    offenders = []
    for folder in FRONT_ENDS:
        for path in _sources(folder):
            rel = str(path.relative_to(REPO))
            for module, _, line in _imports(path):
                if _is(module, PRIVATE_TO_CORE):
                    offenders.append(f"{rel}:{line} imports {module}")
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("store", "_store"):
                    offenders.append(f"{rel}:{node.lineno} reaches into .{node.attr}")
    assert offenders == []


def test_core_imports_no_front_end_or_indexer() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in _sources("searchapp")
        for module, _, line in _imports(path)
        if _is(module, ABOVE_CORE)
    ]
    assert offenders == []


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import faiss\n"
        "def f():\n"
        "    from searchapp.store import Store\n"
        "    from searchapp.indexer.writer import submit\n"
    )
    found = _imports(sample)
    assert found == [
        ("faiss", "", 1),
        ("searchapp.store", "f", 3),
        ("searchapp.indexer.writer", "f", 4),
    ]
    assert _is("searchapp.vectors", PRIVATE_TO_CORE) and not _is(
        "searchapp.library", PRIVATE_TO_CORE
    )
    assert _is("searchapp.ui.app", ABOVE_CORE) and not _is("searchapp.uix", ABOVE_CORE)
