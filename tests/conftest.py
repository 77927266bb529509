"""Shared fixtures: the test encoders, temp libraries on disk.

Two encoders (tests/README.md says which tests use which, and why):

- ``embedder`` / ``settings``: the pixel test encoder (``SEARCHAPP_ENCODER=pixels``), for
  every test where the model's numbers do not matter (pipeline, watcher, crash trials,
  concurrency, search plumbing, UI logic). Deterministic, no torch, identical and resized
  copies still match. Subprocesses get it through ``helpers.PIXELS_ENV``.
- ``clip_embedder`` / ``clip_settings``: the real MobileCLIP-S2 architecture with random
  weights (``--weights random``), for the model, fidelity, one CLI smoke test, the traced
  towers, weight shipping and one Ray run. Weights cannot be downloaded on the build
  machines; HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from searchapp.config import ENCODER_CLIP, ENCODER_PIXELS, Settings, load_settings
from searchapp.model import ClipEmbedder, PixelEncoder, load_embedder

DATA = Path(__file__).resolve().parent.parent / "data"
pytest_plugins = ("tests.browser",)  # Chromium and Playwright for the browser tests

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# tolerances were measured on the CPU; ``auto`` would put the model on a GPU where there is one
os.environ.setdefault("SEARCHAPP_DEVICE", "cpu")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs a worker per core and one more: a worker's torch (and its
    # subprocesses') on more threads only waits for another worker's core, and OpenMP
    # spins while it waits (one thread: the suite 234 -> 213 s, a minute less CPU)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Files whose tests load torch and open_clip in this process: make test (--dist loadfile)
# hands them to one worker as one unit, so the imports and the session's model
# (clip_embedder) are paid once, not on both workers.
IN_PROCESS_MODEL = (
    "test_fidelity.py",
    "test_traced.py",
    "test_devices.py",
    "test_weights_shipping.py",
    "test_model.py",
    "test_security.py",
    "test_search.py",
)
# Then the longest files first: workers take the units in collection order
# (--no-loadscope-reorder), so the short ones at the end even out the workers' ends.
LONGEST_FIRST = (
    "test_cli.py",
    "test_ui_browser.py",
    "test_ui_browser_runs.py",
    "test_model_host.py",
    "test_crash.py",
    "test_watcher.py",
    "test_concurrency.py",
    "test_watcher_daemon.py",
    "test_ui_lifetime.py",
    "test_untrusted_files.py",
    "test_ui.py",
    "test_engine.py",
    "test_packaging.py",
    "test_ui_guard_browser.py",
    "test_folder_access.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(IN_PROCESS_MODEL + LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown with -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """--dist loadfile with the files of IN_PROCESS_MODEL as one unit. (xdist's own
    loadgroup marks do not reach its scheduler under pytest 9.2: it renames ``_nodeid``.)"""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModelFilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "model" if Path(path).name in IN_PROCESS_MODEL else path

    return ModelFilesTogether(config, log)


@pytest.fixture(scope="session", autouse=True)
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Traced towers (model/traced.py) go to one folder of this test session, shared by
    every worker and subprocess, never to the user's cache."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder above each worker's own
    folder = base / "model-cache"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.environ["SEARCHAPP_MODEL_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def clip_embedder(tmp_path_factory: pytest.TempPathFactory) -> ClipEmbedder:
    """Random-init MobileCLIP-S2 in fp32, loaded once per session (~7 s of CPU with imports)."""
    # model_cache off: this one is always built by open_clip (the traced copy is tested
    # against it in test_traced.py). Its own data folder: the spec is remembered there.
    settings = load_settings(
        encoder=ENCODER_CLIP, weights="random", precision="fp32",
        data_dir=tmp_path_factory.mktemp("clip-model"), model_cache=False,
    )  # fmt: skip
    return load_embedder(settings)


@pytest.fixture(scope="session")
def pixel_embedder(tmp_path_factory: pytest.TempPathFactory) -> PixelEncoder:
    """The deterministic test encoder (``SEARCHAPP_ENCODER=pixels``): no torch, no weights;
    identical and resized copies match, different photos differ, the numbers mean nothing."""
    folder = tmp_path_factory.mktemp("pixel-model")
    return load_embedder(load_settings(encoder=ENCODER_PIXELS, data_dir=folder))


@pytest.fixture(scope="session")
def embedder(pixel_embedder: PixelEncoder) -> PixelEncoder:
    """The encoder of tests whose right answer does not depend on a model: the pixel one."""
    return pixel_embedder


def library_settings(tmp_path: Path, encoder: str) -> Settings:
    """A fresh library in ``tmp_path`` (``weights`` stays random, as the CLI tests')."""
    return load_settings(
        data_dir=tmp_path / "lib", encoder=encoder, weights="random", precision="fp32", batch_size=8
    )


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """A fresh library for the pixel encoder."""
    return library_settings(tmp_path, ENCODER_PIXELS)


@pytest.fixture()
def clip_settings(tmp_path: Path) -> Settings:
    """A fresh library for the random-weight MobileCLIP (``clip_embedder``)."""
    return library_settings(tmp_path, ENCODER_CLIP)


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """A private copy of the sample photos."""
    target = tmp_path / "photos"
    shutil.copytree(DATA, target, ignore=shutil.ignore_patterns("*.md"))
    return target
