"""The watcher's engine as real processes: the CLI asks it, falls back without it, and
nothing a client sends (or who sends it) gets past the socket or stops the daemon."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from searchapp.engine_client import SOCKET_NAME, _UnixConnection
from tests import helpers
from tests.helpers import imported, run_cli, write_jpegs

pytestmark = pytest.mark.timeout(300)

LIMITS = {"SEARCHAPP_MAX_UPLOAD_MB": "1"}
ENV = dict(os.environ, PYTHONUNBUFFERED="1", **LIMITS, **helpers.PIXELS_ENV)
IDENTITY = {"encoder": "pixels", "model": "MobileCLIP-S2", "weights": "random"}
SEARCHES = (
    ("search", "photo of a kayak", "-k", "4"),
    ("search", "kayak + 2:lake - people", "-k", "3", "--json"),
    ("search", "--like", "1", "-k", "3"),
    ("search", "--like", "1", "-k", "3", "--json"),
)


def cli(lib: Path, *args: str, timing: bool = False) -> subprocess.CompletedProcess:
    """The real ``searchapp`` command; ``timing`` adds ``-X importtime`` (to stderr)."""
    flags = ["-X", "importtime"] if timing else []
    cmd = [sys.executable, *flags, "-m", "searchapp.cli", "--data-dir", str(lib), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)


class Watcher:
    """A ``searchapp watch`` process serving the engine on its library's socket."""

    def __init__(self, lib: Path, *flags: str) -> None:
        self.lib = lib
        self.log_path = lib.parent / f"watch-{time.monotonic_ns()}.log"
        with open(self.log_path, "w") as log:
            cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(lib), "watch", *flags]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV)
        helpers.wait_for(self.healthy, "the engine to answer", 60, 0.1)

    def healthy(self) -> bool:
        assert self.proc.poll() is None, self.log_path.read_text()
        try:
            return request(self.lib, "GET", "health")[0] == 200
        except OSError:
            return False

    def model_loaded(self) -> bool:
        return request(self.lib, "GET", "status")[1]["model_loaded"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def request(lib: Path, method: str, name: str, body: bytes | None = None) -> tuple[int, dict]:
    """One raw HTTP request on the socket: (status, JSON answer)."""
    conn = _UnixConnection(lib / SOCKET_NAME, 2.0, 30.0)
    try:
        conn.request(method, f"/v1/{name}", body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def post(lib: Path, name: str, fields: dict) -> tuple[int, dict]:
    return request(lib, "POST", name, json.dumps({**fields, "identity": IDENTITY}).encode())


def build_library(base: Path, photos: int) -> tuple[Path, dict[tuple, str]]:
    """A library indexed by the CLI, and the in-process output of each of ``SEARCHES``."""
    root, lib = base / "photos", base / "lib"
    write_jpegs(root / "a", photos // 2, seed=1)
    write_jpegs(root / "b", photos - photos // 2, seed=2)
    done = run_cli(lib, "index", str(root), env=LIMITS)
    assert done.returncode == 0, done.stderr
    return lib, {args: run_cli(lib, *args, env=LIMITS).stdout for args in SEARCHES}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Path, dict[tuple, str], Watcher]]:
    """One library, its answers without a watcher, then a watcher serving it."""
    base = Path(tempfile.mkdtemp(prefix="engine-"))
    base.chmod(0o711)  # other users may pass through to the library (which stays 0700)
    lib, expected = build_library(base, 12)
    watcher = Watcher(lib, "--idle-unload", "1")
    yield lib, expected, watcher
    watcher.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_cli_prints_the_same_through_the_watcher_and_loads_no_model(served) -> None:  # noqa: ANN001
    lib, expected, _ = served
    for args, want in expected.items():
        got = cli(lib, *args, timing=True)
        assert got.returncode == 0, got.stderr
        assert got.stdout == want, args
        modules = imported(got.stderr)
        assert "searchapp.engine_client" in modules
        heavy = {"torch", "open_clip", "faiss", "numpy", "searchapp.library"} & modules
        assert not heavy, f"{args} answered in process ({heavy})"
    missing = cli(lib, "search", "--like", "999")
    assert missing.returncode == 1
    assert "no photo with id 999" in missing.stderr  # the in-process error, word for word


def test_malformed_requests_get_clear_errors_and_the_daemon_keeps_serving(served) -> None:  # noqa: ANN001
    lib, _, watcher = served
    cases = [
        (request(lib, "POST", "search", b"{not json"), 400, "not valid JSON"),
        (request(lib, "POST", "search", b"[1, 2]"), 400, "JSON object"),
        (post(lib, "search", {"text": "x", "kk": 3}), 400, "unknown field(s): kk"),
        (post(lib, "search", {"text": "x", "k": "ten"}), 400, "'k' must be an integer"),
        (post(lib, "search", {"text": "x", "like": 1}), 400, "exactly one of"),
        (post(lib, "search", {"text": "x", "filters": {"colour": "red"}}), 400, "colour"),
        (post(lib, "search", {"image_path": "relative.jpg"}), 400, "absolute path"),
        (post(lib, "encode", {"image_base64": "***"}), 400, "not valid base64"),
        (post(lib, "search", {"like": 999}), 404, "no photo with id 999"),
    ]
    not_image = base64.b64encode(b"this is not an image" * 10).decode()
    cases.append((post(lib, "encode", {"image_base64": not_image}), 422, ""))
    huge = json.dumps({"text": "x" * (3 * 2**20), "identity": IDENTITY}).encode()
    cases.append((request(lib, "POST", "search", huge), 413, "over the watcher's limit"))
    other = json.dumps({"text": "x", "identity": {**IDENTITY, "model": "Other"}}).encode()
    cases.append((request(lib, "POST", "search", other), 409, "another model"))
    for (status, body), want_status, want_text in cases:
        assert status == want_status, body
        assert set(body) == {"error"} and want_text in body["error"]["message"], body
    assert cases[9][0][1]["error"]["kind"] == "ImageDecodeError"
    assert watcher.healthy()
    status, body = post(lib, "search", {"text": "kayak", "k": 2})
    assert status == 200 and len(body["results"]) == 2


def test_searches_do_not_wait_for_a_writing_transaction(served) -> None:  # noqa: ANN001
    lib, expected, _ = served
    writer = sqlite3.connect(lib / "library.sqlite3", timeout=1)
    try:
        writer.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock, as a long batch does
        writer.execute("UPDATE meta SET value = value WHERE key = 'generation'")
        started = time.monotonic()
        got = cli(lib, *SEARCHES[0])
        assert got.stdout == expected[SEARCHES[0]]
        # a read that waited for the lock would wait out the 30 s busy timeout
        assert time.monotonic() - started < 20.0
    finally:
        writer.rollback()
        writer.close()


def test_idle_unload_frees_the_model_and_the_next_query_loads_it(served) -> None:  # noqa: ANN001
    lib, expected, watcher = served
    assert post(lib, "encode", {"text": "kayak"})[0] == 200
    helpers.wait_for(lambda: not watcher.model_loaded(), "the idle unload", 30, 0.1)
    assert "its model is not loaded" in cli(lib, "status").stdout
    assert cli(lib, *SEARCHES[0]).stdout == expected[SEARCHES[0]]  # loads it again
    # logged once the child has exited, after the status already says "not loaded"
    helpers.wait_for(
        lambda: "model: unloaded after" in watcher.log_path.read_text(), "the unload's log line"
    )


def test_another_user_cannot_connect(served) -> None:  # noqa: ANN001
    lib, _, _ = served
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a client as another user")
    sock = lib / SOCKET_NAME
    assert (sock.stat().st_mode & 0o777, lib.stat().st_mode & 0o777) == (0o600, 0o700)
    probe = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX)\n"
        "try: s.connect(sys.argv[1]); print('connected')\n"
        "except PermissionError: print('denied')\n"
    )
    other = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]
    run = [*other, "/usr/bin/python3", "-c", probe, str(sock)]
    assert subprocess.run(run, capture_output=True, text=True).stdout.strip() == "denied"
    lib.chmod(0o711)  # even with the folder open to pass through, the socket's mode holds
    try:
        assert subprocess.run(run, capture_output=True, text=True).stdout.strip() == "denied"
    finally:
        lib.chmod(0o700)
    mine = subprocess.run(["/usr/bin/python3", "-c", probe, str(sock)], capture_output=True)
    assert mine.stdout.decode().strip() == "connected"


