"""The fp32 reference encoder that benchmarks and the fidelity test compare against.

Test and benchmark support, not app code: open_clip's own ``preprocess`` and eager
``encode_image`` on the same weights as ``ClipEmbedder`` for the same settings, with none
of its speed-ups (no reparameterization, channels_last, bf16 or draft decoding).
Benchmarks import it as ``reference`` (their folder is on ``sys.path``); tests put the
benchmarks folder on ``sys.path`` first, as they do for ``synth_library``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from searchapp.config import Settings
from searchapp.model import create_network, resolve_spec


class ReferenceEncoder:
    """Full-size RGB images -> float32 unit vectors, the plain open_clip way."""

    def __init__(self, settings: Settings) -> None:
        import open_clip

        spec = resolve_spec(settings)
        self.settings = settings
        self.model = create_network(spec)
        cfg = spec.preprocess
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
            feats = torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1)
        return feats.numpy()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts through open_clip's own tokenizer and eager ``encode_text``, L2-normalized."""
        import open_clip
        import torch

        tokenizer = open_clip.get_tokenizer(resolve_spec(self.settings).open_clip_name)
        with torch.no_grad():
            feats = self.model.encode_text(tokenizer(list(texts))).float()
        return torch.nn.functional.normalize(feats, dim=-1).numpy()
