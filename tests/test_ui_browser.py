"""End to end in a real browser: headless Chromium against ``searchapp ui`` on localhost.

The app runs as a real subprocess over an indexed copy of ``data/`` with random weights.
Chromium is Debian's ``chromium`` package (``.ci/run`` installs it), driven by Playwright
through the system browser's executable. Without a browser the test skips, unless
``SEARCHAPP_REQUIRE_BROWSER=1`` (set by CI), where a missing browser is a failure.
Screenshots go to ``artifacts/ui/`` (or ``SEARCHAPP_SCREENSHOTS``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.helpers import index_once

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
STEP_MS = 60_000


def _unavailable(reason: str) -> None:
    if os.environ.get("SEARCHAPP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (SEARCHAPP_REQUIRE_BROWSER=1; run .ci/run to install it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system Chromium (``SEARCHAPP_CHROMIUM`` names another one), before any setup."""
    explicit = os.environ.get("SEARCHAPP_CHROMIUM")
    for candidate in [explicit] if explicit else ["chromium", "chromium-browser"]:
        found = shutil.which(candidate)
        if found:
            return found
    _unavailable("no Chromium found (apt-get install chromium, or set SEARCHAPP_CHROMIUM)")
    raise AssertionError  # unreachable: skip() and fail() raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"searchapp ui exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"searchapp ui did not answer on {url} in {timeout_s} s")


@pytest.fixture()
def served(tmp_path, clip_settings, clip_embedder):  # noqa: ANN001, ANN201
    """``searchapp ui`` on a free localhost port over an indexed copy of data/ (real model)."""
    settings = clip_settings
    photos = tmp_path / "photos"
    shutil.copytree(DATA, photos, ignore=shutil.ignore_patterns("*.md"))
    index_once(settings, clip_embedder, photos)
    port = _free_port()
    env = dict(os.environ, SEARCHAPP_WEIGHTS="random", SEARCHAPP_PRECISION="fp32",
               HF_HUB_OFFLINE="1", HOME=str(tmp_path))  # fmt: skip
    exe = Path(sys.executable).with_name("searchapp")
    cmd = [str(exe), "--data-dir", str(settings.data_dir), "ui", "--port", str(port)]
    log = (tmp_path / "server.log").open("wb")
    # its own process group: searchapp ui starts streamlit as a child, both must stop
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_healthy(url, proc)
        yield url, photos
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _shots_dir() -> Path:
    folder = Path(os.environ.get("SEARCHAPP_SCREENSHOTS") or ROOT / "artifacts" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_search_page_in_a_real_browser(chromium, served) -> None:  # noqa: ANN001
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    url, photos = served
    expect.set_options(timeout=STEP_MS)
    shots = _shots_dir()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.set_default_timeout(STEP_MS)
            expect.set_options(timeout=STEP_MS)  # assertions wait as long as actions (5 s else)
            _drive(page, expect, url, photos, shots)
        finally:
            browser.close()
    assert not errors, f"errors in the page: {errors}"


def _drive(page, expect, url: str, photos: Path, shots: Path) -> None:  # noqa: ANN001
    page.goto(url)
    expect(page.get_by_text("Random model weights are in use")).to_be_visible()
    grid = page.locator(".st-key-grid")
    cards = grid.locator('[data-testid="stImage"] img')

    # a text query: the grid of thumbnails
    page.get_by_text("Show all results").click()
    box = page.get_by_role("textbox", name="Search", exact=True)
    box.fill("a cat on a sofa")
    box.press("Enter")
    expect(cards).to_have_count(16)
    expect(page.get_by_text("16 of 16 results")).to_be_visible()
    page.wait_for_function(  # every thumbnail decoded by the browser
        "() => [...document.querySelectorAll('.st-key-grid img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(shots / "search-grid.png"))

    # open a result: the detail view with a large preview and the full path
    first_name = grid.locator('[data-testid="stMarkdownContainer"] strong').first.inner_text()
    grid.get_by_role("button", name="Details").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator('[data-testid="stImage"] img')).to_be_visible()
    expect(dialog.get_by_text(str(photos / first_name))).to_be_visible()
    expect(dialog.get_by_text("Dimensions:")).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('[role=dialog] [data-testid=stImage] img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    page.screenshot(path=str(shots / "detail.png"))

    # "more like this" from the detail view
    dialog.get_by_role("button", name="More like this").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_role("heading", name=f"More like {first_name}")).to_be_visible()
    expect(cards).to_have_count(15)  # every photo but the one asked about
    expect(grid.get_by_text(first_name, exact=True)).to_have_count(0)

    # an uploaded image: its own file is the best match
    page.get_by_role("button", name="Clear").click()
    expect(cards).to_have_count(0)
    page.locator('input[type="file"]').set_input_files(str(photos / "coffee.png"))
    expect(page.get_by_role("heading", name="Like coffee.png")).to_be_visible()
    expect(cards).to_have_count(16)
    expect(grid.locator('[data-testid="stMarkdownContainer"] strong').first).to_have_text(
        "coffee.png"
    )
    page.screenshot(path=str(shots / "upload.png"))

    # the status tab: counts, model, index
    page.get_by_role("tab", name="Status").click()
    expect(page.get_by_text("IndexIDMap2(IndexFlatIP), 16 vectors")).to_be_visible()
    page.screenshot(path=str(shots / "status.png"))
