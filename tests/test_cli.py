"""The CLI end to end with --json: in process through its ``main`` with the pixel test
encoder, and as the real command in a subprocess for one smoke run on the real model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from tests.helpers import PIXELS_ENV, imported, run_cli


def run(data_dir, *args, check=True, real=False, env=None):  # noqa: ANN001, ANN002
    """The CLI with the pixel test encoder in process, or the real command with the
    random-weight MobileCLIP (``real``) in a subprocess."""
    if real:
        env = {**os.environ, **PIXELS_ENV, "SEARCHAPP_ENCODER": "clip", **(env or {})}
        cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data_dir), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    else:
        proc = run_cli(data_dir, *args, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_smoke_on_the_real_model(tmp_path, photos, model_cache_dir):
    """The one CLI run on the real (random-weight) MobileCLIP: index, then an image search that
    must find the resized copy, and a text search. The index run keeps the model's traced
    towers, so both searches load them without importing open_clip (model/traced.py; their
    vectors are checked against open_clip's in test_traced.py). Four photos: each costs
    ~0.5 s of CPU on the real model, and the other tests search the full sample set."""
    keep = {"cat_chelsea.png", "coffee.png", "rocket.jpg", "astronaut.jpg"}
    for extra in [p for p in photos.iterdir() if p.name not in keep]:
        extra.unlink()
    lib = tmp_path / "lib"
    out = run(lib, "index", str(photos), real=True)
    assert "added 4" in out.stdout and "random model weights" in out.stderr
    assert list(model_cache_dir.glob("*/meta.json"))
    query = tmp_path / "query.jpg"
    Image.open(photos / "cat_chelsea.png").convert("RGB").resize((300, 200)).save(query)
    found = run(lib, "search", "--image", str(query), "-k", "3", "--json", real=True)
    assert json.loads(found.stdout)[0]["path"].endswith("cat_chelsea.png")
    timed = {"PYTHONPROFILEIMPORTTIME": "1"}
    text = run(lib, "search", "a cat", "-k", "3", "--json", real=True, env=timed)
    assert len(json.loads(text.stdout)) == 3
    modules = imported(text.stderr)
    assert "torch" in modules and not modules & {"open_clip", "torchvision", "timm"}


def test_cli_index_search_status_roots(tmp_path, photos):
    lib = tmp_path / "lib"
    bad = photos / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = run(lib, "index", str(photos))
    assert "added 16" in out.stdout and "failed 1" in out.stdout
    assert "results carry no meaning" in out.stderr

    query = tmp_path / "query.jpg"
    Image.open(photos / "cat_chelsea.png").convert("RGB").resize((300, 200)).save(query)
    results = json.loads(run(lib, "search", "--image", str(query), "-k", "3", "--json").stdout)
    assert results[0]["path"].endswith("cat_chelsea.png")
    assert {"rank", "score", "path", "photo_id"} <= set(results[0])

    text = json.loads(run(lib, "search", "a cat", "-k", "5", "--json").stdout)
    assert len(text) == 5 and [r["rank"] for r in text] == [1, 2, 3, 4, 5]

    elsewhere = run(lib, "search", "a cat", "--folder", str(tmp_path / "elsewhere"), check=False)
    assert elsewhere.returncode == 2 and "is not in a photo folder" in elsewhere.stderr

    named = json.loads(run(lib, "search", "rocket.jpg", "-k", "3", "--json").stdout)
    assert named[0]["path"].endswith("rocket.jpg") and named[0]["score"] is None  # by name
    assert [r["rank"] for r in named] == [1, 2, 3] and named[1]["score"] is not None
    lines = run(lib, "search", "rocket.jpg", "-k", "9").stdout.splitlines()
    assert len({line.index("[") for line in lines}) == 1, lines  # one column, "name" or -0.01

    like = json.loads(run(lib, "search", "--like", str(results[0]["photo_id"]), "--json").stdout)
    assert results[0]["photo_id"] not in [r["photo_id"] for r in like]
    failed = run(lib, "search", "--like", str(bad), check=False)  # said "index it first"
    assert failed.returncode == 1 and failed.stderr.strip() == (
        f"searchapp: {bad} could not be indexed (not an image, or an image format searchapp "
        "cannot read), so it has nothing to search by."
    )
    for query, said in (
        ("photo:999", "no photo with id 999"),  # said "photo 999 has no vector"
        ("a + 99999999999999999999:b", "a weight goes up to 100"),  # NaN scores, a warning
    ):
        proc = run(lib, "search", query, check=False)
        assert proc.returncode == 1 and said in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr

    status = json.loads(run(lib, "status", "--json").stdout)
    assert status["photos"] == 16 and status["failed"] == 1
    assert status["pending"] == {"to_index": 0, "to_remove": 0, "to_embed": 0}
    shutil.copy(photos / "coffee.png", photos / "coffee copy.png")
    (photos / "rocket.jpg").unlink()
    status = json.loads(run(lib, "status", "--json").stdout)  # by stat, nothing read
    assert status["pending"] == {"to_index": 1, "to_remove": 1, "to_embed": 0}
    assert status["photos"] == 16
    assert "1 new or changed to index, 1 gone to remove" in run(lib, "status").stdout
    assert status["failures"][0]["path"].endswith("broken.jpg")
    assert status["weights"] == "random" and status["model"] == "MobileCLIP-S2"

    run(lib, "roots", "remove", str(photos))
    assert json.loads(run(lib, "status", "--json").stdout)["photos"] == 0
    again = run(lib, "roots", "remove", str(photos), check=False)  # the command for this library
    assert again.stderr.strip().endswith(f"see: searchapp --data-dir {lib} roots list"), again


def test_cli_errors_are_one_line(tmp_path):
    proc = run(tmp_path / "lib", "search", "--like", "99", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("searchapp: ") and proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr
    for usage in (["search", ""], ["search", "x", "--image", "y.jpg"], ["search", "x", "-k", "0"]):
        proc = run(tmp_path / "lib", *usage, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("searchapp: "), usage
    assert run(tmp_path / "lib", "bogus", check=False).returncode == 2
    early = run(tmp_path / "lib", "--bogus", "status", check=False)  # blamed "status"
    assert early.returncode == 2 and "searchapp: error: unrecognized arguments: --bogus" in (
        early.stderr
    )
    extra = run(tmp_path / "lib", "roots", "list", "photos", check=False)  # was ignored
    assert extra.returncode == 2 and "roots list takes no PATH" in extra.stderr
    none = run(tmp_path / "lib", "roots", check=False)  # "list" by default; said nothing
    # the commands a message suggests name this library (they said "searchapp index PATH")
    assert none.returncode == 0 and none.stderr == (
        f"no photo folders yet; add one with: searchapp --data-dir {tmp_path}/lib index PATH\n"
    )
    empty = run(tmp_path / "empty", "search", "x", check=False)
    assert empty.stderr.endswith(f"first: searchapp --data-dir {tmp_path}/empty index PATH\n")
    (tmp_path / "photos").mkdir()
    added = run(tmp_path / "lib", "roots", "add", str(tmp_path / "photos")).stdout
    assert added.endswith(f"; run: searchapp --data-dir {tmp_path}/lib index\n"), added
    late = run(tmp_path / "lib", "status", "--data-dir", "x", check=False)
    assert late.returncode == 2 and "--data-dir is a global option: put it before" in late.stderr
    a_file = tmp_path / "a file"
    a_file.write_text("not a folder")
    for data_dir, said in ((a_file, "is a file"), (a_file / "lib", f"cannot be made: {a_file}")):
        proc = run(data_dir, "status", check=False)  # printed a report, exit 0
        assert proc.returncode == 1 and said in proc.stderr and proc.stdout == "", proc.stderr
    for port in ("99999", "-1", "abc"):  # bind() raised OverflowError for the first two
        proc = run(tmp_path / "lib", "ui", "--port", port, check=False)
        assert proc.returncode == 2 and "give a number from 1 to 65535" in proc.stderr, port
        assert "Traceback" not in proc.stderr


def test_names_join_a_watcher_s_answer_from_the_store_alone(tmp_path, photos, pixel_embedder):
    """The watcher answers by meaning only; the CLI adds the name matches itself (a read of
    the store, no model), first, without repeating them, ``-k`` in all."""
    from argparse import Namespace

    from searchapp.cli.search import _with_names
    from searchapp.config import ENCODER_PIXELS, load_settings
    from searchapp.library import Library
    from tests.helpers import index_once

    settings = load_settings(data_dir=tmp_path / "lib", encoder=ENCODER_PIXELS, weights="random")
    index_once(settings, pixel_embedder, photos)
    with Library(settings, pixel_embedder) as library:
        rocket = library.resolve_photo(str(photos / "rocket.jpg"))
        answer = [r.as_dict() for r in library.search_text("rocket.jpg", 16)]  # every photo
    rows = _with_names(settings, Namespace(text="rocket.jpg", k=3), None, answer)
    others = [r["photo_id"] for r in answer if r["photo_id"] != rocket][:2]
    assert [r["photo_id"] for r in rows] == [rocket, *others] and rows[0]["score"] is None
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert _with_names(settings, Namespace(text="a rocket", k=3), None, answer) == answer


def test_bad_global_options_are_usage_errors_of_the_command_given(capsys):
    """Exit 2 with the usage, as the README says (a bad --device, --precision or
    --batch-size exited 1); an unknown option shows its own command's usage."""
    from searchapp.cli.parser import build_parser

    for argv, said in (
        (["--device", "tpu", "status"], "'tpu' is not a device; use auto, cpu, cuda, cuda:N"),
        (["--batch-size", "0", "status"], "'0' is not a batch size; give 1 to 1024"),
        (["--precision", "fp8", "status"], "invalid choice: 'fp8'"),
        (["status", "--bogus"], "searchapp status: error: unrecognized arguments: --bogus"),
    ):
        with pytest.raises(SystemExit) as stopped:
            build_parser().parse_args(argv)
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and said in err, err
    assert err.startswith("usage: searchapp status [-h] [--json]"), err
    assert build_parser().parse_args(["--device", "cuda:1", "status"]).device == "cuda:1"


def test_a_missing_weights_file_is_said_before_open_clip_loads(tmp_path):
    """(The default weights missing offline: test_model.py, where open_clip is loaded.)"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env.pop("SEARCHAPP_WEIGHTS", None)
    env.pop("SEARCHAPP_ENCODER", None)
    d = tmp_path / "p"
    d.mkdir()
    # said before open_clip loads (it took ~7 s)
    missing = tmp_path / "nope.safetensors"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "searchapp.cli", "--data-dir",
         str(tmp_path / "l"), "--weights", str(missing), "index", str(d)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and f"weights file {missing} not found" in proc.stderr
    modules = imported(proc.stderr)
    assert "open_clip" not in modules and "torch" not in modules


def test_the_readme_names_every_option_and_environment_variable() -> None:
    """The README's command-line section and settings table keep up with the code: every
    long option of every command, and every ``SEARCHAPP_*`` variable a setting reads."""
    import argparse
    import re
    from pathlib import Path

    from searchapp.cli.parser import build_parser
    from searchapp.config import _ENV

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    parser = build_parser()
    parsers = [parser] + [
        sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for sub in action.choices.values()
    ]
    options = {
        flag
        for p in parsers
        for action in p._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }
    assert len(options) > 15
    named = {o for o in options if re.search(re.escape(o) + r"(?![\w-])", readme)}
    assert sorted(options - named) == []
    assert sorted(v for v in _ENV.values() if v not in readme and v != "SEARCHAPP_ENCODER") == []
