"""What a configuration means before anything loads: the frozen :class:`ModelSpec`.

Resolved once per load from ``Settings``: which encoder, where the weights come from, the
identity vectors are stored under, the vector length and the checkpoint's preprocessing.
Never touches the network. Importing this module imports neither torch nor open_clip.
Resolving a CLIP spec asks open_clip (and with it torch: seconds, ~800 MB of mapped
libraries) once; the answer depends only on open_clip's version and the settings, so it is
kept in ``<data dir>/model-spec.json`` under that key. A search handed to the watcher, the
page encoding through it, ``status`` and a re-scan of an unchanged library then never
import torch; a copy in the user's model cache serves a new library too. A checkpoint
file's identity (its content hash) is kept beside its stat signature and computed again
only when the file changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import threading
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

from searchapp.atomic import write_atomic
from searchapp.config import (
    ENCODER_CLIP,
    ENCODER_PIXELS,
    PIXELS_WARNING,
    RANDOM_WARNING,
    RANDOM_WEIGHTS,
    Settings,
)
from searchapp.errors import ConfigError, UnknownModelError, WeightsUnavailableError
from searchapp.model.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

RANDOM_SEED = 0

PIXELS_MODEL_ID = "pixels-test-v1"
PIXELS_DIM = 512
# the real model's input size, so the decoder drafts JPEGs (and thumbnails) as it would
PIXELS_PREPROCESS = PreprocessConfig(256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".safetensors")
SPEC_CACHE = "model-spec.json"
_SPEC_CACHE_MAX = 64 * 1024


def model_flags(model_id: str, checkpoint: str | None = None) -> str:
    """The command-line settings that select the model behind ``model_id`` (for messages
    that say how to search a library embedded by another model); a checkpoint file's
    model names ``checkpoint`` where the caller knows its path."""
    if model_id == PIXELS_MODEL_ID:
        return "SEARCHAPP_ENCODER=pixels"
    model, _, weights = model_id.partition("/")
    if weights.startswith("random-seed"):
        weights = "random"
    elif weights.startswith("file-"):
        weights = shlex.quote(checkpoint) if checkpoint else (
            "CHECKPOINT (the file it was indexed with)")  # fmt: skip
    return f"--model {model} --weights {weights}"


@dataclass(frozen=True)
class ModelSpec:
    """Everything known about a model without loading it."""

    encoder: str  # clip, or pixels (the test encoder)
    model: str  # the architecture name open_clip knows, or "pixels"
    weights_kind: str  # tag, file, schema (hf-hub:/local-dir:), random or pixels
    weights: str  # the tag, absolute checkpoint path or schema; "" when random or pixels
    model_id: str  # the identity vectors are stored under; never shared by two encoders
    open_clip_name: str  # the name open_clip builds (the schema for hf-hub:/local-dir:)
    dim: int
    preprocess: PreprocessConfig

    @property
    def random_weights(self) -> bool:
        return self.weights_kind == RANDOM_WEIGHTS


def resolve_spec(settings: Settings) -> ModelSpec:
    """Interpret ``encoder``, ``model`` and ``weights``; a checkpoint file is hashed once."""
    if settings.encoder == ENCODER_PIXELS:
        return pixel_spec()
    key = _cache_key(settings)
    spec, current = _cached_spec(settings, key)
    if spec is None:
        spec = _resolve_clip(settings)
    if not current:
        _remember_spec(settings, key, spec)
    return spec


def _resolve_clip(settings: Settings) -> ModelSpec:
    """The spec as open_clip describes it (imports open_clip)."""
    _refuse_missing_file(settings.weights)  # said before open_clip's ~6 s import
    model_cfg = model_config(settings.model)
    kind, value, model_id = _weights_source(settings.model, settings.weights)
    return ModelSpec(
        encoder=ENCODER_CLIP,
        model=settings.model,
        weights_kind=kind,
        weights=value,
        model_id=model_id,
        open_clip_name=value if kind == "schema" else settings.model,
        dim=int(model_cfg["embed_dim"]),
        preprocess=_preprocess_config(settings.model, model_cfg, value if kind == "tag" else None),
    )


def _cache_key(settings: Settings) -> str | None:
    try:
        version = metadata.version("open_clip_torch")
    except metadata.PackageNotFoundError:
        return None
    return f"open_clip {version}|{settings.model}|{settings.weights}"


def _cache_files(settings: Settings) -> list[Path]:
    """The library's own spec file, then the user's (shared by libraries, so a new
    library on a machine that resolved this model before asks open_clip nothing)."""
    files = [settings.data_dir / SPEC_CACHE]
    if settings.model_cache:
        files.append(settings.model_cache_dir / SPEC_CACHE)
    return files


def _read_cache(path: Path) -> dict:
    try:
        if path.stat().st_size > _SPEC_CACHE_MAX:
            return {}
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _cached_spec(settings: Settings, key: str | None) -> tuple[ModelSpec | None, bool]:
    """(the remembered spec of these settings or None, whether the library's own file has
    it as it is now); None means open_clip is asked."""
    files = _cache_files(settings) if key else []
    entries = [_read_cache(path).get(key) for path in files]
    found = [entry for entry in entries if isinstance(entry, dict)]
    if not found:
        return None, False
    entry = dict(found[0])
    seen = entry.pop("file_seen", None)
    try:
        pre = entry["preprocess"]
        pre = {**pre, "mean": tuple(pre["mean"]), "std": tuple(pre["std"])}  # JSON lists
        spec = ModelSpec(**{**entry, "preprocess": PreprocessConfig(**pre)})
    except (TypeError, KeyError):
        return None, False  # written by another version of this code
    current = isinstance(entries[0], dict)  # the library's own file has it
    if spec.weights_kind != "file":
        return spec, current
    path = Path(spec.weights)
    if not path.is_file():
        return None, False  # let the full resolution say what is wrong
    if seen == _file_seen(path):
        return spec, current  # the same file, unchanged since its digest was taken
    return replace(spec, model_id=f"{spec.model}/file-{file_digest(path)}"), False


def _remember_spec(settings: Settings, key: str | None, spec: ModelSpec) -> None:
    """Keep the spec for the next process; never creates the data folder."""
    if key is None:
        return
    entry = asdict(spec)
    if spec.weights_kind == "file":
        entry["file_seen"] = _file_seen(Path(spec.weights))
    for path in _cache_files(settings):
        if path.parent == settings.data_dir and not path.parent.is_dir():
            continue
        entries = _read_cache(path)
        entries[key] = entry
        with contextlib.suppress(OSError):  # read-only: resolved again next time
            write_atomic(path, json.dumps(entries).encode())


def _file_seen(path: Path) -> list[int]:
    """What changes whenever a file's bytes do: any write moves its ctime, which no
    program can set back, so an unchanged signature means an unchanged digest."""
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def pixel_spec() -> ModelSpec:
    """The test encoder's spec: vectors from raw pixels, under their own model id."""
    return ModelSpec(
        encoder=ENCODER_PIXELS,
        model=ENCODER_PIXELS,
        weights_kind=ENCODER_PIXELS,
        weights="",
        model_id=PIXELS_MODEL_ID,
        open_clip_name="",
        dim=PIXELS_DIM,
        preprocess=PIXELS_PREPROCESS,
    )


