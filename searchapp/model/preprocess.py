"""How images become model input: the checkpoint's resize, crop and normalization.

Written with Pillow and NumPy only, so decode threads run it without touching torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

_INTERPOLATION = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class PreprocessConfig:
    """How a checkpoint expects its input: size, resize mode, interpolation, mean, std."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    resize_mode: str = "shortest"


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
