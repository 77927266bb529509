"""GPU and Mac users, checked on the CPU: device choice, precision, serialized passes, OOM.

No GPU is lent to the build machines, so the machine's facts are injected
(:class:`DeviceFacts`, or torch's own query functions patched) and out-of-memory errors
are raised by a model that refuses batches above a size, around the real (CPU) network.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import searchapp.model.device as device_module
import searchapp.model.encoder as encoder_module
from searchapp import cli
from searchapp.config import Settings, load_settings
from searchapp.errors import ConfigError, DeviceError
from searchapp.indexer.pipeline import model_lanes
from searchapp.model import (
    RANDOM_WARNING,
    ClipEmbedder,
    DeviceFacts,
    ForwardGuard,
    load_embedder,
    pick_device,
    pick_precision,
    read_device_facts,
)
from searchapp.model.device import gpu_runs_build
from searchapp.store import Store
from tests.conftest import DATA
from tests.helpers import imported, index_once

pytestmark = pytest.mark.timeout(300)

ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")  # a CUDA 13 build's list
H100 = DeviceFacts(((9, 0), (9, 0)), ("NVIDIA H100", "NVIDIA H100"), ARCHS)
K80 = DeviceFacts(((3, 7),), ("Tesla K80",), ARCHS)
SOME_PHOTOS = ("coffee.png", "rocket.jpg", "grace_hopper.jpg", "astronaut.jpg", "coins.png")


@pytest.fixture(scope="module")
def cpu_embedder(clip_embedder: ClipEmbedder) -> ClipEmbedder:
    """The session's random-weight model (one load for the suite); these tests copy it."""
    assert clip_embedder.device == "cpu"
    return clip_embedder


def _refusal(requested: str, facts: DeviceFacts) -> str:
    with pytest.raises(ConfigError) as info:
        pick_device(requested, facts)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"--device {requested}: ")
    return text


# ------------------------------------------------------------ which device
def test_named_devices_that_cannot_run_are_refused_in_one_line() -> None:
    assert "MPS is not available" in _refusal("mps", H100)
    assert _refusal("mps", H100).endswith("use --device cpu.")
    assert pick_device("mps", DeviceFacts(mps=True)) == "mps"
    assert _refusal("cuda:2", H100).endswith(
        "there is no GPU 2; this machine has 2 (cuda:0 to cuda:1); use one of those or "
        "--device cpu."
    )
    assert pick_device("cuda:1", H100) == "cuda:1"
    assert pick_device("cuda", H100) == "cuda"
    assert "no CUDA GPU is usable here; use --device cpu" in _refusal("cuda", DeviceFacts())
    assert "cuda:0, cuda:1" in _refusal("cuda:x", H100)
    unsupported = _refusal("cuda", K80)
    assert "Tesla K80 (compute capability 3.7) has no kernels" in unsupported
    assert unsupported.endswith("or use --device cpu.")
    assert pick_device("cpu", K80) == "cpu"


def test_auto_passes_over_a_gpu_this_build_has_no_kernels_for(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="searchapp.model.device")
    assert pick_device("auto", H100) == "cuda"
    assert pick_device("auto", DeviceFacts(mps=True)) == "mps"
    assert pick_device("auto", DeviceFacts()) == "cpu"
    assert not caplog.records
    assert pick_device("auto", K80) == "cpu"
    (notice,) = caplog.records
    assert "Tesla K80 (compute capability 3.7) has no kernels" in notice.getMessage()
    assert "running on the CPU instead" in notice.getMessage()


@pytest.mark.parametrize(
    ("capability", "archs", "runs"),
    [
        ((8, 6), ("sm_80",), True),  # a cubin runs on later minors of its major
        ((8, 9), ("sm_86", "sm_90"), True),
        ((7, 0), ("sm_75", "sm_80"), False),  # an earlier minor has no kernels
        ((3, 7), ARCHS, False),
        ((9, 0), ("sm_90a",), True),  # arch-specific: that GPU only
        ((10, 0), ("sm_90a",), False),
        ((12, 1), ("sm_80", "compute_90"), True),  # PTX is compiled for newer GPUs
        ((8, 0), ("compute_90",), False),
        ((9, 0), ("gfx90a", "gfx942"), True),  # not an NVIDIA build: not judged here
    ],
)
def test_gpu_against_the_build(capability, archs, runs) -> None:
    assert gpu_runs_build(capability, archs) is runs