def _holds_a_socket(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd).startswith("socket:") for fd in fds.iterdir())
    except OSError:
        return False


def test_watcher_killed_while_the_cli_waits(tmp_path: Path) -> None:
    lib, expected = build_library(tmp_path, 6)
    watcher = Watcher(lib)
    try:
        os.kill(watcher.proc.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(lib), *SEARCHES[1]]
        waiting = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        helpers.wait_for(lambda: _holds_a_socket(waiting.pid), "the CLI to connect", 30, 0.05)
        os.kill(watcher.proc.pid, signal.SIGKILL)
        watcher.proc.wait(timeout=30)
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err
        assert out.decode() == expected[SEARCHES[1]]  # answered in process, silently
        assert (lib / SOCKET_NAME).is_socket()  # left behind by the killed daemon
        stale = cli(lib, *SEARCHES[0], timing=True)
        assert stale.stdout == expected[SEARCHES[0]]
        assert "searchapp.library" in imported(stale.stderr)  # refused at once: in process
        verbose = cli(lib, "-v", *SEARCHES[0])
        assert "working in this process" in verbose.stderr
        watcher = Watcher(lib)  # replaces the stale socket
        again = cli(lib, *SEARCHES[0], timing=True)
        assert again.stdout == expected[SEARCHES[0]]
        assert "searchapp.library" not in imported(again.stderr)
    finally:
        watcher.stop()