def model_id_for(settings: Settings) -> str:
    """The identity vectors are stored under, without loading the model."""
    return resolve_spec(settings).model_id


def warn_if_meaningless(spec: ModelSpec) -> None:
    """Warn when this spec's search results carry no meaning (logging: stdout may be --json)."""
    if spec.random_weights:
        announce_random_weights()
    elif spec.encoder == ENCODER_PIXELS:
        log.warning(PIXELS_WARNING.removeprefix("WARNING: "))


def announce_random_weights() -> None:
    """Warn that the weights are random."""
    log.warning(RANDOM_WARNING.removeprefix("WARNING: "))


def list_models() -> list[str]:
    """MobileCLIP and MobileCLIP2 architectures this open_clip knows."""
    import open_clip

    return [m for m in open_clip.list_models() if m.startswith("MobileCLIP")]


def model_config(model: str) -> dict:
    """open_clip's config of a MobileCLIP architecture; the one place unknown names fail."""
    import open_clip

    config = open_clip.get_model_config(model) if model in list_models() else None
    if config is None:
        raise UnknownModelError(
            f"unknown model {model!r}; choose one of: {', '.join(list_models())}"
        )
    return config


def _weights_source(model: str, weights: str) -> tuple[str, str, str]:
    """``--weights`` as (kind, value, model id)."""
    import open_clip

    if weights == RANDOM_WEIGHTS:
        return "random", "", f"{model}/random-seed{RANDOM_SEED}"
    if weights.startswith(("hf-hub:", "local-dir:")):
        return "schema", weights, f"{model}/{weights}"
    tags = open_clip.list_pretrained_tags_by_model(model)
    tag = weights or (tags[0] if tags else "")
    if tag in tags:
        return "tag", tag, f"{model}/{tag}"
    path = Path(weights).expanduser()
    if path.is_file():
        path = path.resolve()
        return "file", str(path), f"{model}/file-{file_digest(path)}"
    if path.exists():  # a folder, say (a missing path-like one was refused before)
        raise _not_found(weights)
    raise ConfigError(
        f"{weights!r} is not a weights tag of {model} (tags: {', '.join(tags) or 'none'}), "
        "nor a file; use a tag, a checkpoint path, hf-hub:ORG/REPO, local-dir:FOLDER or random."
    )


