"""MobileCLIP through open_clip: pixels and strings in, L2-normalized float32 vectors out.

The only module that imports torch. Preprocessing follows the checkpoint's own config
(MobileCLIP: shortest-side bilinear resize, centre crop, mean 0 / std 1) and is written
with Pillow and NumPy so decode threads can run it without touching torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from searchapp.config import RANDOM_WEIGHTS, Settings
from searchapp.errors import ConfigError, UnknownModelError, WeightsUnavailableError

log = logging.getLogger(__name__)

RANDOM_SEED = 0
RANDOM_WARNING = (
    "WARNING: random model weights are in use (--weights random): search results carry no "
    "meaning. Use the real MobileCLIP weights for real searches."
)

TEXT_THREADS = 1
_INTERPOLATION = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class PreprocessConfig:
    """How a checkpoint expects its input: size, resize mode, interpolation, mean, std."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    resize_mode: str = "shortest"


class ImageEncoder(Protocol):
    """What the indexer and search need from an embedder."""

    model_id: str
    dim: int
    device: str
    preprocess_config: PreprocessConfig

    def prepare(self, image: Image.Image) -> np.ndarray: ...

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray: ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def start_loading(self) -> None: ...


def prepare_pixels(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Resize and crop like open_clip's transform; returns uint8 HxWx3 (normalized later).

    Matches torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on PIL images exactly.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = cfg.image_size
    resample = _INTERPOLATION.get(cfg.interpolation, Image.Resampling.BILINEAR)
    w, h = image.size
    if cfg.resize_mode == "squash":
        return np.asarray(image.resize((size, size), resample), dtype=np.uint8)
    if cfg.resize_mode == "longest":
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (size, size))
        canvas.paste(image.resize((nw, nh), resample), ((size - nw) // 2, (size - nh) // 2))
        return np.asarray(canvas, dtype=np.uint8)
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), resample)
    left = int(round((nw - size) / 2.0))
    top = int(round((nh - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def preprocess_config_for(model: str, tag: str | None) -> PreprocessConfig:
    """The checkpoint's preprocessing, also when weights come from a file or are random."""
    import open_clip

    model_cfg = open_clip.get_model_config(model)
    if model_cfg is None:
        raise UnknownModelError(
            f"unknown model {model!r}; choose one of: {', '.join(list_models())}"
        )
    size = model_cfg["vision_cfg"].get("image_size", 224)
    if isinstance(size, list | tuple):
        size = size[0]
    tags = open_clip.list_pretrained_tags_by_model(model)
    pcfg = open_clip.get_pretrained_cfg(model, tag if tag in tags else (tags[0] if tags else ""))
    pre = model_cfg.get("preprocess_cfg", {})
    return PreprocessConfig(
        image_size=int(size),
        mean=tuple(pcfg.get("mean") or pre.get("mean") or (0.48145466, 0.4578275, 0.40821073)),
        std=tuple(pcfg.get("std") or pre.get("std") or (0.26862954, 0.26130258, 0.27577711)),
        interpolation=pcfg.get("interpolation") or pre.get("interpolation") or "bicubic",
        resize_mode=pcfg.get("resize_mode") or pre.get("resize_mode") or "shortest",
    )


def list_models() -> list[str]:
    """MobileCLIP and MobileCLIP2 architectures this open_clip knows."""
    import open_clip

    return [m for m in open_clip.list_models() if m.startswith("MobileCLIP")]


def default_tag(model: str) -> str:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model)
    return tags[0] if tags else ""


@dataclass(frozen=True)
class WeightsSource:
    """Where weights come from: ``kind`` is tag, file, schema (hf-hub:/local-dir:) or random."""

    kind: str
    value: str
    model_id: str


def resolve_weights(model: str, weights: str) -> WeightsSource:
    """Interpret ``--weights``; never touches the network."""
    if model not in list_models():
        raise UnknownModelError(
            f"unknown model {model!r}; choose one of: {', '.join(list_models())}"
        )
    if weights == RANDOM_WEIGHTS:
        return WeightsSource("random", "", f"{model}/random-seed{RANDOM_SEED}")
    if weights.startswith(("hf-hub:", "local-dir:")):
        return WeightsSource("schema", weights, f"{model}/{weights}")
    tag = weights or default_tag(model)
    import open_clip

    if tag in open_clip.list_pretrained_tags_by_model(model):
        return WeightsSource("tag", tag, f"{model}/{tag}")
    path = Path(weights).expanduser()
    if path.is_file():
        return WeightsSource("file", str(path.resolve()), f"{model}/file-{_file_digest(path)}")
    if path.exists() or os.sep in weights or weights.endswith((".bin", ".pt", ".safetensors")):
        raise WeightsUnavailableError(
            f"weights file {weights} not found; give the path of an open_clip checkpoint "
            "(.safetensors or .bin), a local-dir:FOLDER, or --weights random."
        )
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
    raise ConfigError(
        f"{weights!r} is not a weights tag of {model} (tags: {tags}), nor a file; "
        "use a tag, a checkpoint path, hf-hub:ORG/REPO, local-dir:FOLDER or random."
    )


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def fetch_checkpoint(model: str, tag: str) -> str:
    """Path of a tag's checkpoint: from the hub cache, else downloaded (with a progress bar).

    Fails fast with one message when the file is not cached and the hub is out of reach,
    instead of the hub client's minute of retries.
    """
    import open_clip
    from huggingface_hub import hf_hub_download

    repo = (open_clip.get_pretrained_cfg(model, tag).get("hf_hub") or "").strip("/")
    if not repo:
        raise WeightsUnavailableError(f"{model} {tag!r} has no Hugging Face hub source.")
    for filename in _HUB_FILES:
        try:
            return hf_hub_download(repo, filename, local_files_only=True)
        except Exception:  # noqa: BLE001 - not cached under this name; try the next
            continue
    if not _hub_reachable():
        raise WeightsUnavailableError(
            f"{model} weights {tag!r} are not in the Hugging Face cache and the hub cannot be"
            " reached. Connect to the internet once (they download to the hub cache and work"
            " offline after), or pass --weights PATH to a downloaded checkpoint"
            f" (e.g. {repo}/{_HUB_FILES[0]}), or --weights random to try the app without"
            " meaningful results."
        )
    print(f"Downloading {model} weights ({repo}) to the Hugging Face cache...", file=sys.stderr)
    last: Exception | None = None
    for filename in _HUB_FILES:
        try:
            return hf_hub_download(repo, filename)
        except Exception as err:  # noqa: BLE001 - try the other file name
            last = err
    raise WeightsUnavailableError(
        f"downloading {model} weights {tag!r} from {repo} failed ({last}); try again, or pass"
        " --weights PATH to a downloaded checkpoint."
    )


def _hub_reachable(timeout: float = 4.0) -> bool:
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout).close()
    except OSError:
        return False
    return True


def pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is usable; use cpu.")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_precision(requested: str, device: str) -> str:
    """fp16 on GPUs, bf16 on CPUs with native bf16 (AVX-512-BF16/AMX), else fp32."""
    import torch

    if requested != "auto":
        return requested
    if device.startswith("cuda") or device == "mps":
        return "fp16"
    try:
        if torch.ops.mkldnn._is_mkldnn_bf16_supported() and _cpu_has_native_bf16():
            return "bf16"
    except (AttributeError, RuntimeError):
        pass
    return "fp32"


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def set_torch_threads(count: int) -> int:
    """Set torch's intra-op thread count (process-wide); returns the previous count."""
    import torch

    previous = torch.get_num_threads()
    if count > 0 and count != previous:
        torch.set_num_threads(count)
    return previous


class ClipEmbedder:
    """A loaded MobileCLIP model. Thread-safe: image batches may run in parallel (the
    indexer's model lanes); text calls are serialized."""

    def __init__(self, settings: Settings, *, announce: bool = True) -> None:
        import torch

        self.settings = settings
        self.source, self.preprocess_config = weights_and_preprocessing(settings)
        self.model_id = self.source.model_id
        self.device = pick_device(settings.device)
        self.precision = pick_precision(settings.precision, self.device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self._lock = threading.Lock()
        self.model, self.tokenizer = self._load(announce)
        self.dim = int(self.encode_texts(["a photo"]).shape[1])
        self.images_encoded = 0  # counts model calls, for tests and progress

    @property
    def random_weights(self) -> bool:
        return self.source.kind == "random"

    def describe(self) -> str:
        weights = self.source.value or "random init"
        return f"{self.settings.model} ({weights}) on {self.device}, {self.precision}"

    def _load(self, announce: bool):  # noqa: ANN202 - torch types stay inside this module
        import open_clip
        import torch
        from timm.utils import reparameterize_model

        model = create_model(self.settings, self.source, announce)
        # fuse MobileOne/FastViT branches into single convs: same function, ~40% faster
        model = reparameterize_model(model, inplace=True)  # no second copy held at load
        model.to(self.device)
        if self.device == "cpu":
            model = model.to(memory_format=torch.channels_last)
            if self.precision == "bf16":
                # bf16 weights beat autocast by ~20% (no per-call casts) and halve memory;
                # both towers stay within 1e-4 cosine of fp32
                model = model.to(torch.bfloat16)
        elif self.precision == "fp16":
            model = model.half()
        return model, open_clip.get_tokenizer(_open_clip_name(self.settings, self.source))

    # ------------------------------------------------------------ encoding
    def prepare(self, image: Image.Image) -> np.ndarray:
        """Resize/crop one image to uint8 HxWx3; safe to call from any thread."""
        return prepare_pixels(image, self.preprocess_config)

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] from :meth:`prepare` -> float32 [N, dim], L2-normalized."""
        import torch

        cfg = self.preprocess_config
        # no lock: the indexer runs batches in parallel lanes (forward passes are re-entrant)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)
            x = (x - mean) / std
            if self.device == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            feats = self._run(self.model.encode_image, x)
        with self._lock:
            self.images_encoded += len(pixels)
        return _normalize(feats)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_prepared(np.stack([self.prepare(im) for im in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> float32 [N, dim], L2-normalized.

        On CPU a query runs on one thread: one short sequence gains little from more, and
        OpenMP threads waiting on busy cores (an indexer next door) cost 10x the latency.
        """
        import torch

        with self._lock, torch.inference_mode():
            threads = set_torch_threads(TEXT_THREADS) if self.device == "cpu" else 0
            try:
                tokens = self.tokenizer(list(texts)).to(self.device)
                feats = self.model.encode_text(tokens).float()
            finally:
                if threads:
                    set_torch_threads(threads)
        return _normalize(feats)

    def start_loading(self) -> None:
        """Nothing to do: this embedder loads its model when it is made."""

    def _run(self, fn, x):  # noqa: ANN001, ANN202
        import torch

        if self.precision == "bf16" and self.device == "cpu":
            return fn(x.to(torch.bfloat16)).float()
        if self.precision == "fp16" and self.device != "cpu":
            return fn(x.half()).float()
        return fn(x).float()


class LazyEmbedder:
    """An embedder for indexing whose model loads only once some image needs it.

    Its identity, dimension and preprocessing come from the configuration, so a run can
    scan, diff and decode before any weights load. ``start_loading()`` (the indexer calls
    it when a run has files to read) loads them in a background thread while the first
    batches decode; a run over an unchanged library never loads them at all.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source, self.preprocess_config = weights_and_preprocessing(settings)
        self.model_id = self.source.model_id
        self.dim = embed_dim_for(settings.model)
        self.device = pick_device(settings.device)
        if self.source.kind == "random":
            announce_random_weights()  # said now, even when nothing gets embedded
        elif self.source.kind == "tag":
            # missing weights fail now, with their one-line fix, not after a long scan
            fetch_checkpoint(settings.model, self.source.value)
        self._lock = threading.Lock()
        self._future: Future[ClipEmbedder] | None = None

    @property
    def load_started(self) -> bool:
        return self._future is not None

    def start_loading(self) -> None:
        """Begin loading the model in the background (once)."""
        with self._lock:
            if self._future is None:
                pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
                self._future = pool.submit(load_embedder, self.settings, announce=False)
                pool.shutdown(wait=False)

    def loaded(self) -> ClipEmbedder:
        """The model, waiting for it; a load error (missing weights) is raised here."""
        self.start_loading()
        assert self._future is not None
        return self._future.result()

    def prepare(self, image: Image.Image) -> np.ndarray:
        return prepare_pixels(image, self.preprocess_config)

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        return self.loaded().encode_prepared(pixels)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.loaded().encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded().encode_texts(texts)


def weights_and_preprocessing(settings: Settings) -> tuple[WeightsSource, PreprocessConfig]:
    """Where the weights come from and how their images are prepared; nothing is loaded."""
    source = resolve_weights(settings.model, settings.weights)
    tag = source.value if source.kind == "tag" else None
    return source, preprocess_config_for(settings.model, tag)


def embed_dim_for(model: str) -> int:
    """The length of the model's vectors, from its open_clip config (nothing is loaded)."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise UnknownModelError(
            f"unknown model {model!r}; choose one of: {', '.join(list_models())}"
        )
    return int(cfg["embed_dim"])


