"""The one factory: which encoder a configuration gets, built once per process."""

from __future__ import annotations

import threading

from searchapp.config import ENCODER_PIXELS, Settings
from searchapp.model.encoder import ClipEmbedder, ImageEncoder
from searchapp.model.pixels import PixelEncoder
from searchapp.model.spec import ModelSpec, resolve_spec, warn_if_meaningless

_cache: dict[tuple, ImageEncoder] = {}
_cache_lock = threading.Lock()


def load_embedder(
    settings: Settings, *, announce: bool = True, spec: ModelSpec | None = None
) -> ImageEncoder:
    """The encoder of these settings (MobileCLIP, or the pixel test encoder), loaded once.

    ``spec`` saves resolving the settings again when the caller already has it. A load
    warns (logging) when its results carry no meaning, unless ``announce`` is False.
    """
    key = _key(settings)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _build(settings, spec or resolve_spec(settings), announce)
        return _cache[key]


def _key(settings: Settings) -> tuple:
    return (
        settings.encoder,
        settings.model,
        settings.weights,
        settings.device,
        settings.precision,
        settings.torch_threads,
    )


def _build(settings: Settings, spec: ModelSpec, announce: bool) -> ImageEncoder:
    if spec.encoder == ENCODER_PIXELS:
        if announce:
            warn_if_meaningless(spec)
        return PixelEncoder(spec)
    return ClipEmbedder(settings, spec, announce=announce)
