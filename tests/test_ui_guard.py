"""Who may reach the page: Host, Origin, fetch metadata and the access secret.

The policy is checked as a function, then against two real ``searchapp ui`` processes on
loopback ports (one open, one with an access secret), with raw HTTP requests that set their
own Host header and raw websocket handshakes that set their own Host and Origin.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from urllib.parse import urlencode

import pytest

from searchapp import cli
from searchapp.errors import ConfigError
from searchapp.ui import launch
from searchapp.ui.guard import LOGIN_PATH, choose_secret, policy_for
from searchapp.ui.peer import owner_checks_work
from tests.helpers import free_port
from tests.page import request, start_page, stop_group, websocket

SECRET = "correct-horse-battery-staple"
pytestmark = pytest.mark.timeout(300)


def test_loopback_binds_need_no_secret_others_get_a_fresh_one() -> None:
    for bind in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert choose_secret(bind, "") == ("", False)
    first, generated = choose_secret("0.0.0.0", "")
    assert generated and len(first) >= 20
    assert choose_secret("0.0.0.0", "")[0] != first
    assert choose_secret("192.168.1.5", "")[1]
    assert choose_secret("photos.lan", "")[1]
    assert choose_secret("127.0.0.1", SECRET) == (SECRET, False)
    with pytest.raises(ConfigError, match="shorter than"):
        choose_secret("0.0.0.0", "short")


def test_policy_accepts_only_the_started_address_and_port() -> None:
    policy = policy_for("127.0.0.1", 8501)
    for host in ("127.0.0.1:8501", "localhost:8501", "[::1]:8501", "LOCALHOST.:8501"):
        assert policy.host_allowed(host), host
    for host in ("evil.example:8501", "127.0.0.1:8502", "127.0.0.1", "", None,
                 "user@127.0.0.1:8501", "127.0.0.1:8501/x", "127.0.0.1:8501, evil.example:8501",
                 "127.0.0.1:99999", "127.1:8501"):  # fmt: skip
        assert not policy.host_allowed(host), host
    assert policy.origin_allowed(None)  # not a web page: a local program
    assert policy.origin_allowed("http://localhost:8501")
    for origin in ("http://localhost:9999", "https://localhost:8501", "null",
                   "http://evil.example:8501", "http://localhost:8501/path"):  # fmt: skip
        assert not policy.origin_allowed(origin), origin


def test_policy_for_wildcard_and_named_binds() -> None:
    wildcard = policy_for("0.0.0.0", 8501, SECRET)
    assert wildcard.host_allowed("192.168.1.20:8501")  # an IP literal cannot be rebound
    assert wildcard.host_allowed("[fe80::1]:8501")
    assert not wildcard.host_allowed("evil.example:8501")
    assert not wildcard.host_allowed("192.168.1.20:8502")
    named = policy_for("photos.lan", 80, SECRET)
    assert named.host_allowed("photos.lan") and named.host_allowed("photos.lan:80")
    assert not named.host_allowed("127.0.0.1:80")
    assert SECRET not in repr(named) and SECRET not in named.token()


def test_cli_prints_a_generated_secret_beyond_loopback(monkeypatch, tmp_path, capsys) -> None:  # noqa: ANN001
    seen: list[dict[str, str]] = []
    monkeypatch.setattr(launch, "run_page", lambda cmd, env, **_: seen.append(env) or 0)
    monkeypatch.delenv("SEARCHAPP_UI_SECRET", raising=False)
    base = ["--data-dir", str(tmp_path / "lib"), "ui", "--port", "9999"]
    assert cli.main([*base, "--host", "0.0.0.0"]) == 0
    secret = seen[-1]["SEARCHAPP_UI_SECRET"]
    assert (
        len(secret) >= 20 and f"access secret for this start: {secret}" in capsys.readouterr().err
    )
    assert cli.main(base) == 0
    assert seen[-1]["SEARCHAPP_UI_SECRET"] == ""
    assert "secret" not in capsys.readouterr().err
    monkeypatch.setenv("SEARCHAPP_UI_SECRET", "short")
    assert cli.main([*base, "--host", "0.0.0.0"]) == 1 and len(seen) == 2
    assert "shorter than" in capsys.readouterr().err


@pytest.fixture(scope="module")
def open_page(tmp_path_factory):  # noqa: ANN001, ANN201
    """A page on a loopback port with no secret: ``(port, static asset path)``."""
    folder = tmp_path_factory.mktemp("open-page")
    port = free_port()
    proc = start_page(folder / "lib", port, folder / "server.log")
    try:
        code, _, html = request(port, "/", f"127.0.0.1:{port}")
        assert code == 200
        asset = re.search(rb'(static/js/[^"\']+\.js)', html)
        assert asset, "the page's HTML names no script"
        yield port, "/" + asset.group(1).decode()
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def locked_page(tmp_path_factory):  # noqa: ANN001, ANN201
    """A page on a loopback port that the user gave an access secret: its port."""
    folder = tmp_path_factory.mktemp("locked-page")
    port = free_port()
    proc = start_page(folder / "lib", port, folder / "server.log", {"SEARCHAPP_UI_SECRET": SECRET})
    try:
        yield port
    finally:
        stop_group(proc)


def test_the_started_address_is_served(open_page) -> None:  # noqa: ANN001
    port, asset = open_page
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        code, _, html = request(port, "/", host)
        assert code == 200 and b"<html" in html.lower(), host
        assert request(port, "/_stcore/health", host)[0] == 200
        assert request(port, asset, host)[0] == 200
        assert websocket(port, host, f"http://{host}") == 101
    assert websocket(port, f"127.0.0.1:{port}", None) == 101  # a local program: no Origin


OTHER_ACCOUNT_PROBE = """
import http.client, sys
port = int(sys.argv[1])
for path, extra in (("/", {}), ("/_stcore/health", {}), ("/_stcore/stream", {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "streamlit"})):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}", **extra})
    resp = conn.getresponse()
    print(resp.status, resp.read().decode(errors="replace").strip())
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("setpriv"),
    reason="needs Linux, root and setpriv to connect as another account",
)
def test_another_account_on_this_computer_is_refused(open_page) -> None:  # noqa: ANN001
    """Loopback keeps other machines out, not the other accounts here: the page answers
    only connections its own account holds (sock_diag tells; ui/peer.py)."""
    assert owner_checks_work(), "the owner check is on where this test runs"
    port, _ = open_page
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, sys.executable, "-I", "-c", OTHER_ACCOUNT_PROBE, str(port)],
                           capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    lines = probe.stdout.splitlines()
    assert len(lines) == 3 and all(
        line.startswith("403 ") and "belongs to another account" in line for line in lines[:2]
    ), probe.stdout
    assert lines[2].startswith("403"), "the live connection too"
    assert request(port, "/_stcore/health", f"127.0.0.1:{port}")[0] == 200  # this account


