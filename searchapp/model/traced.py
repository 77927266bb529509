"""The model's two towers kept as TorchScript in the user's cache folder.

Building MobileCLIP means importing open_clip (which imports torchvision and, through
``torchvision.ops``, ``torch._dynamo``: about 4 s here), constructing the network and
loading the checkpoint (about 3.5 s). A process that has the model traces each tower once
(one to two seconds) and saves it under a key of everything that decides its numbers: the
model id (architecture and weights), the precision, the torch and open_clip versions.
Later processes load the text tower alone in about 0.3 s for a query, or both towers for
indexing, without importing open_clip.

The tokenizer is open_clip's own ``tokenizer.py``, loaded from its file (it imports no
other part of open_clip), and checked against the tokens the real tokenizer gave when the
cache was written. Any mismatch, missing file or load error means the cache is not used
and the model is built as before: the cache can only save time, never change a vector.

TorchScript is deprecated in favour of ``torch.export``, but loading an exported program
imports ``torch._dynamo`` (measured 12 s), which is what this module avoids; if a future
torch drops ``torch.jit``, loads return None and every process builds the model again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

from searchapp.atomic import atomic_path, remove_stale_temps, write_atomic
from searchapp.config import ENCODER_CLIP, Settings
from searchapp.errors import ModelCacheError
from searchapp.model.spec import ModelSpec

log = logging.getLogger("searchapp.model")

FORMAT = 1
TEXT_FILE = "text.ts"
IMAGE_FILE = "image.ts"
META_FILE = "meta.json"  # written last: its presence means both towers are complete
KEEP = 4  # cached models kept; the least recently used beyond that are removed
PROBES = ("a red kayak on a lake", "Straße, café & 東京 🙂", "IMG_2041.JPG  2023/Juli", "")

_tokenizer_module: ModuleType | None = None
_tokenizer_lock = threading.Lock()


@dataclass(frozen=True)
class TowerMeta:
    """What a cached model promises: its identity, vector length and tokenizer."""

    model_id: str
    precision: str
    dim: int
    context_length: int
    probes: dict[str, list[int]]
    sizes: dict[str, int]  # each tower file's length: a cut-short copy is never loaded


def cache_folder(settings: Settings, spec: ModelSpec, device: str, precision: str) -> Path | None:
    """Where this model's towers are kept, or None when it is not cached: the cache is
    off, the encoder is not CLIP, or the model runs off the CPU (a GPU process has a CUDA
    start-up of its own, and its fp16 passes are not traced)."""
    if not settings.model_cache or spec.encoder != ENCODER_CLIP or device != "cpu":
        return None
    versions = [_version("torch"), _version("open_clip_torch")]
    key = json.dumps([FORMAT, spec.model_id, spec.open_clip_name, precision, versions])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return settings.model_cache_dir / f"{spec.model.lower()}-{digest}"


def is_cached(settings: Settings, spec: ModelSpec, device: str, precision: str) -> bool:
    """Whether both towers of this model are in the cache."""
    folder = cache_folder(settings, spec, device, precision)
    return folder is not None and (folder / META_FILE).is_file()


class TracedNetwork:
    """The two towers loaded from the cache: ``encode_image`` and ``encode_text`` as on
    open_clip's model. Each loads on first use: a query never reads the image tower, and
    indexing never the text one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def encode_image(self, x):  # noqa: ANN001, ANN201 - torch Tensors
        with _as_traced():
            return self._tower(IMAGE_FILE)(x)

    def encode_text(self, tokens):  # noqa: ANN001, ANN201 - torch Tensors
        with _as_traced():
            return self._tower(TEXT_FILE)(tokens)

    def _tower(self, name: str):  # noqa: ANN202 - a TorchScript module
        tower = self._loaded.get(name)
        if tower is not None:
            return tower
        with self._lock:
            if name not in self._loaded:
                try:
                    self._loaded[name] = _load_script(self.folder / name)
                except Exception as err:  # damaged: removed, so the next run rebuilds it
                    remove_folder(self.folder)
                    raise ModelCacheError(
                        f"the cached model tower {self.folder / name} cannot be read ({err}); "
                        "it was removed: run the command again to build the model afresh."
                    ) from err
            return self._loaded[name]


def load_cached(
    settings: Settings, spec: ModelSpec, device: str, precision: str
) -> tuple[TracedNetwork, object, int] | None:
    """(network, tokenizer, dim) from the cache, or None: build the model instead.

    Each tower loads on its first use: a text query never reads the image tower.
    """
    folder = cache_folder(settings, spec, device, precision)
    if folder is None or not (folder / META_FILE).is_file():
        return None
    try:
        meta = _read_meta(folder)
        for name, size in meta.sizes.items():
            if (folder / name).stat().st_size != size:
                raise ValueError(f"{name} is {size} bytes in its record, not on disk")
        tokenizer = _checked_tokenizer(meta)
        network = TracedNetwork(folder)
    except Exception as err:  # noqa: BLE001 - a bad cache is skipped, the model built
        log.info("model: the cached towers in %s are not usable (%s); building the model",
                 folder, err)  # fmt: skip
        return None
    if tokenizer is None:
        return None
    _touch(folder)
    return network, tokenizer, meta.dim


