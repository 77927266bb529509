"""``searchapp ui`` leaves no process behind: its Streamlit server stops when it does."""

from __future__ import annotations

import os
import signal
import sys

import psutil
import pytest

from tests.helpers import free_port, holds_for, wait_for
from tests.page import port_bindable, start_page, stop_group

pytestmark = pytest.mark.timeout(300)


def _server_of(pid: int) -> psutil.Process:
    children = psutil.Process(pid).children(recursive=True)
    servers = [c for c in children if "searchapp.ui.page_process" in c.cmdline()]
    assert len(servers) == 1, [c.cmdline() for c in children]
    return servers[0]


@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "ctrl-c"],
)
def test_a_stop_signal_stops_the_server_and_frees_the_port(tmp_path, signum, group) -> None:  # noqa: ANN001
    """Stopped quietly: ``kill`` or systemd signal searchapp ui alone; Ctrl+C in a terminal
    signals the whole foreground group, the server too (it once printed uvicorn's
    KeyboardInterrupt traceback and "Aborted!")."""
    port = free_port()
    log = tmp_path / "server.log"
    proc = start_page(tmp_path / "lib", port, log)
    try:
        server = _server_of(proc.pid)
        assert not port_bindable(port)
        (os.killpg if group else os.kill)(proc.pid, signum)
        assert proc.wait(timeout=30) == 0
        wait_for(lambda: not server.is_running(), "the Streamlit server to exit", timeout_s=15)
        assert port_bindable(port)
        said = log.read_text()
        assert "Traceback" not in said and "Aborted" not in said, said
    finally:
        stop_group(proc)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
def test_the_server_stops_when_searchapp_ui_is_killed(tmp_path) -> None:  # noqa: ANN001
    port = free_port()
    proc = start_page(tmp_path / "lib", port, tmp_path / "server.log")
    try:
        server = _server_of(proc.pid)
        proc.kill()  # no chance to pass anything on
        proc.wait(timeout=10)
        wait_for(lambda: not server.is_running(), "the orphaned server to exit", timeout_s=30)
        assert port_bindable(port)
    finally:
        stop_group(proc)


def test_open_shows_the_page_in_the_browser_once_it_answers(tmp_path) -> None:  # noqa: ANN001
    """``searchapp ui --open`` hands the address to the user's browser ($BROWSER here, as
    Python's webbrowser honours it), after the server answers, once."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(  # a browser that loads the page and notes what it got
        f"#!{sys.executable}\nimport sys, urllib.request\n"
        "status = urllib.request.urlopen(sys.argv[1], timeout=30).status\n"
        f"open({str(opened)!r}, 'a').write(f'{{status}} {{sys.argv[1]}}\\n')\n"
    )
    browser.chmod(0o755)
    port = free_port()
    env = {"BROWSER": str(browser), "DISPLAY": ""}
    proc = start_page(tmp_path / "lib", port, tmp_path / "server.log", env, "--open")
    try:
        wait_for(lambda: opened.exists() and opened.read_text(), "the browser to be started")
        holds_for(lambda: len(opened.read_text().splitlines()) == 1, "one browser start", 1.0)
        assert opened.read_text().split() == ["200", f"http://127.0.0.1:{port}/"]
    finally:
        stop_group(proc)


def test_a_server_killed_from_outside_is_said_in_one_line(capsys) -> None:  # noqa: ANN001
    """The page's server killed by the kernel's out-of-memory killer (or kill -9) ended
    ``searchapp ui`` with nothing said."""
    from searchapp.ui.launch import run_page

    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert run_page([sys.executable, "-c", suicide], dict(os.environ)) == 1
    said = capsys.readouterr().err
    assert said == (
        "searchapp: the page's server was stopped by SIGKILL (out of memory, or "
        "kill -9); start it again: searchapp ui\n"
    )
    assert said.count("\n") == 1