def announce_random_weights() -> None:
    """Tell the user that the weights are random (stderr: stdout may be --json)."""
    print(RANDOM_WARNING, file=sys.stderr)


def _open_clip_name(settings: Settings, source: WeightsSource) -> str:
    return source.value if source.kind == "schema" else settings.model


def create_model(  # noqa: ANN201
    settings: Settings, source: WeightsSource | None = None, announce: bool = True
):
    """open_clip's model for these settings, fp32 and eager, before any speed-up.

    Random weights are drawn with a fixed seed, so every call returns the same model
    (and are announced on stderr unless ``announce`` is False).
    """
    import open_clip
    import torch

    default_source, cfg = weights_and_preprocessing(settings)
    source = source or default_source
    kwargs = dict(
        image_mean=cfg.mean,
        image_std=cfg.std,
        image_interpolation=cfg.interpolation,
        image_resize_mode=cfg.resize_mode,
    )
    name = _open_clip_name(settings, source)
    if source.kind == "random":
        if announce:
            announce_random_weights()
        torch.manual_seed(RANDOM_SEED)
        model = _quiet_create(open_clip, name, None, kwargs)
        _spread_random_init(model)
    elif source.kind == "schema":
        model = _create_checked(open_clip, settings, name, None, kwargs)
    elif source.kind == "tag":
        checkpoint = fetch_checkpoint(name, source.value)
        model = _create_checked(open_clip, settings, name, checkpoint, kwargs)
    else:
        model = _create_checked(open_clip, settings, name, source.value, kwargs)
    return model.eval()


