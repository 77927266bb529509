"""The fast path (draft decode, reparameterized, channels_last, bf16 where the CPU has it)
agrees with the fp32 open_clip reference (its own preprocess, eager encode_image) on the
same files and the same weights."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from searchapp.config import load_settings
from searchapp.model import ClipEmbedder, device_and_precision, load_embedder
from searchapp.store import Store
from tests.helpers import index_once

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from reference import ReferenceEncoder  # noqa: E402
from synth_library import write_photo  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample photos plus two 12 MP phone-like JPEGs, one stored sideways (EXIF 6)."""
    folder = tmp_path_factory.mktemp("fidelity") / "photos"
    shutil.copytree(DATA, folder, ignore=shutil.ignore_patterns("*.md"))
    for seed in (0, 3):  # seed 3 carries orientation 6
        write_photo(folder / f"phone_{seed}.jpg", seed)
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> ReferenceEncoder:
    folder = tmp_path_factory.mktemp("reference")
    return ReferenceEncoder(load_settings(data_dir=folder, weights="random", precision="fp32"))


def fast_and_reference(
    library: Path, tmp_path: Path, reference: ReferenceEncoder
) -> tuple[np.ndarray, np.ndarray]:
    settings = load_settings(data_dir=tmp_path / "lib", weights="random", precision="auto")
    # auto as this machine resolves it: where that is fp32, load_embedder's process cache
    # hands back the session's fp32 model (clip_embedder) instead of building it again
    settings = settings.with_overrides(precision=device_and_precision(settings)[1])
    embedder = load_embedder(settings)
    stats = index_once(settings, embedder, library)
    paths = sorted(p for p in library.iterdir() if p.is_file())
    assert stats.added == len(paths) and stats.failed == 0
    store = Store(settings.db_path, readonly=True)
    ids, vecs = store.load_vectors(embedder.model_id)
    photos = store.get_photos(ids.tolist())
    by_path = {photos[int(i)].path: v for i, v in zip(ids, vecs, strict=True)}
    store.close()
    fast = np.stack([by_path[str(p.resolve())] for p in paths])
    upright = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in paths]
    ref = np.concatenate(
        [reference.encode_images(upright[i : i + 8]) for i in range(0, len(upright), 8)]
    )
    return fast, ref


def top_neighbours(x: np.ndarray, k: int) -> list[set[int]]:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return [set(row.tolist()) for row in np.argsort(-sims, axis=1)[:, :k]]


def test_fast_path_matches_the_fp32_open_clip_reference(
    library: Path, tmp_path: Path, reference: ReferenceEncoder, clip_embedder: ClipEmbedder
) -> None:
    fast, ref = fast_and_reference(library, tmp_path, reference)
    cosine = (fast * ref).sum(axis=1)
    assert cosine.min() >= 0.995, cosine
    agreement = [
        len(a & b) / 10
        for a, b in zip(top_neighbours(fast, 10), top_neighbours(ref, 10), strict=True)
    ]
    assert np.mean(agreement) >= 0.9, agreement


def test_fp32_precision_is_the_reference_path(
    clip_embedder: ClipEmbedder, reference: ReferenceEncoder
) -> None:
    """``--precision fp32`` (the suite's shared embedder) runs no bf16 and matches open_clip
    to float rounding."""
    assert clip_embedder.precision == "fp32"
    images = [Image.open(DATA / n).convert("RGB") for n in ("astronaut.jpg", "coffee.png")]
    ours = clip_embedder.encode_images(images)
    ref = reference.encode_images(images)
    assert (ours * ref).sum(axis=1).min() > 0.99999


def test_checkpoint_built_without_init_gives_the_same_network(
    tmp_path: Path, reference: ReferenceEncoder
) -> None:
    """A checkpoint is loaded into a network built on the meta device (no random init):
    every tensor comes from the file, so its outputs equal the network that was saved
    (the reference's, built by ``create_network`` from random weights)."""
    import torch
    from safetensors.torch import save_file

    from searchapp.errors import WeightsUnavailableError
    from searchapp.model import create_network, resolve_spec

    base = dict(data_dir=tmp_path / "lib", precision="fp32")
    saved = reference.model
    state = {k: v.contiguous() for k, v in saved.state_dict().items()}
    save_file(state, tmp_path / "full.safetensors")
    loaded = create_network(
        resolve_spec(load_settings(weights=str(tmp_path / "full.safetensors"), **base))
    )
    assert not any(p.is_meta for p in loaded.parameters())
    tokens = torch.randint(1, 1000, (2, 77))
    pixels = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        assert torch.equal(saved.encode_text(tokens), loaded.encode_text(tokens))
        # same tensors; conv kernels may pick another summation order for another layout
        torch.testing.assert_close(
            saved.encode_image(pixels), loaded.encode_image(pixels), rtol=0, atol=1e-5
        )
    del state[next(iter(state))]
    save_file(state, tmp_path / "short.safetensors")
    short = resolve_spec(load_settings(weights=str(tmp_path / "short.safetensors"), **base))
    with pytest.raises(WeightsUnavailableError, match="cannot load"):
        create_network(short)


def test_text_tower_gives_unit_vectors_that_tell_texts_apart(
    clip_embedder: ClipEmbedder, reference: ReferenceEncoder
) -> None:
    """Text queries on the real network (the page and the CLI search by words with it):
    unit length, the same text twice gives the same vector, open_clip agrees."""
    ours = clip_embedder.encode_texts(["a cat on a sofa", "a red kayak", "a cat on a sofa"])
    assert ours.shape == (3, clip_embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(ours[0], ours[2])
    assert float(ours[0] @ ours[1]) < 0.9999
    ref = reference.encode_texts(["a cat on a sofa", "a red kayak"])
    assert (ours[:2] * ref).sum(axis=1).min() > 0.99999
