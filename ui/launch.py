"""Start the page's Streamlit server as a child process and make sure it stops with us.

A signal to ``searchapp ui`` (SIGTERM, SIGINT, SIGHUP) is passed on to the server, which gets
a grace period and is then killed; on Linux the server also gets SIGTERM when its parent
dies without a chance to pass anything on (``kill -9``).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable
from pathlib import Path

from searchapp.config import Settings
from searchapp.errors import ConfigError

SERVER = Path(__file__).resolve().with_name("server.py")
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)
GRACE_S = 10.0
OPEN_WAIT_S = 120.0  # a first start imports Streamlit and opens the library
_PR_SET_PDEATHSIG = 1


def page_command(host: str, port: int, max_upload_mb: int) -> list[str]:
    """The ``streamlit run`` command line for the guarded page."""
    return [
        sys.executable, "-m", "searchapp.ui.page_process", "run", str(SERVER),
        "--server.address", host,
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(max_upload_mb),
        "--server.enableXsrfProtection", "true",
        "--server.enableCORS", "true",
        "--server.headless", "true",  # no e-mail prompt; searchapp ui prints the URL
        "--server.fileWatcherType", "none",
        # Streamlit's gc.collect(2) after every rerun walks torch's and the model's objects
        # (~0.15 s holding the GIL, so thumbnails wait); Python's own GC still runs
        "--runner.postScriptGC", "false",
        "--client.toolbarMode", "minimal",  # no "Deploy" button or developer menu
    ]  # fmt: skip


def page_env(settings: Settings, secret: str) -> dict[str, str]:
    """The child's environment: the settings in effect, and the access secret or none."""
    env = dict(os.environ)
    env.update(
        {
            "SEARCHAPP_DATA_DIR": str(settings.data_dir),
            "SEARCHAPP_MODEL": settings.model,
            "SEARCHAPP_WEIGHTS": settings.weights,
            "SEARCHAPP_DEVICE": settings.device,
            "SEARCHAPP_PRECISION": settings.precision,
            "SEARCHAPP_BATCH_SIZE": str(settings.batch_size),
            "SEARCHAPP_UI_SECRET": secret,
        }
    )
    return env


def run_page(
    cmd: list[str],
    env: dict[str, str],
    grace_s: float = GRACE_S,
    on_started: Callable[[], object] | None = None,
    restart: str = "searchapp ui",
) -> int:
    """Run the server until it exits or we are told to stop; 0 when stopped by a signal.
    ``on_started`` runs once the child exists (a thread started before a ``preexec_fn``
    fork could hold a lock the child then waits on forever). ``restart`` is the command
    said when the server is killed from outside."""
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent())  # noqa: PLW1509
    if on_started is not None:
        on_started()
    stop = threading.Event()
    killer = threading.Timer(grace_s, proc.kill)
    killer.daemon = True

    def forward(signum: int, _frame: object) -> None:
        if not stop.is_set():
            stop.set()
            killer.start()
        proc.send_signal(signum)  # a no-op once the child is gone

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if stop.is_set():
        return 0
    if code < 0:  # killed from outside (the kernel's out-of-memory killer, kill -9): say so
        why = " (out of memory, or kill -9)" if -code == getattr(signal, "SIGKILL", None) else ""
        print(f"searchapp: the page's server was stopped by {_signal_name(-code)}{why}; "
              f"start it again: {restart}", file=sys.stderr)  # fmt: skip
        return 1
    return code


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork: the hook only calls it
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


def check_port_free(host: str, port: int) -> None:
    """Refuse, before saying "serving", a port something else listens on (Streamlit would
    print its own log line after ours and exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", port))  # noqa: S104 - the bind asked for
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} is in use (another searchapp ui?); "
                                  "choose another with --port N.") from None  # fmt: skip
            raise ConfigError(f"cannot serve on {host}:{port} ({err.strerror or err}); "
                              "check --host and --port.") from None  # fmt: skip


def http_url(host: str, port: int) -> str:
    """``http://host:port/``, an IPv6 address in brackets."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def page_url(host: str, port: int) -> str:
    """The address a browser on this machine uses: loopback where the server binds them all."""
    return http_url({"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host), port)


def find_browser() -> webbrowser.BaseBrowser | None:
    """The browser ``webbrowser`` would start: the user's $BROWSER, or a graphical one;
    None where it would fall back to a text browser (lynx, w3m) in this terminal."""
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return None
    if os.environ.get("BROWSER"):
        return browser  # the user's own choice, whatever it is
    console = type(browser) is webbrowser.GenericBrowser  # xdg-open is a BackgroundBrowser
    return None if console else browser


def open_when_ready(url: str, browser: webbrowser.BaseBrowser, wait_s: float = OPEN_WAIT_S) -> None:
    """Start a daemon thread that opens ``url`` in ``browser`` once the server answers."""
    thread = threading.Thread(target=_open_after_start, args=(url, browser, wait_s), daemon=True)
    thread.start()


def _open_after_start(url: str, browser: webbrowser.BaseBrowser, wait_s: float) -> None:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with direct.open(url + "_stcore/health", timeout=2):
                break
        except urllib.error.HTTPError:
            break  # it answers (the guard may ask for the secret): the page is up
        except OSError:
            time.sleep(0.25)  # not listening yet
    else:
        print(f"searchapp: the page did not answer in {wait_s:.0f} s; not opening a browser",
              file=sys.stderr)  # fmt: skip
        return
    browser.open(url)
