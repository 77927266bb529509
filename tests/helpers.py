"""Small helpers for building a library in tests."""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.cli import main as cli_main
from searchapp.config import Settings
from searchapp.indexer.commands import Index, absolute
from searchapp.indexer.pipeline import IndexStats
from searchapp.indexer.writer import submit
from searchapp.library import Library
from searchapp.model import ImageEncoder

# What a subprocess (the CLI, a daemon, a reader) needs to use the pixel test encoder, as
# the in-process ``embedder`` fixture does: ``dict(os.environ, **PIXELS_ENV)``. Weights stay
# "random" so the CLI and the page say so, as they did when the tests ran the real model.
PIXELS_ENV = {
    "SEARCHAPP_ENCODER": "pixels",
    "SEARCHAPP_WEIGHTS": "random",
    "SEARCHAPP_PRECISION": "fp32",
    "HF_HUB_OFFLINE": "1",
}


def run_cli(
    data: Path | None, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``searchapp [--data-dir DATA] ARGS`` in this process, through the command's own ``main``.

    The same parser, output, one-line errors and exit code as the installed command, with the
    pixel encoder's environment (``PIXELS_ENV``) plus ``env``, minus the ~1.5 s of CPU that a
    new interpreter spends importing before the first line. What only a separate process can
    show (kill -9, signals, imports, another user, fault injection) runs the real command.
    """
    argv = [*(["--data-dir", str(data)] if data is not None else []), *args]
    overrides = {**PIXELS_ENV, **(env or {})}
    assert "SEARCHAPP_FAULT" not in overrides, "fault injection kills the process: use a subprocess"
    out, err = _text_sink("strict"), _text_sink("backslashreplace")  # as Python's own
    with pytest.MonkeyPatch.context() as patch, _own_root_logging():
        for name, value in overrides.items():
            patch.setenv(name, value)
        code = _call_main(argv, out, err)
    return subprocess.CompletedProcess(argv, code, _text_of(out), _text_of(err))


def imported(stderr: str) -> set[str]:
    """Module names from a process's ``-X importtime`` lines."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _call_main(argv: list[str], out: io.TextIOWrapper, err: io.TextIOWrapper) -> int:
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli_main(argv)
        except SystemExit as stop:  # argparse: --help, usage errors
            code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        except Exception:  # what the interpreter would print for an uncaught error
            traceback.print_exc(file=sys.stderr)
            code = 1
    return code


def _text_sink(errors: str) -> io.TextIOWrapper:
    """A UTF-8 text stream over bytes, like a pipe: ``reconfigure`` works, not a terminal."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, write_through=True)


def _text_of(stream: io.TextIOWrapper) -> str:
    stream.flush()
    raw = stream.detach()  # keep the bytes: closing the wrapper would close them too
    return raw.getvalue().decode("utf-8")  # strict, as subprocess.run(text=True) decodes


@contextmanager
def _own_root_logging() -> Iterator[None]:
    """Let the CLI's ``logging.basicConfig`` set up the root logger as in a new process."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = handlers
        root.setLevel(level)


def index_once(settings: Settings, embedder: ImageEncoder, *roots) -> IndexStats:  # noqa: ANN002
    """Add ``roots`` and index the library once, through the writer as the CLI does."""
    command = Index(add_roots=tuple(absolute(r) for r in roots))
    stats = submit(settings, command, embedder=embedder).stats
    assert stats is not None
    return stats


def service(settings: Settings, embedder: ImageEncoder) -> Library:
    return Library(settings, embedder)


def wait_for(
    check: Callable[[], object], what: str, timeout_s: float = 30.0, poll_s: float = 0.1
) -> object:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def holds_for(check: Callable[[], object], what: str, seconds: float, poll_s: float = 0.1) -> None:
    """Fail as soon as ``check`` turns falsy within ``seconds``: for what must NOT happen.

    A negative (nothing is indexed while a root is away) has no event to wait on; this
    checks it all along the window instead of once at its end.
    """
    deadline = time.monotonic() + seconds
    while True:
        if not check():
            pytest.fail(f"{what} stopped holding")
        if time.monotonic() >= deadline:
            return
        time.sleep(poll_s)


def write_jpegs(
    folder: Path, count: int, seed: int, size: int = 64, name: str = "img_{seed}_{i:03d}.jpg"
) -> list[Path]:
    """``count`` small JPEGs with distinct random content, named by the ``name`` template."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        path = folder / name.format(seed=seed, i=i)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


@contextmanager
def mounted_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A tmpfs mounted on ``mnt`` (unmounted after); skips where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root (run as root or in a container)")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def without_root_powers() -> list[str]:
    """A command prefix under which file permissions apply (root drops its capabilities
    through ``setpriv``), or skip saying why they cannot."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: permissions cannot be denied")
    prefix = [setpriv, "--bounding-set", "-all", "--inh-caps", "-all", "--"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop root capabilities here: {probe.stderr.decode().strip()}")
    return prefix


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` (a loopback address) right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def integrity(db_path: Path) -> str:
    """SQLite's own check of a library file: "ok", or what is wrong."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db_path)) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
