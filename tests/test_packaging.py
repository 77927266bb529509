"""A non-editable wheel installs one ``searchapp`` namespace and runs index, search and ui.

The wheel is built from this checkout and installed into a fresh virtual environment
whose third-party packages come from the test environment (a ``.pth`` line, so nothing
is downloaded); the commands then run from a folder outside the checkout, so only the
installed copy can be imported.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.helpers import PIXELS_ENV, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, **PIXELS_ENV, PYTHONPATH="")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "artifacts"),
    )
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, "-w", str(out), str(src)], check=True, timeout=300)
    return next(out.glob("searchapp-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel installed; returns its bin folder."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(env_dir)  # no ensurepip: ~5 s of CPU
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", purelib], text=True).strip())
    (site / "test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # this environment's pip installs into the new one (pip's --python)
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
           "--no-index"]  # fmt: skip
    subprocess.run([*pip, str(wheel)], check=True, timeout=300)
    return env_dir / "bin"


def test_wheel_holds_one_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"searchapp"}  # no top-level "ui", "indexer" or "cli" package
    for module in ("indexer/writer.py", "ui/app.py", "cli/main.py", "migrations/env.py"):
        assert f"searchapp/{module}" in names


def test_installed_wheel_indexes_searches_and_serves(installed: Path, tmp_path: Path) -> None:
    photos, lib = tmp_path / "photos", tmp_path / "lib"
    shutil.copytree(DATA, photos, ignore=shutil.ignore_patterns("*.md"))
    exe = [str(installed / "searchapp"), "--data-dir", str(lib)]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*exe, *args], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600
        )

    where = subprocess.run(
        [str(installed / "python"), "-c", "import searchapp.indexer as m; print(m.__file__)"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(installed.parent) in where.stdout  # the installed copy, not the checkout
    indexed = run("index", str(photos))
    assert indexed.returncode == 0, indexed.stderr
    assert "added 16" in indexed.stdout
    found = run("search", "--image", str(photos / "rocket.jpg"), "-k", "1", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["path"] == str((photos / "rocket.jpg").resolve())
    _serve_once(exe, tmp_path)


def _serve_once(exe: list[str], cwd: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*exe, "ui", "--port", str(port)], cwd=cwd, env=ENV, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _health(port), "the installed page to answer", timeout_s=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
