"""The traced-model cache (searchapp/model/traced.py) on the real random-weight MobileCLIP:
the cached towers give the model's vectors, a later process loads them without open_clip,
and a cache that does not match is never used."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.config import load_settings
from searchapp.errors import ModelCacheError
from searchapp.model import resolve_spec
from searchapp.model.traced import (
    IMAGE_FILE,
    META_FILE,
    TEXT_FILE,
    cache_folder,
    load_cached,
    save_towers,
)

TEXTS = ["a red kayak on a lake", "Straße, café & 東京", "IMG_2041.JPG"]
IMAGES = ["astronaut.jpg", "coffee.png", "rocket.jpg"]
DATA = Path(__file__).resolve().parent.parent / "data"

PROBE = r"""
import json, sys
from PIL import Image
from searchapp.config import load_settings
from searchapp.model import load_embedder
s = load_settings(data_dir=sys.argv[1], model_cache_dir=sys.argv[2], weights="random",
                  precision="fp32", device="cpu")
e = load_embedder(s, announce=False)
texts = e.encode_texts(json.loads(sys.argv[3]))
images = e.encode_images([Image.open(p).convert("RGB") for p in json.loads(sys.argv[4])])
print(json.dumps({"traced": e.traced, "dim": e.dim,
                  "imported": sorted(m for m in ("open_clip", "torchvision", "timm")
                                     if m in sys.modules),
                  "texts": texts.tolist(), "images": images.tolist()}))
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory, clip_embedder, model_cache_dir):  # noqa: ANN001, ANN201
    """A library whose model's towers are in a cache of this module's, and the folder a
    process first wrote them to. The CLI smoke test's ``index`` (a process that built the
    model) keeps them in the session's cache; when it ran first they are taken from there,
    so this checks another process's trace and the ~4 s trace is not paid twice, else they
    are traced here from the session's model."""
    base = tmp_path_factory.mktemp("traced")
    (base / "lib").mkdir(mode=0o700)
    settings = load_settings(
        data_dir=base / "lib", model_cache_dir=base / "cache", weights="random",
        precision="fp32", device="cpu",
    )  # fmt: skip
    spec = resolve_spec(settings)  # remembered in the library: the probe asks no open_clip
    folder = cache_folder(settings, spec, "cpu", "fp32")
    session = settings.with_overrides(model_cache_dir=model_cache_dir)
    written = cache_folder(session, spec, "cpu", "fp32")
    model, tokenizer = clip_embedder.model, clip_embedder.tokenizer
    try:  # the record is written last: with it there, the towers are whole
        link_files(written, folder)
    except OSError:  # not written (yet), or removed meanwhile: trace them here
        shutil.rmtree(folder, ignore_errors=True)
        written = folder
        assert save_towers(model, tokenizer, settings, spec, "cpu", "fp32")
    assert load_cached(settings, spec, "cpu", "fp32") is not None
    assert not save_towers(model, tokenizer, settings, spec, "cpu", "fp32")
    return settings, folder, written


def link_files(source: Path, target: Path) -> None:
    """``target`` as a folder of hard links to ``source``'s cached model (tests replace
    files, never edit them): the record first, so its absence fails before any link."""
    record = (source / META_FILE).read_bytes()
    target.mkdir(parents=True, mode=0o700)
    for name in (IMAGE_FILE, TEXT_FILE, META_FILE):
        os.link(source / name, target / name)
    if (target / META_FILE).read_bytes() != record:
        raise FileNotFoundError(f"{source} changed while it was linked")


@pytest.fixture()
def cached(tmp_path, traced):  # noqa: ANN001, ANN201
    """A test's own copy of that cache."""
    settings, folder, _ = traced
    settings = settings.with_overrides(model_cache_dir=tmp_path / "cache")
    copy = settings.model_cache_dir / folder.name
    link_files(folder, copy)
    return settings, copy


