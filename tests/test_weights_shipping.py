"""What ``--ray`` sends a worker for an ``hf-hub:``/``local-dir:`` model: the model folder's
files, read once on the driver, rebuilt on the worker and loaded as ``local-dir:`` there.

The worker class runs in this process (it imports no Ray; tests/test_ray.py runs it on a
real cluster). The folder holds the seeded random MobileCLIP-S2, so the worker's vectors
must equal the session model's (``clip_embedder``: the same weights, built directly).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.config import load_settings
from searchapp.errors import WeightsUnavailableError
from searchapp.indexer.ray_worker import EmbedWorker
from searchapp.model import create_network, resolve_spec
from searchapp.model.hub import CONFIG_FILE, model_folder_files

DATA = Path(__file__).resolve().parent.parent / "data"


def write_model_folder(folder: Path) -> None:
    """The seeded random network as an open_clip model folder (config + safetensors)."""
    import open_clip
    from safetensors.torch import save_file

    spec = resolve_spec(load_settings(data_dir=folder, weights="random"))
    state = create_network(spec, announce=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "open_clip_model.safetensors")
    pre = spec.preprocess
    config = {
        "model_cfg": open_clip.get_model_config(spec.model),
        "preprocess_cfg": {"mean": pre.mean, "std": pre.std, "size": pre.image_size,
                           "interpolation": pre.interpolation, "resize_mode": pre.resize_mode},
    }  # fmt: skip
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def test_a_local_dir_model_is_shipped_as_its_files_and_rebuilt_on_the_worker(
    tmp_path, clip_embedder
):
    folder = tmp_path / "my-model"
    folder.mkdir()
    write_model_folder(folder)
    (folder / "README.md").write_text("not shipped")
    settings = load_settings(
        data_dir=tmp_path / "lib", weights=f"local-dir:{folder}", precision="fp32",
        device="cpu", model_cache=False,
    )  # fmt: skip
    spec = resolve_spec(settings)
    shipped = model_folder_files(spec.weights)
    assert sorted(shipped) == [CONFIG_FILE, "open_clip_model.safetensors"]
    folder.rename(tmp_path / "gone")  # the worker reads only what was shipped

    worker = EmbedWorker(settings, spec, cpus=1)
    assert worker.load(shipped) == f"{spec.model_id} on cpu in fp32"
    texts = ["a red kayak", "a dog on a beach"]
    images = [Image.open(DATA / name).convert("RGB") for name in ("rocket.jpg", "coffee.png")]
    encoder = worker._encoder
    assert np.abs(encoder.encode_texts(texts) - clip_embedder.encode_texts(texts)).max() < 1e-5
    got, want = encoder.encode_images(images), clip_embedder.encode_images(images)
    assert np.abs(got - want).max() < 1e-4


def test_a_model_folder_that_cannot_be_read_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsUnavailableError) as err:
        model_folder_files(f"local-dir:{empty}")
    message = str(err.value)
    assert "\n" not in message and CONFIG_FILE in message and "local-dir:" in message
