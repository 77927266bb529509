"""Shared fixtures: one random-init MobileCLIP-S2 per session, temp libraries on disk.

Model weights cannot be downloaded on the build machines, so the tests use the real
architecture with random weights (``--weights random``); every test checks something
whose right answer does not depend on trained weights.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from searchapp.config import Settings, load_settings
from searchapp.model import ClipEmbedder, PixelEncoder, load_embedder

DATA = Path(__file__).resolve().parent.parent / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# tolerances were measured on the CPU; ``auto`` would put the model on a GPU where there is one
os.environ.setdefault("SEARCHAPP_DEVICE", "cpu")


@pytest.fixture(scope="session")
def embedder() -> ClipEmbedder:
    return load_embedder(load_settings(weights="random", precision="fp32", data_dir="/tmp"))


@pytest.fixture(scope="session")
def pixel_embedder() -> PixelEncoder:
    """The deterministic test encoder (``SEARCHAPP_ENCODER=pixels``): no torch, no weights;
    identical and resized copies match, different photos differ, the numbers mean nothing."""
    return load_embedder(load_settings(encoder="pixels", data_dir="/tmp"))


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "lib", weights="random", precision="fp32", batch_size=8
    )


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """A private copy of the sample photos."""
    target = tmp_path / "photos"
    shutil.copytree(DATA, target, ignore=shutil.ignore_patterns("*.md"))
    return target
