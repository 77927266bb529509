"""Settings: one object filled from defaults, ``SEARCHAPP_*`` variables and CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs

from searchapp.errors import ConfigError
from searchapp.paths import shell_quote

DEFAULT_MODEL = "MobileCLIP-S2"
DEFAULT_WEIGHTS = ""  # the model's standard tag (MobileCLIP-S2: datacompdr)
RANDOM_WEIGHTS = "random"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")  # or cuda:N
MAX_BATCH = 1024
UI_PORT = 8501  # searchapp ui's default port (Streamlit's)
ENCODER_CLIP = "clip"
ENCODER_PIXELS = "pixels"  # a test encoder: vectors from raw pixels, meaningless for search
ENCODERS = (ENCODER_CLIP, ENCODER_PIXELS)
# here, not in searchapp.model, so a search answered by the watcher imports no model code
RANDOM_WARNING = (
    "WARNING: random model weights are in use (--weights random): search results carry no "
    "meaning. Use the real MobileCLIP weights for real searches."
)
PIXELS_WARNING = (
    "WARNING: test encoder (SEARCHAPP_ENCODER=pixels): vectors come from raw pixels; "
    "results carry no meaning."
)


def default_model_cache_dir() -> Path:
    """Traced model towers (model/traced.py): derived from public weights, shared by libraries."""
    return Path(platformdirs.user_cache_dir("searchapp", appauthor=False)) / "models"


def default_data_dir() -> Path:
    """The per-user data directory (``~/.local/share/searchapp`` on Linux)."""
    return Path(platformdirs.user_data_dir("searchapp", appauthor=False))


def data_dir_flag(data_dir: Path) -> str:
    """`` --data-dir DIR`` (quoted for the shell) where the library is not the default one,
    so a command a message suggests works on that library; else nothing."""
    return "" if data_dir == default_data_dir() else f" --data-dir {shell_quote(str(data_dir))}"


def command_for(data_dir: Path) -> str:
    """``searchapp`` as a message suggests it for the library in ``data_dir``."""
    return "searchapp" + data_dir_flag(data_dir)


def ui_command(data_dir: Path, port: int) -> str:
    """``searchapp ui`` for that library on that port (``--port`` only where not the default)."""
    return f"{command_for(data_dir)} ui" + (f" --port {port}" if port != UI_PORT else "")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know; immutable, pass it around."""

    data_dir: Path = field(default_factory=default_data_dir)
    encoder: str = ENCODER_CLIP
    model: str = DEFAULT_MODEL
    weights: str = DEFAULT_WEIGHTS
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 16  # per model lane (docs/PERFORMANCE.md, "Tuning choices")
    decode_workers: int = 0  # 0: choose from the CPU count
    torch_threads: int = 0  # 0: automatic (indexing: per model lane; search: torch's default)
    model_lanes: int = 0  # 0: automatic; batches the model embeds at once while indexing
    reconcile_interval_s: float = 3600.0
    # keep the loaded model's towers as TorchScript, so later processes skip open_clip
    model_cache: bool = True
    model_cache_dir: Path = field(default_factory=default_model_cache_dir)
    idle_unload_s: float = 600.0  # the watcher frees its model after this long unused; 0 keeps it
    max_upload_mb: int = 20
    # how the watcher's engine listens: auto (a Unix socket where there are Unix sockets,
    # else a loopback port with a token), unix, or tcp
    engine_transport: str = "auto"
    ann_threshold: int = 200_000  # vectors from which search is approximate (IVF + SQ8)
    ui_secret: str = field(default="", repr=False)  # the page's access secret; never logged
    # decode and embed on a Ray cluster: "" (no Ray), local, auto, HOST:PORT or ray://URL
    ray_address: str = ""
    # LOCAL=REMOTE pairs: where the workers see a folder of this machine (they read it there)
    ray_shared_roots: tuple[str, ...] = ()
    ray_node_ip: str = ""  # this machine's Ray node address ("": Ray's choice; README, Ray section)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "library.sqlite3"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "vectors.faiss"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "writer.lock"

    @property
    def random_weights(self) -> bool:
        return self.weights == RANDOM_WEIGHTS

    def with_overrides(self, **values: object) -> Settings:
        """Return a copy with the non-None values applied and checked."""
        known = {f.name for f in fields(self)}
        clean = {k: v for k, v in values.items() if v is not None and k in known}
        if "data_dir" in clean:
            if not str(clean["data_dir"]).strip():  # Path("") is the current folder
                raise ConfigError("the data folder is empty; give one, or leave it out for "
                                  f"the default ({default_data_dir()}).")  # fmt: skip
            clean["data_dir"] = Path(str(clean["data_dir"])).expanduser().resolve()
        if "model_cache_dir" in clean:
            clean["model_cache_dir"] = Path(str(clean["model_cache_dir"])).expanduser().resolve()
        return validate_settings(replace(self, **clean))


