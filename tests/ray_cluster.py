"""A real two-node Ray cluster on loopback for tests, and the processes it is made of.

The head runs on 127.0.0.2 and the second node on 127.0.0.3 (Ray rewrites 127.0.0.1 to
the machine's network address), one CPU each, with token authentication on and a token
only these processes share. Each node is started by ``ray start`` in its own session, so
its processes form one process group: the tests stop exactly those groups, never other
users' Ray (no ``ray stop``).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from tests.helpers import PIXELS_ENV, free_port, wait_for

HEAD_IP, NODE_IP = "127.0.0.2", "127.0.0.3"
RAY_CLI = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


class Cluster:
    """``ray start --head`` and ``ray start --address`` as separate process groups."""

    def __init__(self) -> None:
        # short: Ray puts unix sockets under it (at most ~100 bytes a path)
        self.temp = Path(tempfile.mkdtemp(prefix="sa-ray-", dir="/tmp"))
        self.port = free_port(HEAD_IP)
        self.address = f"{HEAD_IP}:{self.port}"
        self.env = dict(
            os.environ,
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(16),
            RAY_USAGE_STATS_ENABLED="0",
            RAY_TMPDIR=str(self.temp),
        )
        self.groups: dict[str, int] = {}  # node name -> its process group
        self.started: list[int] = []  # every group started, so stop() leaves none behind

    def driver_env(self, **extra: str) -> dict[str, str]:
        """What a ``searchapp index --ray`` process needs: the token, the pixel encoder."""
        return dict(self.env, **PIXELS_ENV, **extra)

    def start(self) -> Cluster:
        """Start the nodes that are not running (a node without its head goes too)."""
        if not self.alive("head"):
            self.stop()
            head = ["--head", "--port", str(self.port), "--include-dashboard=false"]
            self._start("head", HEAD_IP, head)
        if not self.alive("node"):
            self.kill("node")  # what a lost raylet left of its node
            self._start("node", NODE_IP, ["--address", self.address])
        wait_for(lambda: self.nodes_alive() == 2, "both Ray nodes to join", 120)
        return self

    def _start(self, name: str, ip: str, args: list[str]) -> None:
        cmd = [*RAY_CLI, "start", "--node-ip-address", ip, "--num-cpus", "1"]
        cmd += ["--temp-dir", str(self.temp), "--disable-usage-stats", *args]
        proc = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=180, start_new_session=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        raylet = self._find(lambda p: p.info["name"] == "raylet" and ip in " ".join(p.cmdline()))
        self.groups[name] = os.getpgid(raylet.pid)
        self.started.append(self.groups[name])

    def _find(self, match) -> psutil.Process:  # noqa: ANN001
        for proc in psutil.process_iter(["name"]):
            try:
                if match(proc):
                    return proc
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        raise AssertionError("the Ray process just started is not running")

    def members(self, name: str) -> list[psutil.Process]:
        group = self.groups.get(name)
        out = []
        for proc in psutil.process_iter(["name"]):
            try:
                if group is not None and os.getpgid(proc.pid) == group:
                    out.append(proc)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        return out

    def raylet(self, name: str) -> psutil.Process | None:
        return next((p for p in self.members(name) if p.info["name"] == "raylet"), None)

    def alive(self, name: str) -> bool:
        proc = self.raylet(name)
        return proc is not None and proc.status() != psutil.STATUS_ZOMBIE

    def nodes_alive(self) -> int:
        return sum(self.alive(n) for n in ("head", "node"))

    def kill(self, name: str) -> None:
        """SIGKILL a node's whole process group (only the processes this cluster started)."""
        group = self.groups.pop(name, None)
        if group is None:
            return
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_for(lambda: not _group_alive(group), f"Ray {name} processes to exit", 30)

    def stop(self) -> None:
        for name in ("node", "head"):
            self.kill(name)
        for group in self.started:  # groups of nodes replaced after a loss
            if _group_alive(group):
                os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    # zombies (reaped by init later) still count for killpg: look for a live one
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == group and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False