def save_towers(
    model: object,
    tokenizer: object,
    settings: Settings,
    spec: ModelSpec,
    device: str,
    precision: str,
) -> bool:
    """Trace a loaded model's towers into the cache (once per key); True if written.

    Safe while other threads run the model: tracing only reads it.
    """
    folder = cache_folder(settings, spec, device, precision)
    if folder is None or (folder / META_FILE).is_file():
        return False
    if not (hasattr(model, "visual") and hasattr(model, "text")) or not hasattr(
        tokenizer, "context_length"
    ):
        return False  # only open_clip's CustomTextCLIP (every MobileCLIP) is traced
    try:
        _write_towers(folder, model, tokenizer, spec, precision)
    except Exception as err:  # noqa: BLE001 - a cache that cannot be written is not kept
        log.info("model: could not keep the traced towers in %s (%s)", folder, err)
        return False
    _remove_least_used(folder.parent)
    log.info("model: kept the traced towers in %s; later processes load them without open_clip",
             folder)  # fmt: skip
    return True


def _write_towers(
    folder: Path, model: object, tokenizer: object, spec: ModelSpec, precision: str
) -> None:
    import torch

    probes = {text: tokenizer([text])[0].tolist() for text in PROBES}
    standalone = _make_tokenizer(int(tokenizer.context_length))
    if any(standalone([t])[0].tolist() != ids for t, ids in probes.items()):
        raise ValueError("open_clip's tokenizer file does not tokenize as its tokenizer")
    first = next(model.visual.parameters())
    size = spec.preprocess.image_size
    pixels = torch.zeros(1, 3, size, size, dtype=first.dtype, device=first.device)
    pixels = pixels.contiguous(memory_format=torch.channels_last)
    tokens = tokenizer([PROBES[0]]).to(first.device)
    with torch.no_grad(), _quiet_torchscript():
        image_ts = torch.jit.trace(model.visual, pixels, check_trace=False)
        text_ts = torch.jit.trace(model.text, tokens, check_trace=False)
        dim = int(text_ts(tokens).shape[-1])
    for name, script in ((IMAGE_FILE, image_ts), (TEXT_FILE, text_ts)):
        remove_stale_temps(folder / name)  # a process stopped mid-write left one
        with atomic_path(folder / name) as tmp, _quiet_torchscript():
            torch.jit.save(script, str(tmp))
    sizes = {name: (folder / name).stat().st_size for name in (IMAGE_FILE, TEXT_FILE)}
    meta = TowerMeta(spec.model_id, precision, dim, int(tokenizer.context_length), probes, sizes)
    write_atomic(folder / META_FILE, json.dumps(meta.__dict__).encode())


@contextmanager
def _as_traced() -> Iterator[None]:
    """Run a tower's graph as it was traced. TorchScript's default executor spends the
    first two calls of each graph profiling and re-optimizing it (here 1.0 s and 0.9 s
    more than a plain run for the image tower), and on the CPU it then runs no faster
    (torch fuses no CPU ops by default, in fp32 or bf16): a process that embeds a few
    photos or one query paid that on every start. The setting is per thread."""
    import torch

    with torch.jit.optimized_execution(False):
        yield


def _load_script(path: Path) -> object:
    import torch

    with _quiet_torchscript():
        return torch.jit.load(str(path), map_location="cpu").eval()


@contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """torch.jit warns that it is deprecated on every call; we know (see the docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def _read_meta(folder: Path) -> TowerMeta:
    raw = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    return TowerMeta(**raw)


def _checked_tokenizer(meta: TowerMeta) -> object | None:
    """The standalone tokenizer, if it still gives the tokens recorded with the towers."""
    tokenizer = _make_tokenizer(meta.context_length)
    for text, ids in meta.probes.items():
        if tokenizer([text])[0].tolist() != ids:
            log.info("model: open_clip's tokenizer changed since the towers were cached")
            return None
    return tokenizer


def _make_tokenizer(context_length: int) -> object:
    """open_clip's SimpleTokenizer from its own file, without importing open_clip."""
    global _tokenizer_module
    with _tokenizer_lock:
        if _tokenizer_module is None:
            package = importlib.util.find_spec("open_clip")  # located, not imported
            if package is None or not package.submodule_search_locations:
                raise ImportError("open_clip is not installed")
            path = Path(package.submodule_search_locations[0]) / "tokenizer.py"
            spec = importlib.util.spec_from_file_location("searchapp_clip_tokenizer", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _tokenizer_module = module
    return _tokenizer_module.SimpleTokenizer(context_length=context_length)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def _touch(folder: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache is still used
        (folder / META_FILE).touch()


def _remove_least_used(root: Path) -> None:
    """Keep the ``KEEP`` most recently used models (a torch upgrade leaves old ones)."""
    folders = [p for p in root.iterdir() if (p / META_FILE).is_file()]
    folders.sort(key=lambda p: (p / META_FILE).stat().st_mtime, reverse=True)
    for old in folders[KEEP:]:
        remove_folder(old)


def remove_folder(folder: Path) -> None:
    """Delete one cached model (its files, then the folder); what cannot go is left."""
    with contextlib.suppress(OSError):
        (folder / META_FILE).unlink(missing_ok=True)  # first: the rest is no longer used
        for file in folder.iterdir():
            file.unlink(missing_ok=True)
        folder.rmdir()
