"""Checkpoints of named tags: found in the Hugging Face cache, else downloaded once; an
hf-hub:/local-dir: model's files, read for shipping to other machines."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from searchapp.config import Settings
from searchapp.errors import WeightsUnavailableError
from searchapp.model.spec import ModelSpec
from searchapp.model.traced import is_cached

log = logging.getLogger(__name__)

HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def fetch_checkpoint(model: str, tag: str) -> str:
    """Path of a tag's checkpoint: from the hub cache, else downloaded (with a progress bar).

    Fails fast with one message when the file is not cached and the hub is out of reach,
    instead of the hub client's minute of retries.
    """
    import open_clip
    from huggingface_hub import hf_hub_download

    repo = (open_clip.get_pretrained_cfg(model, tag).get("hf_hub") or "").strip("/")
    if not repo:
        raise WeightsUnavailableError(f"{model} {tag!r} has no Hugging Face hub source.")
    for filename in HUB_FILES:
        try:
            return hf_hub_download(repo, filename, local_files_only=True)
        except Exception:  # noqa: BLE001 - not cached under this name; try the next
            continue
    if not hub_reachable():
        raise WeightsUnavailableError(
            f"{model} weights {tag!r} are not in the Hugging Face cache and the hub cannot be"
            " reached. Connect to the internet once (they download to the hub cache and work"
            " offline after), or pass --weights PATH to a downloaded checkpoint"
            f" (e.g. {repo}/{HUB_FILES[0]}), or --weights random to try the app without"
            " meaningful results."
        )
    # a warning, so the default console shows why the first run waits
    log.warning("downloading %s weights (%s) to the Hugging Face cache...", model, repo)
    last: Exception | None = None
    for filename in HUB_FILES:
        try:
            return hf_hub_download(repo, filename)
        except Exception as err:  # noqa: BLE001 - try the other file name
            last = err
    raise WeightsUnavailableError(
        f"downloading {model} weights {tag!r} from {repo} failed ({last}); try again, or pass"
        " --weights PATH to a downloaded checkpoint."
    )


def require_hub_model(schema: str) -> None:
    """An ``hf-hub:`` model that is neither cached nor reachable fails at once, in one
    line, instead of after the hub client's half minute of retries and warnings."""
    if not schema.startswith("hf-hub:"):
        return
    from huggingface_hub import try_to_load_from_cache

    repo = schema.removeprefix("hf-hub:")
    try:
        cached = try_to_load_from_cache(repo, CONFIG_FILE)
    except ValueError as err:  # the hub client's HFValidationError: no ORG/REPO id
        raise WeightsUnavailableError(
            f"{schema} does not name a Hugging Face repository ({err}); write hf-hub:ORG/REPO."
        ) from None
    if isinstance(cached, str) or hub_reachable():
        return
    raise WeightsUnavailableError(
        f"the model {schema} is not in the Hugging Face cache and the hub cannot be reached."
        " Connect to the internet once (it downloads to the hub cache and works offline"
        " after), or pass --weights local-dir:FOLDER to a downloaded copy, or --weights"
        " random to try the app without meaningful results."
    )


def check_weights(settings: Settings, spec: ModelSpec, device: str, precision: str) -> None:
    """Missing tag or hub weights fail now, with their one-line fix, not after a long
    scan; a model whose traced towers are cached needs none."""
    if spec.weights_kind not in ("tag", "schema"):
        return
    if is_cached(settings, spec, device, precision):
        return
    if spec.weights_kind == "schema":
        require_hub_model(spec.weights)
    else:
        fetch_checkpoint(spec.model, spec.weights)


def hub_reachable(timeout: float = 4.0) -> bool:
    """Whether the hub answers a TCP connection (always False under HF_HUB_OFFLINE)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout).close()
    except OSError:
        return False
    return True


CONFIG_FILE = "open_clip_config.json"
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth")


def model_folder_files(schema: str) -> dict[str, bytes]:
    """An ``hf-hub:``/``local-dir:`` model as its folder's files (config and checkpoints),
    read once, so another machine can rebuild the folder and load it as ``local-dir:``.

    A local folder gives its config and every checkpoint file in it (open_clip then picks
    among the same names there as here); a hub model, its config and the checkpoint
    open_clip downloads for it.
    """
    try:
        if schema.startswith("local-dir:"):
            folder = Path(schema.removeprefix("local-dir:")).expanduser()
            files = [folder / CONFIG_FILE]
            files += sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        else:
            from huggingface_hub import hf_hub_download
            from open_clip.pretrained import download_pretrained_from_hf

            repo = schema.removeprefix("hf-hub:")
            files = [hf_hub_download(repo, CONFIG_FILE), download_pretrained_from_hf(repo)]
            files = [Path(f) for f in files]
        return {path.name: path.read_bytes() for path in files}
    except Exception as err:  # noqa: BLE001 - the hub and the filesystem raise many types
        raise WeightsUnavailableError(
            f"cannot read the model {schema} to send it to the workers ({err}); check that "
            f"the folder holds {CONFIG_FILE} and a checkpoint, or that the hub is reachable."
        ) from err
