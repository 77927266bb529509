"""The browser tests' shared parts (a pytest plugin, registered in ``conftest.py``): the
system Chromium, one Playwright browser per test module, a fresh 1280x720 tab that fails its
test on any script error, and the screenshot folder. Without a browser the tests skip,
unless ``SEARCHAPP_REQUIRE_BROWSER=1`` (set by CI), where a missing browser fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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


def unavailable(reason: str) -> None:
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
    unavailable("no Chromium found (apt-get install chromium, or set SEARCHAPP_CHROMIUM)")
    raise AssertionError  # unreachable: skip() and fail() raise


@pytest.fixture(scope="module")
def browser(chromium):  # noqa: ANN001, ANN201
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    expect.set_options(timeout=STEP_MS)  # assertions wait as long as actions (5 s else)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def page(browser):  # noqa: ANN001, ANN201
    """A fresh tab at 1280x720; any script error in it fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    tab = context.new_page()
    tab.set_default_timeout(STEP_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda err: errors.append(str(err)))
    yield tab
    context.close()
    assert not errors, f"errors in the page: {errors}"


def shots_dir() -> Path:
    folder = Path(os.environ.get("SEARCHAPP_SCREENSHOTS") or ROOT / "artifacts" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def expect_():  # noqa: ANN202
    from playwright.sync_api import expect

    return expect
