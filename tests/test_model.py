"""The model package: the spec is resolved once, unknown names fail in one line, importing
costs no torch, and the pixel test encoder behaves like a model where tests need it to."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.config import load_settings
from searchapp.errors import ConfigError, UnknownModelError, WeightsUnavailableError
from searchapp.model import (
    PIXELS_MODEL_ID,
    LazyEmbedder,
    PixelEncoder,
    load_embedder,
    model_id_for,
    resolve_spec,
)
from tests.conftest import DATA
from tests.helpers import index_once, run_cli, service

REPO = Path(__file__).resolve().parent.parent
NAMES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".jpg", ".png"))


def _reencoded(image: Image.Image, scale: float) -> Image.Image:
    """A resized JPEG copy, as a phone or a chat app would make it."""
    small = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=80)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


# ------------------------------------------------------------------ pixel encoder


def test_pixel_copies_match_and_different_photos_differ(pixel_embedder: PixelEncoder) -> None:
    images = [Image.open(DATA / name).convert("RGB") for name in NAMES]
    vecs = pixel_embedder.encode_images(images)
    assert vecs.shape == (len(NAMES), 512) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    again = pixel_embedder.encode_images(images[:3])
    assert np.array_equal(again, vecs[:3])  # deterministic
    for scale in (0.5, 0.8, 1.5):
        copies = pixel_embedder.encode_images([_reencoded(im, scale) for im in images])
        assert (copies * vecs).sum(axis=1).min() > 0.99, scale
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -1.0)
    assert sims.max() < 0.6, NAMES[int(sims.argmax()) // len(NAMES)]


def test_pixel_flat_colours_differ(pixel_embedder: PixelEncoder) -> None:
    colours = [(0, 0, 0), (40, 40, 40), (128, 128, 128), (250, 250, 250), (10, 200, 30)]
    vecs = pixel_embedder.encode_images([Image.new("RGB", (90, 70), c) for c in colours])
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -1.0)
    assert sims.max() < 0.6


def test_pixel_texts_are_deterministic_and_distinct(pixel_embedder: PixelEncoder) -> None:
    a, b, a2 = pixel_embedder.encode_texts(["a cat", "a dog", "a cat"])
    assert np.array_equal(a, a2) and abs(float(a @ b)) < 0.3
    assert pixel_embedder.encode_texts([]).shape == (0, 512)
    assert pixel_embedder.encode_images([]).shape == (0, 512)


def test_pixel_encoder_has_its_own_model_id(tmp_path: Path) -> None:
    pixels = load_settings(data_dir=tmp_path, encoder="pixels", weights="random")
    encoder = load_embedder(pixels)
    assert isinstance(encoder, PixelEncoder) and encoder.model_id == PIXELS_MODEL_ID
    assert model_id_for(pixels) == PIXELS_MODEL_ID
    clip = load_settings(data_dir=tmp_path, weights="random")
    assert model_id_for(clip) == "MobileCLIP-S2/random-seed0"
    lazy = LazyEmbedder(pixels)
    assert (lazy.model_id, lazy.dim, lazy.device) == (PIXELS_MODEL_ID, 512, "cpu")
    assert lazy.loaded() is encoder


def test_encoder_setting_is_validated_and_read_from_the_environment(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="encoder 'bogus' is unknown"):
        load_settings(encoder="bogus")
    monkeypatch.setenv("SEARCHAPP_ENCODER", "pixels")
    assert load_settings().encoder == "pixels"
    assert load_settings(encoder="clip").encoder == "clip"  # a flag beats the environment


def test_pixel_encoder_indexes_and_finds_a_resized_copy(
    tmp_path: Path, photos: Path, pixel_embedder: PixelEncoder
) -> None:
    settings = load_settings(data_dir=tmp_path / "lib", encoder="pixels", batch_size=8)
    stats = index_once(settings, pixel_embedder, photos)
    assert (stats.added, stats.failed) == (16, 0)
    svc = service(settings, pixel_embedder)
    try:
        for name in ("coffee.png", "cat_chelsea.png", "rocket.jpg"):
            query = tmp_path / f"q-{name}.jpg"
            _reencoded(Image.open(photos / name).convert("RGB"), 0.6).save(query)
            assert Path(svc.search_image(query, k=3)[0].path).name == name
    finally:
        svc.close()


def test_pixel_encoder_in_a_subprocess_imports_no_torch(tmp_path: Path) -> None:
    """The CLI indexes and searches with SEARCHAPP_ENCODER=pixels, and never loads torch."""
    folder = tmp_path / "photos"
    shutil.copytree(DATA, folder, ignore=shutil.ignore_patterns("*.md"))
    query = tmp_path / "query.jpg"
    _reencoded(Image.open(folder / "astronaut.jpg").convert("RGB"), 0.5).save(query)
    script = (
        "import sys\n"
        "from searchapp.cli import main\n"
        "lib = sys.argv[1]\n"
        "assert main(['--data-dir', lib, 'index', sys.argv[2]]) == 0\n"
        "assert main(['--data-dir', lib, 'search', '--image', sys.argv[3], '--json']) == 0\n"
        "assert main(['--data-dir', lib, 'status', '--json']) == 0\n"
        "print(json.dumps({'torch': 'torch' in sys.modules}))\n"
    )
    env = dict(os.environ, SEARCHAPP_ENCODER="pixels", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", "import json\n" + script, str(tmp_path / "lib"), str(folder),
         str(query)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "test encoder" in proc.stderr and "results carry no meaning" in proc.stderr
    out = proc.stdout
    results, _ = json.JSONDecoder().raw_decode(out[out.index("[") :])
    assert results[0]["path"].endswith("astronaut.jpg")
    assert f'"model_id": "{PIXELS_MODEL_ID}"' in out
    assert json.loads(out.strip().splitlines()[-1]) == {"torch": False}


# ------------------------------------------------------------------ spec


def test_importing_the_model_package_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import searchapp.model, searchapp.model.spec\n"
        "from searchapp.config import load_settings\n"
        "from searchapp.model import model_id_for\n"
        "model_id_for(load_settings(encoder='pixels', data_dir='/tmp'))\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'timm') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_checkpoint_file_is_hashed_once_per_load(tmp_path: Path, monkeypatch) -> None:
    from searchapp.model import encoder, spec

    hashed: list[Path] = []
    real_hash = spec._hash_file
    monkeypatch.setattr(spec, "_hash_file", lambda path: hashed.append(path) or real_hash(path))
    built = []

    def no_network(model_spec, *, announce):  # noqa: ANN001, ANN202 - stands in for open_clip
        built.append(model_spec)
        raise WeightsUnavailableError("stop before building")

    monkeypatch.setattr(encoder, "create_network", no_network)
    ckpt = tmp_path / "weights.safetensors"
    ckpt.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    settings = load_settings(data_dir=tmp_path / "lib", weights=str(ckpt), precision="fp32")

    lazy = LazyEmbedder(settings)
    assert lazy.model_id.startswith("MobileCLIP-S2/file-")
    assert lazy.spec.weights == str(ckpt.resolve()) and lazy.spec.weights_kind == "file"
    with pytest.raises(WeightsUnavailableError, match="stop before building"):
        lazy.loaded()
    assert built == [lazy.spec]  # the load got the spec already resolved
    assert model_id_for(settings) == lazy.model_id
    assert hashed == [ckpt.resolve()]

    ckpt.write_bytes(b"other bytes, another checkpoint")
    assert model_id_for(settings) != lazy.model_id
    assert len(hashed) == 2


def test_unknown_model_is_one_line_from_every_entry(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, model="MobileCLIP-XXL", weights="random")
    messages = set()
    for entry in (resolve_spec, model_id_for, LazyEmbedder, load_embedder):
        with pytest.raises(UnknownModelError) as info:
            entry(settings)
        messages.add(str(info.value))
    assert len(messages) == 1
    (message,) = messages
    assert "\n" not in message and "'MobileCLIP-XXL'" in message and "MobileCLIP-S2" in message


def test_missing_default_weights_say_how_to_get_them(tmp_path: Path, monkeypatch) -> None:
    """The default weights, offline and not in the hub cache (an empty one here): the CLI
    says how to get them (``--weights``), no traceback, exit 1. In this worker's process,
    where open_clip is loaded already (a new interpreter spent ~8 s of CPU importing it)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    (tmp_path / "p").mkdir()
    default = {"SEARCHAPP_ENCODER": "", "SEARCHAPP_WEIGHTS": "", "HF_HUB_OFFLINE": "1"}
    out = run_cli(tmp_path / "lib", "index", str(tmp_path / "p"), env=default)
    assert out.returncode == 1, out.stderr
    assert "--weights" in out.stderr and "not in the Hugging Face cache" in out.stderr
    assert "Traceback" not in out.stderr

    # an hf-hub: model likewise, at once (the hub client retried for ~30 s, warning as it
    # went, and its message was cut off mid-sentence)
    hub = run_cli(tmp_path / "lib", "--weights", "hf-hub:someone/nothing", "index",
                  str(tmp_path / "p"), env=default)  # fmt: skip
    assert hub.returncode == 1, hub.stderr
    assert hub.stderr.strip() == (
        "searchapp: the model hf-hub:someone/nothing is not in the Hugging Face cache and the "
        "hub cannot be reached. Connect to the internet once (it downloads to the hub cache and "
        "works offline after), or pass --weights local-dir:FOLDER to a downloaded copy, or "
        "--weights random to try the app without meaningful results."
    )
    bad = run_cli(tmp_path / "lib", "--weights", "hf-hub:someone/a/b", "index",
                  str(tmp_path / "p"), env=default)  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert "does not name a Hugging Face repository" in bad.stderr


