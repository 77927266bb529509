"""open_clip's network for a spec: built, its weights loaded (or drawn with a fixed seed).

fp32 and eager, before any speed-up; :class:`~searchapp.model.encoder.ClipEmbedder` adds
those, and the fidelity reference compares against this plain form.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from searchapp.errors import WeightsUnavailableError
from searchapp.model.hub import fetch_checkpoint, require_hub_model
from searchapp.model.spec import RANDOM_SEED, ModelSpec, announce_random_weights

# open_clip logs on the root logger; its records are moved here, at DEBUG
open_clip_log = logging.getLogger("open_clip")


def create_network(spec: ModelSpec, *, announce: bool = True):  # noqa: ANN201 - a torch Module
    """The open_clip model of a CLIP spec, in eval mode.

    Random weights are drawn with a fixed seed, so every call returns the same model (and
    are announced unless ``announce`` is False).
    """
    import torch

    cfg = spec.preprocess
    kwargs = dict(
        image_mean=cfg.mean,
        image_std=cfg.std,
        image_interpolation=cfg.interpolation,
        image_resize_mode=cfg.resize_mode,
    )
    if spec.weights_kind == "random":
        if announce:
            announce_random_weights()
        torch.manual_seed(RANDOM_SEED)
        with open_clip_logs_demoted():
            model = _create_initialized(spec, kwargs)
        _spread_random_init(model)
        return model.eval()
    if spec.weights_kind == "tag":
        pretrained = fetch_checkpoint(spec.model, spec.weights)
    elif spec.weights_kind == "file":
        pretrained = spec.weights
    else:  # schema: the hf-hub:/local-dir: name carries its own weights
        require_hub_model(spec.weights)
        pretrained = None
    return _create_checked(spec, pretrained, kwargs).eval()


def _create_checked(spec: ModelSpec, pretrained: str | None, kwargs: dict):  # noqa: ANN202
    try:
        with open_clip_logs_demoted():
            if pretrained is None:  # hf-hub:/local-dir: open_clip reads its own config
                return _create_initialized(spec, kwargs)
            return _create_uninitialized(spec, pretrained, kwargs)
    except Exception as err:  # open_clip and the hub raise many types; all mean "no weights"
        # torch colours parts of its messages; a one-line error must stay plain text
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
        if "Weights only load failed" in text:  # torch's advice to turn the safety off
            text = "not a .safetensors file, nor a PyTorch checkpoint of plain tensors"
        line = text.splitlines()[0] if text else ""
        line = line if len(line) <= 200 else line[:199] + "…"
        # a bare "101" (an unpickler's byte) says nothing without its kind
        reason = f"{type(err).__name__}: {line}" if len(line) < 20 else line
        if spec.weights_kind == "file":
            raise WeightsUnavailableError(
                f"cannot load {spec.model} weights from {pretrained} ({reason}); give an "
                f"open_clip checkpoint of {spec.model} (.safetensors or .bin), or "
                "--weights random to try the app without meaningful results."
            ) from err
        raise WeightsUnavailableError(
            f"cannot load {spec.model} weights {spec.weights or pretrained!r}"
            f" ({reason}). Connect to the internet once so they download to the Hugging Face"
            " cache, or pass --weights PATH to a local checkpoint, or --weights random to try"
            " the app without meaningful results."
        ) from err


def _create_initialized(spec: ModelSpec, kwargs: dict):  # noqa: ANN202
    import open_clip

    model, _, _ = open_clip.create_model_and_transforms(
        spec.open_clip_name, pretrained=None, weights_only=True, **kwargs
    )
    return model


def _create_uninitialized(spec: ModelSpec, checkpoint: str, kwargs: dict):  # noqa: ANN202
    """Built on the meta device (no memory, no random init), then the checkpoint's tensors
    assigned in place: the random init open_clip would draw first is over half of a
    load's time, and every value of it is overwritten."""
    import open_clip
    import torch

    with torch.device("meta"):
        model, _, _ = open_clip.create_model_and_transforms(
            spec.open_clip_name, pretrained=None, device="meta", **kwargs
        )
    # open_clip's own loader (key conversions, resizes), with the tensors assigned
    model.load_state_dict = functools.partial(model.load_state_dict, assign=True)
    try:
        open_clip.load_checkpoint(model, checkpoint, strict=True, weights_only=True)
    finally:
        del model.load_state_dict
    empty = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if empty:
        raise ValueError(f"the checkpoint lacks {len(empty)} tensors, e.g. {empty[0]}")
    return model


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


class _OpenClipRecords(logging.Filter):
    """Takes open_clip's own records off the root logger and re-logs them at DEBUG.

    open_clip logs through ``logging.info``/``logging.warning`` (the root logger), e.g.
    "Model initialized randomly" at WARNING, which we announce ourselves; every other
    record on the root logger passes untouched.
    """

    def __init__(self, package_dir: str) -> None:
        super().__init__()
        self.package_dir = package_dir

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.pathname.startswith(self.package_dir):
            return True
        open_clip_log.debug("%s: %s", record.levelname, record.getMessage())
        return False


@contextmanager
def open_clip_logs_demoted() -> Iterator[None]:
    """While open_clip builds a model, its root-logger records go to ``open_clip`` at DEBUG."""
    import open_clip

    # as its code objects name their files (record.pathname), so not resolved
    records = _OpenClipRecords(str(Path(open_clip.__file__).parent))
    root = logging.getLogger()
    root.addFilter(records)
    try:
        yield
    finally:
        root.removeFilter(records)
