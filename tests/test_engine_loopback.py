"""The engine's loopback transport (Windows' only one; forced here with
``SEARCHAPP_ENGINE_TRANSPORT=tcp``): a 127.0.0.1 port and a per-start token in a 0600 file.
The CLI prints the same through it, nothing without the token gets an answer, and a killed
watcher's stale file means "search here" until the next watcher replaces it."""

from __future__ import annotations

import http.client
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from searchapp.engine_client import ENDPOINT_NAME, read_endpoint
from tests import helpers
from tests.helpers import run_cli, write_jpegs

pytestmark = pytest.mark.timeout(300)

ENV = dict(os.environ, SEARCHAPP_ENGINE_TRANSPORT="tcp", **helpers.PIXELS_ENV)
SEARCH = ("search", "kayak + 2:lake - people", "-k", "3", "--json")


def cli(lib: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-X", "importtime", "-m", "searchapp.cli", "--data-dir", str(lib)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=ENV, timeout=120)


def get(port: int, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/status", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def start_watcher(lib: Path) -> subprocess.Popen:
    log = open(lib.parent / f"watch-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(lib), "watch"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    log.close()
    return proc


def served_by(lib: Path, proc: subprocess.Popen, old_token: str = "") -> tuple[int, str]:
    """The watcher's (port, token) once it answers with them."""

    def answers() -> tuple[int, str] | None:
        assert proc.poll() is None
        endpoint = read_endpoint(lib / ENDPOINT_NAME)
        if endpoint is None or endpoint[1] == old_token:
            return None
        port, token = endpoint
        return endpoint if get(port, {"Authorization": f"Bearer {token}"}) == 200 else None

    return helpers.wait_for(answers, "the loopback engine to answer", 60, 0.1)


def test_loopback_engine_answers_only_with_its_token(tmp_path):
    root, lib = tmp_path / "photos", tmp_path / "lib"
    write_jpegs(root, 8, seed=3)
    tcp = {"SEARCHAPP_ENGINE_TRANSPORT": "tcp"}
    assert run_cli(lib, "index", str(root), env=tcp).returncode == 0
    alone = run_cli(lib, *SEARCH, env=tcp)
    assert alone.returncode == 0, alone.stderr
    proc = start_watcher(lib)
    try:
        port, token = served_by(lib, proc)
        assert stat.S_IMODE((lib / ENDPOINT_NAME).stat().st_mode) == 0o600
        through = cli(lib, *SEARCH)
        assert through.stdout == alone.stdout
        assert "numpy" not in through.stderr  # the watcher answered: no search code here
        assert get(port, {}) == 401
        assert get(port, {"Authorization": "Bearer " + "x" * len(token)}) == 401
        rebound = {"Authorization": f"Bearer {token}", "Host": f"attacker.example:{port}"}
        assert get(port, rebound) == 401

        proc.kill()  # the file stays behind, stale: the CLI searches alone
        proc.wait(timeout=30)
        stale = cli(lib, *SEARCH)
        assert stale.returncode == 0 and stale.stdout == alone.stdout
        assert "numpy" in stale.stderr
        proc = start_watcher(lib)
        served_by(lib, proc, old_token=token)  # replaced: a new port and token
    finally:
        proc.kill()
        proc.wait(timeout=30)