def test_auto_reads_torch_and_gives_its_notice_once(monkeypatch, caplog) -> None:
    """The facts come from torch's own functions; ``auto`` decides once per process."""
    import torch  # here, not at the top: collecting the suite need not import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (3, 7))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla K80")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(ARCHS))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "no_gpu_reachable", lambda: False)  # a GPU node here
    assert read_device_facts() == K80
    caplog.set_level(logging.WARNING, logger="searchapp.model.device")
    device_module._auto_device.cache_clear()
    try:
        assert [pick_device("auto") for _ in range(3)] == ["cpu"] * 3
    finally:
        device_module._auto_device.cache_clear()
    assert len(caplog.records) == 1


def test_no_gpu_device_node_means_the_cpu_without_asking_torch(tmp_path, monkeypatch) -> None:
    node = tmp_path / "nvidiactl"
    monkeypatch.setattr(device_module, "GPU_NODES", (str(node),))
    monkeypatch.setattr(sys, "platform", "linux")
    assert device_module.no_gpu_reachable()
    node.touch()  # a driver's node: torch decides, as before
    assert not device_module.no_gpu_reachable()
    node.unlink()
    monkeypatch.setattr(sys, "platform", "darwin")  # MPS is torch's to tell
    assert not device_module.no_gpu_reachable()


