"""The scanner: a path-limited scan sees exactly what the full walk sees below those paths."""

from __future__ import annotations

import os
from pathlib import Path

from searchapp.paths import is_under
from searchapp.scanner import is_wanted_path, scan_paths, scan_root, wanted_name


def _tree(root: Path, outside: Path) -> None:
    for rel in (
        "a.jpg",
        "notes.txt",
        "trip/b.JPG",
        "trip/day 2/c.png",
        "trip/.cache/hidden.jpg",
        ".hidden/d.jpg",
        "trip/.e.jpg",
        "trip/b.JPG.part",  # still downloading
        "trip/~$b.JPG",  # an office lock file
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * len(rel))
    (outside / "f.jpg").write_bytes(b"outside")
    os.symlink(outside, root / "linked folder")  # walks never follow folder links
    os.symlink(root / "a.jpg", root / "trip" / "link to a.jpg")  # file links are photos
    os.symlink(root / "gone.jpg", root / "dangling.jpg")


def test_scan_paths_agrees_with_the_full_walk(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _tree(root, outside)
    full = {f.path: f for f in scan_root(str(root))}
    assert {Path(p).name for p in full} == {
        "a.jpg",
        "b.JPG",
        "c.png",
        "link to a.jpg",
        "dangling.jpg",
    }
    cases = [
        [f"{root}/a.jpg"],
        [f"{root}/trip"],
        [f"{root}/trip/", f"{root}/trip/day 2/c.png"],  # a folder and a file inside it
        [f"{root}/trip/.cache/hidden.jpg", f"{root}/.hidden"],  # hidden: nothing
        [f"{root}/linked folder/f.jpg", f"{root}/linked folder"],  # through a link: nothing
        [f"{root}/missing.jpg", f"{root}/notes.txt", f"{root}/dangling.jpg"],
        [f"{root}/trip/b.JPG.part", f"{root}/trip/~$b.JPG"],  # temp and lock files: nothing
        [str(tmp_path)],  # above the root: all of it
        [str(outside / "f.jpg")],  # outside the root: nothing
    ]
    for paths in cases:
        want = {
            p: f
            for p, f in full.items()
            if any(is_under(p, q.rstrip("/")) or is_under(str(root), q) for q in paths)
        }
        got = list(scan_paths(str(root), paths))
        assert len(got) == len({f.path for f in got}), paths  # each file once
        assert {f.path: f for f in got} == want, paths


def test_one_rule_for_names_and_paths(tmp_path: Path) -> None:
    """The rule the watcher filters its events with, for paths that may no longer exist."""
    assert wanted_name("IMG_1.JPG") and wanted_name("album", is_dir=True)
    for name in (".a.jpg", "a.jpg.part", "a.jpg~", "a.jpg.crdownload", "~$a.jpg", "a.txt"):
        assert not wanted_name(name), name
    assert not wanted_name(".cache", is_dir=True)
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    os.symlink(root / "real", root / "link")
    r = str(root)
    assert is_wanted_path(f"{r}/real/a.jpg", r)
    assert is_wanted_path(f"{r}/deleted folder/a.jpg", r)  # gone: still ours to forget
    assert is_wanted_path(f"{r}/real", r, is_dir=True)
    assert not is_wanted_path(f"{r}/link/a.jpg", r)  # the walk never follows folder links
    assert not is_wanted_path(f"{r}/.trash/a.jpg", r)
    assert not is_wanted_path(f"{r}/real/a.jpg.part", r)
    assert not is_wanted_path(r, r, is_dir=True)
    assert not is_wanted_path(f"{tmp_path}/elsewhere.jpg", r)