def _refuse_missing_file(weights: str) -> None:
    """A ``--weights`` that names a file (a path, a checkpoint suffix; no tag does) which
    is not there."""
    looks_like_path = os.sep in weights or weights.endswith(_CHECKPOINT_SUFFIXES)
    schema = weights.startswith(("hf-hub:", "local-dir:"))
    if looks_like_path and not schema and not Path(weights).expanduser().is_file():
        raise _not_found(weights)


def _not_found(weights: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"weights file {weights} not found; give the path of an open_clip checkpoint "
        "(.safetensors or .bin), a local-dir:FOLDER, or --weights random."
    )


def _preprocess_config(model: str, model_cfg: dict, tag: str | None) -> PreprocessConfig:
    """The checkpoint's preprocessing, also when weights come from a file or are random."""
    import open_clip

    size = model_cfg["vision_cfg"].get("image_size", 224)
    if isinstance(size, list | tuple):
        size = size[0]
    tags = open_clip.list_pretrained_tags_by_model(model)
    pcfg = open_clip.get_pretrained_cfg(model, tag if tag in tags else (tags[0] if tags else ""))
    pre = model_cfg.get("preprocess_cfg", {})
    return PreprocessConfig(
        image_size=int(size),
        mean=tuple(pcfg.get("mean") or pre.get("mean") or _CLIP_MEAN),
        std=tuple(pcfg.get("std") or pre.get("std") or _CLIP_STD),
        interpolation=pcfg.get("interpolation") or pre.get("interpolation") or "bicubic",
        resize_mode=pcfg.get("resize_mode") or pre.get("resize_mode") or "shortest",
    )


_digests: dict[tuple[str, int, int], str] = {}
_digests_lock = threading.Lock()


def file_digest(path: Path) -> str:
    """A short hash of a checkpoint's bytes, read once per process per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _digests_lock:  # a second caller waits for the first hash instead of reading again
        if key not in _digests:
            _digests[key] = _hash_file(path)
        return _digests[key]


def _hash_file(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
