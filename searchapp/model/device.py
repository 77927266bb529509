"""Where and in what precision the model runs, and torch's thread count."""

from __future__ import annotations

import sys
from pathlib import Path

from searchapp.errors import ConfigError


def pick_device(requested: str) -> str:
    """``auto`` becomes cuda, mps or cpu, whichever is usable; a named GPU must exist."""
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
        if torch.ops.mkldnn._is_mkldnn_bf16_supported() and cpu_has_native_bf16():
            return "bf16"
    except (AttributeError, RuntimeError):
        pass
    return "fp32"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (emulated bf16 is slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def set_torch_threads(count: int) -> int:
    """Set torch's intra-op thread count (process-wide); returns the previous count.

    A process that has not imported torch runs no torch model (the pixel test encoder),
    so there is nothing to set and torch is not imported for it: returns 0.
    """
    if "torch" not in sys.modules:
        return 0
    import torch

    previous = torch.get_num_threads()
    if count > 0 and count != previous:
        torch.set_num_threads(count)
    return previous