def _python(code: str, data: Path) -> list[str]:
    """The words ``code`` prints in a fresh interpreter (the real model's settings)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("SEARCHAPP_ENCODER", None)
    return subprocess.run([sys.executable, "-c", code, str(data)], env=env, capture_output=True,
                          text=True, check=True).stdout.split()  # fmt: skip


def test_spec_is_remembered_so_the_next_process_imports_no_open_clip(tmp_path: Path) -> None:
    data = tmp_path / "lib"
    data.mkdir()
    settings = load_settings(data_dir=data, weights="random")
    first = resolve_spec(settings)  # asks open_clip, then remembers it
    assert (data / "model-spec.json").stat().st_mode & 0o777 == 0o600
    code = (
        "import sys; from searchapp.config import load_settings\n"
        "from searchapp.model import resolve_spec\n"
        "s = resolve_spec(load_settings(data_dir=sys.argv[1], weights='random'))\n"
        "print(s.model_id, s.dim, s.preprocess.image_size, 'open_clip' in sys.modules,"
        " 'torch' in sys.modules)\n"
    )
    out = _python(code, data)
    assert out == [first.model_id, str(first.dim), str(first.preprocess.image_size), "False",
                   "False"]  # fmt: skip
    new_library = tmp_path / "new"  # has no spec yet: the user's model cache answers
    new_library.mkdir()
    again = _python(code, new_library)
    assert again == out and (new_library / "model-spec.json").is_file()
    (data / "model-spec.json").write_text("{not json")  # damaged: resolved again, rewritten
    assert resolve_spec(settings) == first
    assert json.loads((data / "model-spec.json").read_text())


def test_a_ray_driver_picks_no_device_and_imports_no_torch(tmp_path: Path) -> None:
    """A ``--ray`` run's driver embeds nothing (its workers choose their own device and
    precision), so its stand-in encoder skips that choice and torch's import; a local
    one checks the device at once, which asks torch unless no GPU can be reached and the
    CPU has no native bf16 (``model/device.py``)."""
    from searchapp.model.device import cpu_has_native_bf16, device_and_precision, no_gpu_reachable

    data = tmp_path / "lib"
    data.mkdir()
    resolve_spec(load_settings(data_dir=data, weights="random"))  # remembered: no open_clip
    code = (
        "import sys; from searchapp.config import load_settings\n"
        "from searchapp.model import LazyEmbedder\n"
        "s = load_settings(data_dir=sys.argv[1], weights='random', device='auto',"
        " precision='auto')\n"
        "e = LazyEmbedder(s, embeds_here=False)\n"
        "print(e.device, e.precision, 'torch' in sys.modules)\n"
        "local = LazyEmbedder(s)\n"
        "print(local.device, local.precision, 'torch' in sys.modules)\n"
    )
    asks_torch = not no_gpu_reachable() or cpu_has_native_bf16()
    out = _python(code, data)
    assert out[:3] == ["cpu", "fp32", "False"] and out[5] == str(asks_torch)
    assert out[3:5] == list(device_and_precision(load_settings(data_dir=data, weights="random")))