_ENV = {
    "data_dir": "SEARCHAPP_DATA_DIR",
    "encoder": "SEARCHAPP_ENCODER",
    "model": "SEARCHAPP_MODEL",
    "weights": "SEARCHAPP_WEIGHTS",
    "device": "SEARCHAPP_DEVICE",
    "precision": "SEARCHAPP_PRECISION",
    "batch_size": "SEARCHAPP_BATCH_SIZE",
    "decode_workers": "SEARCHAPP_DECODE_WORKERS",
    "torch_threads": "SEARCHAPP_TORCH_THREADS",
    "model_lanes": "SEARCHAPP_MODEL_LANES",
    "reconcile_interval_s": "SEARCHAPP_RECONCILE_INTERVAL",
    "idle_unload_s": "SEARCHAPP_IDLE_UNLOAD",
    "model_cache": "SEARCHAPP_MODEL_CACHE",
    "model_cache_dir": "SEARCHAPP_MODEL_CACHE_DIR",
    "max_upload_mb": "SEARCHAPP_MAX_UPLOAD_MB",
    "engine_transport": "SEARCHAPP_ENGINE_TRANSPORT",
    "ann_threshold": "SEARCHAPP_ANN_THRESHOLD",
    "ui_secret": "SEARCHAPP_UI_SECRET",
    "ray_address": "SEARCHAPP_RAY_ADDRESS",
    "ray_shared_roots": "SEARCHAPP_RAY_SHARED_ROOTS",  # pairs separated by os.pathsep
    "ray_node_ip": "SEARCHAPP_RAY_NODE_IP",
}


def load_settings(**overrides: object) -> Settings:
    """Defaults, then environment variables, then explicit overrides (CLI flags)."""
    base = Settings()
    from_env: dict[str, object] = {}
    types = {f.name: f.type for f in fields(Settings)}
    for name, var in _ENV.items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        from_env[name] = _parse(raw, types[name], var)
    return base.with_overrides(**from_env).with_overrides(**overrides)


_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def _parse(raw: str, type_name: object, var: str) -> object:
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a number; unset it or give a number.") from None
    if type_name == "bool":
        if raw.lower() not in _BOOLS:
            raise ConfigError(f"{var}={raw!r} is not a yes/no value; use 1 or 0.")
        return _BOOLS[raw.lower()]
    if type_name == "tuple[str, ...]":
        return tuple(part for part in raw.split(os.pathsep) if part)
    return raw


def device_known(name: str) -> bool:
    """auto, cpu, cuda, cuda:N or mps."""
    return name in DEVICES or (name.startswith("cuda:") and name[5:].isdigit())


def validate_settings(s: Settings) -> Settings:
    """Reject values that would only fail later, with a message naming the fix."""
    if s.encoder not in ENCODERS:
        raise ConfigError(
            f"encoder {s.encoder!r} is unknown; use {ENCODER_CLIP} (or {ENCODER_PIXELS} in tests)."
        )
    if not 1 <= s.batch_size <= MAX_BATCH:
        raise ConfigError(f"batch size {s.batch_size} is out of range; use 1 to {MAX_BATCH}.")
    if s.precision not in PRECISIONS:
        raise ConfigError(
            f"precision {s.precision!r} is unknown; use one of {', '.join(PRECISIONS)}."
        )
    if not device_known(s.device):
        raise ConfigError(f"device {s.device!r} is unknown; use auto, cpu, cuda, cuda:N or mps.")
    if s.decode_workers < 0 or s.torch_threads < 0 or s.model_lanes < 0:
        raise ConfigError("worker and thread counts must be 0 (automatic) or more.")
    if s.ann_threshold < 1:
        raise ConfigError("the approximate-search threshold must be at least 1 vector.")
    if s.reconcile_interval_s <= 0:
        raise ConfigError("the reconcile interval must be a positive number of seconds.")
    for pair in s.ray_shared_roots:
        local, sep, remote = pair.partition("=")
        if not sep or not os.path.isabs(local) or not os.path.isabs(remote):
            raise ConfigError(
                f"--ray-shared-root {pair!r} is not LOCAL=REMOTE; give two absolute folders, "
                "e.g. /mnt/photos=/srv/photos."
            )
    if s.engine_transport not in ("auto", "unix", "tcp"):
        raise ConfigError(
            f"engine transport {s.engine_transport!r} is unknown; use auto, unix or tcp."
        )
    if s.idle_unload_s < 0:
        raise ConfigError("the idle unload time must be 0 (keep the model) or more seconds.")
    return s