def _create_checked(open_clip, settings: Settings, name: str, pretrained: str | None, kwargs):  # noqa: ANN001, ANN202
    try:
        return _quiet_create(open_clip, name, pretrained, kwargs)
    except Exception as err:  # open_clip and the hub raise many types; all mean "no weights"
        # torch colours parts of its messages; a one-line error must stay plain text
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
        reason = text.splitlines()[0][:200] if text else type(err).__name__
        raise WeightsUnavailableError(
            f"cannot load {settings.model} weights {settings.weights or pretrained!r}"
            f" ({reason}). Connect to the internet once so they download to the Hugging Face"
            " cache, or pass --weights PATH to a local checkpoint, or --weights random to try"
            " the app without meaningful results."
        ) from err


class ReferenceEncoder:
    """The fp32 reference: open_clip's own ``preprocess`` and eager ``encode_image``.

    Same weights as :class:`ClipEmbedder` for the same settings, with none of its speed-ups
    (no reparameterization, channels_last, bf16 or draft decoding). Benchmarks and the
    fidelity test compare the fast path against it.
    """

    def __init__(self, settings: Settings) -> None:
        import open_clip

        self.settings = settings
        self.model = create_model(settings)
        _, cfg = weights_and_preprocessing(settings)
        self.preprocess = open_clip.image_transform(
            cfg.image_size,
            is_train=False,
            mean=cfg.mean,
            std=cfg.std,
            interpolation=cfg.interpolation,
            resize_mode=cfg.resize_mode,
        )

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Full-size RGB images -> float32 [N, dim], L2-normalized."""
        import torch

        with torch.no_grad():
            x = torch.stack([self.preprocess(im.convert("RGB")) for im in images])
            return _normalize(self.model.encode_image(x).float())


def _spread_random_init(model) -> None:  # noqa: ANN001
    """Re-draw the image tower's conv/linear weights with variance-preserving init.

    open_clip's default init (tiny layer scales, BN at identity) maps every image to
    nearly the same vector, so random-weight runs could not tell two photos apart. With
    fan-in scaled weights, identical and resized copies stay close while different photos
    differ, which is what the tests need; it is still random and still meaningless.
    """
    import torch

    with torch.no_grad():
        for module in model.visual.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
                if module.bias is not None:
                    module.bias.zero_()


def _quiet_create(open_clip, name: str, pretrained: str | None, kwargs: dict):  # noqa: ANN001, ANN202
    # open_clip logs "Model initialized randomly" at WARNING; we announce it ourselves.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, weights_only=True, **kwargs
        )
    finally:
        root.setLevel(level)
    return model


def _normalize(feats) -> np.ndarray:  # noqa: ANN001
    arr = feats.detach().cpu().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


_cache: dict[tuple, ClipEmbedder] = {}
_cache_lock = threading.Lock()


def load_embedder(settings: Settings, *, announce: bool = True) -> ClipEmbedder:
    """Load (once per process and configuration) the embedder for these settings."""
    key = (
        settings.model,
        settings.weights,
        settings.device,
        settings.precision,
        settings.torch_threads,
    )
    with _cache_lock:
        if key not in _cache:
            _cache[key] = ClipEmbedder(settings, announce=announce)
        return _cache[key]


def model_id_for(settings: Settings) -> str:
    """The identity vectors are stored under, without loading the model."""
    return resolve_weights(settings.model, settings.weights).model_id
