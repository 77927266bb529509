"""UI and model security: bind address, read guard, upload bounds, safe checkpoint loading."""

from __future__ import annotations

import http.client
import io
import os
import pickle
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from searchapp.config import load_settings
from searchapp.errors import AccessDeniedError, ImageDecodeError, QueryError, SearchAppError
from tests.helpers import PIXELS_ENV, free_port, index_once, service
from tests.test_hostile import jpeg_bytes, png_bomb

REPO = Path(__file__).resolve().parent.parent
APP_DIRS = ("searchapp", "indexer", "ui", "cli")
UNSAFE = (r"shell\s*=\s*True", r"\bpickle\b", r"\bos\.system\(", r"(?<![.\w])eval\(")


def test_read_guard_refuses_paths_outside_indexed_roots(settings, embedder, tmp_path):
    root, outside = tmp_path / "photos", tmp_path / "private"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    sibling = tmp_path / "photos2"  # shares the root's name as a prefix
    sibling.mkdir()
    (root / "a.jpg").write_bytes(jpeg_bytes(1))
    (root / "sub" / "b.jpg").write_bytes(jpeg_bytes(2))
    (root / "notes.txt").write_text("not a photo")
    (outside / "secret.jpg").write_bytes(jpeg_bytes(3))
    (sibling / "evil.jpg").write_bytes(jpeg_bytes(4))
    os.symlink(outside / "secret.jpg", root / "link_out.jpg")  # indexed, but leads out
    os.symlink(outside, root / "dir_out")  # folder link: never followed by the scanner
    index_once(settings, embedder, root)
    svc = service(settings, embedder)
    try:
        assert svc.photo_file(root / "a.jpg") == (root / "a.jpg").resolve()
        assert svc.photo_file(f"{root}/sub/../a.jpg") == (root / "a.jpg").resolve()
        refused = [
            f"{root}/../private/secret.jpg",
            f"{root}/sub/../../private/secret.jpg",
            str(outside / "secret.jpg"),
            "/etc/passwd",
            "/etc/../etc/passwd",
            str(root / "link_out.jpg"),
            str(root / "dir_out" / "secret.jpg"),
            str(sibling / "evil.jpg"),
            str(root / "notes.txt"),
            str(root),
            "",
        ]
        for path in refused:
            with pytest.raises(AccessDeniedError):
                svc.photo_file(path)
    finally:
        svc.close()


def test_uploads_are_capped_and_decoded_with_the_same_bounds(settings, embedder, tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg_bytes(1))
    index_once(settings, embedder, root)
    svc = service(settings, embedder)
    try:
        assert svc.search_image(jpeg_bytes(1), k=1)[0].path == str(root / "a.jpg")
        too_big = b"\xff\xd8" + b"\0" * (settings.max_upload_mb * 2**20)
        with pytest.raises(QueryError, match="MB"):
            svc.search_image(too_big)
        with pytest.raises(ImageDecodeError, match="decompression bomb"):
            svc.search_image(png_bomb())
        for data in (b"", b"<html></html>", jpeg_bytes(5)[:300]):
            with pytest.raises(ImageDecodeError):
                svc.search_image(data)
    finally:
        svc.close()


def _other_local_addresses() -> list[tuple[int, str]]:
    """This machine's IPv4 and IPv6 addresses other than loopback (link-local left out)."""
    loopback = {socket.AF_INET: ("127.",), socket.AF_INET6: ("::1", "fe80")}
    return [
        (a.family, a.address)
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family in loopback and not a.address.lower().startswith(loopback[a.family])
    ]


def _refused(family: int, address: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        try:
            s.connect((address, port))
        except OSError:
            return True
    return False


def _health(host: str, port: int) -> int | None:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=3)
        conn.request("GET", "/_stcore/health")
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


@pytest.mark.timeout(180)
def test_ui_listens_on_loopback_only(tmp_path):
    others = _other_local_addresses()
    if not others:
        pytest.skip("this machine has no local address besides loopback to test against")
    port = free_port()
    env = dict(os.environ, **PIXELS_ENV)
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(tmp_path / "lib"), "ui"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _health("127.0.0.1", port) != 200:
            assert proc.poll() is None, "searchapp ui exited early"
            assert time.monotonic() < deadline, "the page did not answer on 127.0.0.1"
            time.sleep(0.5)
        assert [a for f, a in others if not _refused(f, a, port)] == []
        children = psutil.Process(proc.pid).children(recursive=True)
        args = " ".join(" ".join(c.cmdline()) for c in children)
        assert "--server.address 127.0.0.1" in args
        assert f"--server.maxUploadSize {load_settings().max_upload_mb}" in args
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def _app_sources() -> list[Path]:
    return [p for d in APP_DIRS for p in (REPO / d).rglob("*.py")]


def test_no_shell_pickle_or_unsafe_torch_load_in_app_code():
    offenders = []
    for path in _app_sources():
        text = path.read_text()
        for pattern in UNSAFE:
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(REPO)}: {pattern}")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(REPO)}: {call}")
    assert offenders == []
    network_src = (REPO / "searchapp" / "model" / "network.py").read_text()
    assert "weights_only=True" in network_src  # passed to open_clip's checkpoint loader


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - runs on unpickling
        return (Path.touch, (self.marker,))


@pytest.mark.timeout(180)
def test_pickled_checkpoint_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.bin"
    ckpt.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=2))
    from searchapp.model import load_embedder

    settings = load_settings(data_dir=tmp_path / "lib", weights=str(ckpt), precision="fp32")
    with pytest.raises(SearchAppError) as info:
        load_embedder(settings)
    assert not marker.exists(), "unpickling the checkpoint ran code"
    print(f"\nrefused: {type(info.value).__name__}: {str(info.value)[:200]}")
    assert "\n" not in str(info.value)
    assert "\x1b" not in str(info.value)  # no terminal colour codes from torch


def test_uploaded_image_is_not_written_anywhere(settings, embedder, tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg_bytes(1))
    index_once(settings, embedder, root)
    before = sorted(p.name for p in settings.data_dir.rglob("*"))
    svc = service(settings, embedder)
    buf = io.BytesIO()
    Image.new("RGB", (90, 70), (10, 200, 30)).save(buf, "PNG")
    svc.search_image(buf.getvalue(), k=1)
    svc.close()
    assert sorted(p.name for p in settings.data_dir.rglob("*")) == before
