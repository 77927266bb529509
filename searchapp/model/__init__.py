"""The model: what a configuration means (spec), how images are prepared, the encoders.

Only this package imports torch, open_clip and timm, and only inside the functions that
need them: importing it is cheap, and the pixel test encoder never imports torch.

- ``spec``: :class:`ModelSpec`, resolved once per load from ``Settings``
- ``hub``: a tag's checkpoint from the Hugging Face cache or the hub
- ``device``: device (checked against the machine), precision and torch's thread count
- ``guard``: :class:`ForwardGuard`: one pass at a time off the CPU; batches halved on OOM
- ``preprocess``: :class:`PreprocessConfig` and :func:`prepare_pixels` (Pillow/NumPy)
- ``network``: open_clip's plain fp32 network for a spec
- ``encoder``: the :class:`ImageEncoder` interface and :class:`ClipEmbedder`
- ``pixels``: :class:`PixelEncoder`, the deterministic test encoder
- ``loader``: :func:`load_embedder`, the one factory (cached per process)
- ``lazy``: :class:`LazyEmbedder`, which loads only when an image needs it
- ``host``: :class:`ModelHost`, the model in a child process (``child``), for the watcher
"""

from searchapp.model.device import (
    DeviceFacts,
    device_and_precision,
    pick_device,
    pick_precision,
    read_device_facts,
    set_torch_threads,
)
from searchapp.model.encoder import ClipEmbedder, ImageEncoder
from searchapp.model.guard import ForwardGuard, is_out_of_memory
from searchapp.model.host import ModelHost
from searchapp.model.hub import fetch_checkpoint
from searchapp.model.lazy import LazyEmbedder
from searchapp.model.loader import load_embedder
from searchapp.model.network import create_network
from searchapp.model.pixels import PixelEncoder
from searchapp.model.preprocess import PreprocessConfig, prepare_pixels
from searchapp.model.spec import (
    PIXELS_MODEL_ID,
    PIXELS_WARNING,
    RANDOM_WARNING,
    ModelSpec,
    announce_random_weights,
    list_models,
    model_flags,
    model_id_for,
    resolve_spec,
    warn_if_meaningless,
)

__all__ = [
    "PIXELS_MODEL_ID",
    "PIXELS_WARNING",
    "RANDOM_WARNING",
    "ClipEmbedder",
    "DeviceFacts",
    "ForwardGuard",
    "ImageEncoder",
    "LazyEmbedder",
    "ModelHost",
    "ModelSpec",
    "PixelEncoder",
    "PreprocessConfig",
    "announce_random_weights",
    "create_network",
    "device_and_precision",
    "fetch_checkpoint",
    "is_out_of_memory",
    "list_models",
    "load_embedder",
    "model_id_for",
    "pick_device",
    "pick_precision",
    "prepare_pixels",
    "read_device_facts",
    "model_flags",
    "resolve_spec",
    "set_torch_threads",
    "warn_if_meaningless",
]