def replace_file(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def test_cached_towers_give_the_models_vectors_without_open_clip(traced, clip_embedder):
    settings, _folder, written = traced
    assert stat.S_IMODE(written.stat().st_mode) == 0o700
    for name in (IMAGE_FILE, TEXT_FILE, META_FILE):
        assert stat.S_IMODE((written / name).stat().st_mode) == 0o600
    paths = [str(DATA / name) for name in IMAGES]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(settings.data_dir), str(settings.model_cache_dir),
         json.dumps(TEXTS), json.dumps(paths)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["traced"] and out["imported"] == [] and out["dim"] == clip_embedder.dim
    want_texts = clip_embedder.encode_texts(TEXTS)
    want_images = clip_embedder.encode_images([Image.open(p).convert("RGB") for p in paths])
    assert np.abs(np.array(out["texts"]) - want_texts).max() < 1e-5
    assert np.abs(np.array(out["images"]) - want_images).max() < 1e-5
    # and the texts still tell apart: not one vector for everything
    assert float(want_texts[0] @ want_texts[1]) < 0.999


def test_a_cut_short_tower_or_a_changed_tokenizer_is_not_used(cached):
    settings, folder = cached
    spec = resolve_spec(settings)
    assert load_cached(settings, spec, "cpu", "fp32") is not None
    meta = json.loads((folder / META_FILE).read_text())
    tokens = meta["probes"]["a red kayak on a lake"]
    meta["probes"]["a red kayak on a lake"] = [tokens[0], tokens[1] + 1, *tokens[2:]]
    replace_file(folder / META_FILE, json.dumps(meta).encode())
    assert load_cached(settings, spec, "cpu", "fp32") is None  # the tokenizer no longer agrees
    meta["probes"]["a red kayak on a lake"] = tokens
    replace_file(folder / META_FILE, json.dumps(meta).encode())
    assert load_cached(settings, spec, "cpu", "fp32") is not None
    replace_file(folder / IMAGE_FILE, (folder / IMAGE_FILE).read_bytes()[:1000])
    assert load_cached(settings, spec, "cpu", "fp32") is None


def test_a_damaged_tower_is_removed_with_a_one_line_error(cached):
    settings, folder = cached
    size = (folder / TEXT_FILE).stat().st_size
    replace_file(folder / TEXT_FILE, b"\0" * size)  # same length: only reading it finds out
    network, _tokenizer, _dim = load_cached(settings, resolve_spec(settings), "cpu", "fp32")
    with pytest.raises(ModelCacheError) as err:
        network.encode_text(None)
    assert "run the command again" in str(err.value) and "\n" not in str(err.value)
    assert not folder.exists()


def test_the_cache_key_follows_everything_that_changes_the_numbers(tmp_path):
    base = load_settings(data_dir=tmp_path, model_cache_dir=tmp_path / "c", weights="random")
    spec = resolve_spec(base)
    folders = {cache_folder(base, spec, "cpu", "fp32"), cache_folder(base, spec, "cpu", "bf16")}
    other = resolve_spec(base.with_overrides(model="MobileCLIP-S1"))
    folders.add(cache_folder(base, other, "cpu", "fp32"))
    assert len(folders) == 3 and all(f.parent == tmp_path / "c" for f in folders)
    assert cache_folder(base.with_overrides(model_cache=False), spec, "cpu", "fp32") is None
    pixels = resolve_spec(base.with_overrides(encoder="pixels"))
    assert cache_folder(base, pixels, "cpu", "fp32") is None
    assert cache_folder(base, spec, "cuda", "fp16") is None  # GPU passes are not traced


def test_cached_towers_run_as_traced_in_the_calling_thread_only(tmp_path):  # noqa: ANN001
    """Each tower call runs without TorchScript's profiling executor (its first two calls
    cost ~1 s each); other threads keep their setting, and it is back after the call."""
    import threading

    import torch

    from searchapp.model.traced import TracedNetwork

    def optimizing() -> bool:
        return torch._C._get_graph_executor_optimize()

    seen = []

    def tower(_x: object) -> None:
        elsewhere = []
        other = threading.Thread(target=lambda: elsewhere.append(optimizing()))
        other.start()
        other.join()
        seen.append((optimizing(), *elsewhere))

    network = TracedNetwork(tmp_path)
    network._loaded = dict.fromkeys((IMAGE_FILE, TEXT_FILE), tower)
    network.encode_image(None)
    network.encode_text(None)
    assert seen == [(False, True), (False, True)] and optimizing()
