"""Forward passes on a GPU: one at a time, and batches halved when its memory runs out.

PyTorch on MPS crashes when two threads run one model at once, and a GPU gains nothing
from overlapping passes, so off the CPU every pass (images and texts, indexing and the
page's searches) takes one lock. On the CPU, image batches run in parallel lanes.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np

from searchapp.errors import DeviceError

log = logging.getLogger(__name__)

Encode = Callable[[np.ndarray], np.ndarray]


class ForwardGuard:
    """How an encoder on ``device`` runs its forward passes; thread-safe.

    ``serial`` is held around every forward pass off the CPU (a no-op on the CPU).
    :meth:`images` runs an image batch, halving it while the device is out of memory;
    the size that fit is kept, so later batches are cut to it up front.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.serial: AbstractContextManager = threading.Lock() if device != "cpu" else nullcontext()
        self.max_batch = sys.maxsize  # lowered when a batch did not fit
        self._lock = threading.Lock()

    def images(self, encode: Encode, pixels: np.ndarray) -> np.ndarray:
        """``encode(pixels)`` under ``serial``, in smaller batches if memory runs out.

        Raises :class:`DeviceError` when even one image does not fit.
        """
        limit = self.max_batch
        if len(pixels) > limit:
            cuts = range(0, len(pixels), limit)
            return np.concatenate([self.images(encode, pixels[i : i + limit]) for i in cuts])
        try:
            with self.serial:
                return encode(pixels)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
        # out of the handler: its traceback holds the failed pass's tensors
        self._shrink(len(pixels))
        release_cached_memory(self.device)
        return self.images(encode, pixels)

    def _shrink(self, failed: int) -> None:
        if failed <= 1:
            raise DeviceError(
                f"{self.device} ran out of memory embedding a single image; free memory on "
                "it (other programs), or use --device cpu (a smaller --batch-size cannot help)."
            )
        with self._lock:
            if failed // 2 < self.max_batch:
                self.max_batch = failed // 2
                log.warning(
                    "%s ran out of memory for a batch of %d images; going on with batches of "
                    "%d (--batch-size %d avoids the retry).",
                    self.device, failed, self.max_batch, self.max_batch,
                )  # fmt: skip


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a GPU (CUDA or MPS) running out of memory."""
    if "torch" in sys.modules:
        import torch

        if isinstance(err, torch.OutOfMemoryError):
            return True
    # MPS, and older CUDA builds, raise a plain RuntimeError
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def release_cached_memory(device: str) -> None:
    """Hand the allocator's cached blocks back, so the smaller retry can use them."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    elif device == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()
