"""Where and in what precision the model runs, and torch's thread count.

A device that cannot run the model is refused with one line before anything loads: MPS
where it is not available, a CUDA index beyond the GPUs present, a GPU this torch build
has no kernels for. ``auto`` passes over such a GPU to the CPU, with one notice.

Deciding ``auto`` asks torch (a 2-3 s import), except where no GPU can be reached at all:
on Linux without the device nodes CUDA, ROCm and WSL2's GPU need, ``auto`` is the CPU
and, on a CPU without native bf16, ``auto`` precision is fp32, so ``searchapp status`` and
an ``index`` run that finds nothing new import no torch.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from searchapp.config import ENCODER_PIXELS, Settings
from searchapp.errors import ConfigError

log = logging.getLogger(__name__)

GPU_PRECISIONS = ("fp16", "fp32")
CPU_PRECISIONS = ("bf16", "fp32")
_ARCH = re.compile(r"(sm|compute)_(\d+)(\d)([a-z]?)")
# what a process needs to reach a GPU on Linux: CUDA's control node, ROCm's kernel driver
# (torch.cuda on AMD), WSL2's GPU paravirtualization
GPU_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


@dataclass(frozen=True)
class DeviceFacts:
    """What this machine and torch build offer (tests pass their own)."""

    cuda_capabilities: tuple[tuple[int, int], ...] = ()  # one per usable CUDA GPU
    cuda_names: tuple[str, ...] = ()
    cuda_archs: tuple[str, ...] = ()  # the build's kernels: sm_80, compute_90, ...
    mps: bool = False

    @property
    def cuda_count(self) -> int:
        return len(self.cuda_capabilities)

    def cuda_problem(self, index: int) -> str | None:
        """Why CUDA GPU ``index`` cannot run this torch build's kernels; None when it can."""
        capability = self.cuda_capabilities[index]
        if gpu_runs_build(capability, self.cuda_archs):
            return None
        built = ", ".join(self.cuda_archs)
        return (
            f"{self.cuda_names[index]} (compute capability {capability[0]}.{capability[1]}) "
            f"has no kernels in this PyTorch build (built for {built})"
        )


def read_device_facts() -> DeviceFacts:
    """The GPUs torch sees here and the GPU architectures its build carries kernels for."""
    import torch

    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if not torch.cuda.is_available():
        return DeviceFacts(mps=mps)
    count = torch.cuda.device_count()
    return DeviceFacts(
        cuda_capabilities=tuple(tuple(torch.cuda.get_device_capability(i)) for i in range(count)),
        cuda_names=tuple(torch.cuda.get_device_name(i) for i in range(count)),
        cuda_archs=tuple(torch.cuda.get_arch_list()),
        mps=mps,
    )


def gpu_runs_build(capability: tuple[int, int], archs: tuple[str, ...]) -> bool:
    """Whether a GPU of this compute capability runs kernels built for ``archs``.

    A cubin (``sm_XY``) runs on the same major version from minor Y up (``sm_XYa`` only on
    X.Y itself); PTX (``compute_XY``) is compiled for any GPU from X.Y up. A build that
    names no NVIDIA architecture (ROCm) is not judged here.
    """
    parsed = [m for m in map(_ARCH.fullmatch, archs) if m]
    if not parsed:
        return True
    return any(_runs(capability, m) for m in parsed)


def _runs(capability: tuple[int, int], arch: re.Match) -> bool:
    built = (int(arch.group(2)), int(arch.group(3)))
    if arch.group(1) == "compute":
        return capability >= built
    if arch.group(4) == "a":
        return capability == built
    return capability[0] == built[0] and capability >= built


def pick_device(requested: str, facts: DeviceFacts | None = None) -> str:
    """``auto`` becomes cuda, mps or cpu, whichever can run the model; a named one must.

    Raises :class:`ConfigError` (one line naming the fix) for a device that cannot.
    """
    if requested == "cpu":
        return "cpu"
    if requested == "auto" and facts is None:
        return _auto_device()
    facts = facts or read_device_facts()
    if requested == "auto":
        return _choose_auto(facts)
    if requested == "mps":
        if not facts.mps:
            raise ConfigError(
                "--device mps: MPS is not available here (it needs Apple silicon, macOS 12.3 "
                "or later and a PyTorch built with MPS); use --device cpu."
            )
        return "mps"
    return _check_cuda(requested, facts)


@cache
def _auto_device() -> str:
    # once per process: the notice about a passed-over GPU is given once
    if no_gpu_reachable():
        return "cpu"
    return _choose_auto(read_device_facts())


def no_gpu_reachable() -> bool:
    """True where torch could see no GPU, decided without importing it: Linux with none
    of ``GPU_NODES`` (elsewhere, e.g. MPS on macOS, torch is asked)."""
    return sys.platform.startswith("linux") and not any(map(os.path.exists, GPU_NODES))


def _choose_auto(facts: DeviceFacts) -> str:
    if facts.cuda_count:
        problem = facts.cuda_problem(0)
        if problem is None:
            return "cuda"
        log.warning("%s; running on the CPU instead.", problem)
    return "mps" if facts.mps else "cpu"


def _check_cuda(requested: str, facts: DeviceFacts) -> str:
    _, _, number = requested.partition(":")
    if number and not number.isdigit():
        raise ConfigError(f"--device {requested}: give the GPU as cuda:0, cuda:1, ...")
    index = int(number or 0)
    count = facts.cuda_count
    if not count:
        raise ConfigError(f"--device {requested}: no CUDA GPU is usable here; use --device cpu.")
    if index >= count:
        valid = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise ConfigError(
            f"--device {requested}: there is no GPU {index}; this machine has {count} "
            f"({valid}); use one of those or --device cpu."
        )
    problem = facts.cuda_problem(index)
    if problem:
        raise ConfigError(
            f"--device {requested}: {problem}; install a PyTorch build for this GPU or use "
            "--device cpu."
        )
    return requested


def device_and_precision(settings: Settings) -> tuple[str, str]:
    """Where and in what precision these settings run the model; checked, nothing loads.

    The pixel test encoder runs on the CPU in fp32 and imports no torch.
    """
    if settings.encoder == ENCODER_PIXELS:
        return "cpu", "fp32"
    device = pick_device(settings.device)
    return device, pick_precision(settings.precision, device)


def pick_precision(requested: str, device: str) -> str:
    """fp16 on GPUs, bf16 on CPUs with native bf16 (AVX-512-BF16/AMX), else fp32.

    A precision the device does not run is refused (:class:`ConfigError`), never
    silently replaced: fp16 runs on GPUs only, bf16 on the CPU only.
    """
    gpu = device != "cpu"
    if requested != "auto":
        allowed = GPU_PRECISIONS if gpu else CPU_PRECISIONS
        if requested not in allowed:
            where = f"on {device}" if gpu else "on the CPU"
            raise ConfigError(
                f"--precision {requested} does not run {where}; use {', '.join(allowed)} or auto."
            )
        return requested
    if gpu:
        return "fp16"
    if not cpu_has_native_bf16():  # read from /proc: torch need not be imported
        return "fp32"
    import torch

    try:
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
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