@pytest.mark.skipif(not owner_checks_work(), reason="the kernel cannot tell the peer here")
def test_the_owner_check_answers_this_account_and_says_when_it_cannot_tell() -> None:
    import socket

    from searchapp.ui.guard import UNKNOWN_PEER, AccessGuard

    guard = AccessGuard(lambda *_: None, policy_for("127.0.0.1", 8501, owner_uid=os.getuid()))
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()) as client,
    ):
        server.accept()[0].close()
        scope = {"client": client.getsockname(), "server": server.getsockname()}
        assert guard._peer_refusal(scope) is None
    gone = {"client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8501)}  # no such socket
    assert guard._peer_refusal(gone) == UNKNOWN_PEER


def test_a_wrong_host_is_refused_on_every_route(open_page) -> None:  # noqa: ANN001
    port, asset = open_page
    paths = ("/", "/_stcore/health", "/_stcore/host-config", asset, "/media/x.jpg")
    for host in (f"evil.example:{port}", f"127.0.0.1:{free_port()}", "localhost"):
        for path in paths:
            code, _, body = request(port, path, host)
            assert code == 403 and b"not the one the page was started on" in body, (host, path)
        assert websocket(port, host, f"http://{host}") == 403, host


def test_the_live_connection_refuses_other_origins(open_page) -> None:  # noqa: ANN001
    port, _ = open_page
    host = f"127.0.0.1:{port}"
    for origin in (f"http://localhost:{free_port()}", "http://evil.example",
                   f"http://evil.example:{port}", "null", f"https://127.0.0.1:{port}"):  # fmt: skip
        assert websocket(port, host, origin) == 403, origin
    assert websocket(port, host, f"http://localhost:{port}") == 101


def test_other_pages_cannot_read_or_embed(open_page) -> None:  # noqa: ANN001
    port, asset = open_page
    host = f"127.0.0.1:{port}"
    other = {"Origin": f"http://localhost:{free_port()}"}
    assert request(port, "/_stcore/health", host, other)[0] == 403
    embed = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"}
    assert request(port, asset, host, embed)[0] == 403
    visit = {
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document",
    }
    assert request(port, "/", host, visit)[0] == 200  # following a link to the page is fine
    own = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"}
    assert request(port, asset, host, own)[0] == 200


def test_without_the_secret_the_page_asks_and_nothing_else_answers(locked_page) -> None:  # noqa: ANN001
    port = locked_page
    host = f"127.0.0.1:{port}"
    code, headers, body = request(port, "/", host)
    assert code == 401 and b'name="secret"' in body and b"streamlit" not in body.lower()
    assert headers["x-frame-options"] == "DENY"
    for path in (
        "/_stcore/health",
        "/media/0123abcd.jpg",
        "/static/js/x.js",
        "/_stcore/upload_file/s/f",
    ):
        code, _, body = request(port, path, host)
        assert code == 403 and b"access secret is missing" in body, path
    assert websocket(port, host, f"http://{host}") == 403


def test_the_right_secret_sets_a_cookie_that_opens_everything(locked_page) -> None:  # noqa: ANN001
    port = locked_page
    host = f"127.0.0.1:{port}"
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://{host}"}
    wrong = urlencode({"secret": SECRET + "x"}).encode()
    code, headers, body = request(port, LOGIN_PATH, host, form, wrong)
    assert code == 401 and "set-cookie" not in headers and b"not the secret" in body
    right = urlencode({"secret": SECRET}).encode()
    evil = dict(form, Origin="http://evil.example")
    assert request(port, LOGIN_PATH, host, evil, right)[0] == 403
    code, headers, _ = request(port, LOGIN_PATH, host, form, right)
    assert code == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";")[0]
    assert cookie.startswith(f"searchapp_access_{port}=") and SECRET not in cookie
    assert "httponly" in headers["set-cookie"].lower()
    assert "samesite=strict" in headers["set-cookie"].lower()
    code, _, html = request(port, "/", host, {"Cookie": cookie})
    assert code == 200 and b"<html" in html.lower() and b'name="secret"' not in html
    assert request(port, "/_stcore/health", host, {"Cookie": cookie})[0] == 200
    assert request(port, "/media/0123abcd.jpg", host, {"Cookie": cookie})[0] == 404  # no such file
    assert websocket(port, host, f"http://{host}", cookie) == 101
    forged = cookie[:-4] + "0000"
    assert request(port, "/_stcore/health", host, {"Cookie": forged})[0] == 403
    # the guard still checks Host and Origin for a holder of the cookie
    assert request(port, "/", f"evil.example:{port}", {"Cookie": cookie})[0] == 403
