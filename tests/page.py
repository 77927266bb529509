"""Start ``searchapp ui`` as a real process on a loopback port, and talk to it raw."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_for

START_S = 120.0  # a cold Streamlit start on a busy 2-core machine


def port_bindable(port: int) -> bool:
    """Whether nothing listens on ``port`` any more (TIME_WAIT leftovers do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def start_page(
    data_dir: Path, port: int, log: Path, env: dict[str, str] | None = None, *flags: str
) -> subprocess.Popen:
    """``python -m searchapp.cli ui [FLAGS]`` in its own session; returns once the port
    answers HTTP."""
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data_dir),
           "--weights", "random", "ui", "--port", str(port), *flags]  # fmt: skip
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "SEARCHAPP_PRECISION": "fp32", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    def answering() -> bool:
        assert proc.poll() is None, f"searchapp ui exited with {proc.returncode}: {log.read_text()}"
        return status("127.0.0.1", port, "/_stcore/health") is not None

    wait_for(answering, f"searchapp ui on port {port}", timeout_s=START_S, poll_s=0.3)
    return proc


def stop_group(proc: subprocess.Popen) -> None:
    """Stop the page and everything it started (test cleanup, whatever state it is in)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):  # the group may outlive its leader
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def request(
    port: int,
    path: str,
    host: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One GET (or, with a body, POST) to 127.0.0.1:``port`` with an explicit Host header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.putrequest("GET" if body is None else "POST", path, skip_host=True)
        conn.putheader("Host", host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def status(address: str, port: int, path: str) -> int | None:
    try:
        return request(port, path, f"{address}:{port}")[0]
    except OSError:
        return None


def websocket(port: int, host: str, origin: str | None, cookie: str = "") -> int:
    """Open the page's live connection with this Host and Origin: 101, or the refusal status."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def attempt() -> int:
        try:
            async with connect(
                f"ws://{host}/_stcore/stream",
                host="127.0.0.1",  # the TCP peer; the URI's host name goes out as Host
                port=port,
                origin=origin,  # type: ignore[arg-type]
                subprotocols=["streamlit"],  # type: ignore[list-item]
                additional_headers={"Cookie": cookie} if cookie else None,
                open_timeout=15,
            ):
                return 101
        except InvalidStatus as err:
            return err.response.status_code

    return asyncio.run(attempt())