def test_status_and_a_run_with_nothing_to_do_import_no_torch(tmp_path) -> None:
    """``searchapp status`` and an ``index`` run that finds nothing new took 3.3-3.5 s,
    2.5 s of it importing torch to say "on cpu"; where no GPU can be reached they now
    import none (``--precision fp32``: an ``auto`` on a bf16 CPU asks torch's build)."""
    if not device_module.no_gpu_reachable():
        pytest.skip("a GPU device node is present: auto asks torch here")
    photos = tmp_path / "photos"
    photos.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCHAPP_")}
    base = [sys.executable, "-X", "importtime", "-m", "searchapp.cli", "--data-dir",
            str(tmp_path / "lib"), "--weights", "random", "--precision", "fp32"]  # fmt: skip
    for command in (["index", str(photos)], ["status", "--json"]):
        done = subprocess.run([*base, *command], capture_output=True, text=True, env=env,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "torch" not in imported(done.stderr), command
    assert json.loads(done.stdout)["device"] == "cpu"


# ------------------------------------------------------------ which precision
def test_auto_precision_on_a_cpu_without_native_bf16_asks_no_torch(monkeypatch) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setitem(sys.modules, "torch", None)  # an import of torch would fail here
    assert pick_precision("auto", "cpu") == "fp32"


def test_a_precision_the_device_does_not_run_is_refused() -> None:
    for requested, device in [("bf16", "cuda"), ("bf16", "mps"), ("fp16", "cpu")]:
        with pytest.raises(ConfigError, match=f"--precision {requested} does not run on"):
            pick_precision(requested, device)
    assert pick_precision("fp16", "cuda:1") == "fp16"
    assert pick_precision("fp16", "mps") == "fp16"
    assert pick_precision("bf16", "cpu") == "bf16"
    assert pick_precision("fp32", "mps") == "fp32"
    assert pick_precision("auto", "cuda") == "fp16"


def _cli(capsys, *argv: str) -> tuple[int, str, str]:  # noqa: ANN001
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_refuses_bad_devices_before_loading(tmp_path, capsys, monkeypatch) -> None:
    def no_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the model was loaded for a device that cannot run it")

    monkeypatch.setattr(encoder_module, "create_network", no_load)
    folder = tmp_path / "photos"
    folder.mkdir()
    base = ["--data-dir", str(tmp_path / "lib"), "--weights", "random"]
    cases = {
        ("--device", "mps"): "--device mps: MPS is not available here",
        ("--device", "cuda:3"): "--device cuda:3: no CUDA GPU is usable here",
        ("--device", "cpu", "--precision", "fp16"): "--precision fp16 does not run on the CPU",
    }
    for flags, message in cases.items():
        for command in (["index", str(folder)], ["status"], ["search", "a dog"]):
            code, out, err = _cli(capsys, *base, *flags, *command)
            assert code == 1, (flags, command, out)
            lines = [x for x in err.splitlines() if x and not x.startswith(RANDOM_WARNING)]
            assert len(lines) == 1 and lines[0].startswith(f"searchapp: {message}"), err
            assert "use --device cpu" in err or "use bf16, fp32 or auto" in err
    with pytest.raises(ConfigError, match="MPS is not available"):
        load_embedder(load_settings(data_dir=tmp_path, weights="random", device="mps"))


def test_status_shows_device_and_precision(tmp_path, capsys) -> None:
    base = ["--data-dir", str(tmp_path / "lib"), "--weights", "random", "--device", "cpu"]
    code, out, _ = _cli(capsys, *base, "--precision", "fp32", "status", "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["device"], report["precision"]) == ("cpu", "fp32")
    assert {"model", "weights", "model_id", "index", "roots"} <= report.keys()
    code, out, _ = _cli(capsys, *base, "--precision", "bf16", "status")
    assert code == 0 and "model:   MobileCLIP-S2 weights random, on cpu in bf16" in out
    code, out, _ = _cli(capsys, *base, "status", "--json")  # auto: what it resolves to
    assert json.loads(out)["precision"] == pick_precision("auto", "cpu")


# ------------------------------------------------------------ one pass at a time
class _PassProbe:
    """Stands in for the network: counts passes running at once, then runs the real one.

    Each pass waits (up to ``linger_s``) for another to come in beside it, so passes that
    may overlap do, and passes that are serialized show it.
    """

    def __init__(self, model, linger_s: float = 1.0, max_images: int | None = None) -> None:  # noqa: ANN001
        self.model = model
        self.linger_s = linger_s
        self.max_images = max_images
        self.inside = 0
        self.most_inside = 0
        self.batches: list[int] = []
        self._changed = threading.Condition()

    def _pass(self, fn, x):  # noqa: ANN001, ANN202
        with self._changed:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.inside > 1, timeout=self.linger_s)
        try:
            return fn(x)
        finally:
            with self._changed:
                self.inside -= 1

    def encode_image(self, x):  # noqa: ANN001, ANN201
        self.batches.append(len(x))
        if self.max_images is not None and len(x) > self.max_images:
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried a batch of {len(x)}")
        return self._pass(self.model.encode_image, x)

    def encode_text(self, tokens):  # noqa: ANN001, ANN201
        return self._pass(self.model.encode_text, tokens)


def _passes_at_once(embedder: ClipEmbedder) -> int:
    pixels = np.full((1, 256, 256, 3), 128, np.uint8)
    calls = [lambda: embedder.encode_prepared(pixels)] * 3 + [
        lambda: embedder.encode_texts(["a dog"])
    ] * 2
    threads = [threading.Thread(target=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a pass never finished (deadlock)"
    return embedder.model.most_inside


def test_passes_are_serialized_off_the_cpu(cpu_embedder) -> None:
    on_gpu = copy.copy(cpu_embedder)
    on_gpu._guard = ForwardGuard("mps")  # as a ClipEmbedder made on MPS has it
    on_gpu.model = _PassProbe(cpu_embedder.model, linger_s=0.3)
    assert _passes_at_once(on_gpu) == 1
    on_cpu = copy.copy(cpu_embedder)
    on_cpu.model = _PassProbe(cpu_embedder.model)
    assert _passes_at_once(on_cpu) >= 2  # the CPU's image lanes still overlap


def test_one_model_lane_off_the_cpu() -> None:
    asked = Settings(model_lanes=3)
    assert (model_lanes(asked, "cuda:0"), model_lanes(asked, "mps")) == (1, 1)
    assert model_lanes(asked, "cpu") == 3
    assert model_lanes(Settings(), "mps") == 1


# ------------------------------------------------------------ out of memory
def _rows(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(len(pixels), -1)[:, :4].astype(np.float32)


def test_out_of_memory_halves_the_batch_and_remembers(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="searchapp.model.guard")
    seen: list[int] = []

    def encode(pixels: np.ndarray) -> np.ndarray:
        seen.append(len(pixels))
        if len(pixels) > 3:
            raise RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)")
        return _rows(pixels)

    guard = ForwardGuard("mps")
    pixels = np.arange(16 * 2 * 2 * 3, dtype=np.uint8).reshape(16, 2, 2, 3)
    assert np.array_equal(guard.images(encode, pixels), _rows(pixels))
    assert seen[:3] == [16, 8, 4] and set(seen[3:]) == {2}
    assert guard.max_batch == 2 and len(caplog.records) == 3
    assert "--batch-size 2" in caplog.records[-1].getMessage()
    seen.clear()
    assert np.array_equal(guard.images(encode, pixels[:5]), _rows(pixels[:5]))
    assert seen == [2, 2, 1]  # cut up front: no second out-of-memory

    with pytest.raises(ValueError, match="not memory"):  # other errors pass through
        guard.images(lambda p: (_ for _ in ()).throw(ValueError("not memory")), pixels)


def test_out_of_memory_for_one_image_is_one_line() -> None:
    def encode(pixels: np.ndarray) -> np.ndarray:
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    with pytest.raises(DeviceError) as info:
        ForwardGuard("cuda").images(encode, np.zeros((4, 2, 2, 3), np.uint8))
    text = str(info.value)
    assert "\n" not in text and text.startswith("cuda ran out of memory")
    assert "--device cpu" in text and "--batch-size" in text


def _vectors(settings: Settings, model_id: str) -> dict[str, np.ndarray]:
    store = Store(settings.db_path, readonly=True)
    try:
        ids, vecs = store.load_vectors(model_id)
        photos = store.get_photos(ids.tolist())
    finally:
        store.close()
    return {photos[int(i)].path: v for i, v in zip(ids, vecs, strict=True)}


def test_indexing_goes_on_in_halves_when_the_gpu_is_full(tmp_path, cpu_embedder):
    """A run whose batches do not fit indexes every photo, with the vectors of a full fit."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in SOME_PHOTOS:
        shutil.copy(DATA / name, photos / name)
    small_card = copy.copy(cpu_embedder)
    small_card._guard = ForwardGuard("cpu")
    small_card.model = _PassProbe(cpu_embedder.model, linger_s=0.0, max_images=3)
    settings = load_settings(
        data_dir=tmp_path / "small", weights="random", precision="fp32", device="cpu",
        batch_size=4, model_lanes=1,
    )  # fmt: skip
    stats = index_once(settings, small_card, photos)
    assert stats.failed == 0 and stats.added == len(SOME_PHOTOS)
    tried = small_card.model.batches
    assert tried == [4, 2, 2, 1]  # the second batch (1 photo) fits at once
    reference = load_settings(
        data_dir=tmp_path / "big", weights="random", precision="fp32", device="cpu"
    )
    index_once(reference, cpu_embedder, photos)
    model_id = cpu_embedder.model_id
    halved, whole = _vectors(settings, model_id), _vectors(reference, model_id)
    assert halved.keys() == whole.keys()
    for path, vector in halved.items():
        assert float(vector @ whole[path]) > 1 - 1e-5, Path(path).name

    no_room = copy.copy(cpu_embedder)
    no_room._guard = ForwardGuard("cpu")
    no_room.model = _PassProbe(cpu_embedder.model, linger_s=0.0, max_images=0)
    full = load_settings(data_dir=tmp_path / "full", weights="random", device="cpu")
    with pytest.raises(DeviceError, match="--device cpu"):
        index_once(full, no_room, photos)
