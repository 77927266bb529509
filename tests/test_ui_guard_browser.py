"""The access guard in a real browser: a rebinding host name gets no app; the secret prompt.

One ``searchapp ui`` with an access secret serves an indexed copy of data/ on a loopback
port. Chromium maps ``evil.example`` to 127.0.0.1 (as a DNS rebinding attack would) and gets
nothing; through 127.0.0.1 it is asked for the secret, then searches, and the thumbnail URL it
got (a /photo/thumb route beside Streamlit's own, and /photo/thumbs) answers only with the
cookie the secret set.
"""

from __future__ import annotations

import shutil

import pytest

from tests.browser import CHROMIUM_ARGS, STEP_MS, unavailable
from tests.conftest import DATA
from tests.helpers import PIXELS_ENV, free_port, index_once
from tests.page import request, start_page, stop_group

SECRET = "correct-horse-battery-staple"
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


@pytest.fixture()
def locked(tmp_path, settings, embedder):  # noqa: ANN001, ANN201
    """An indexed library served with an access secret: its port."""
    photos = tmp_path / "photos"
    shutil.copytree(DATA, photos, ignore=shutil.ignore_patterns("*.md"))
    index_once(settings, embedder, photos)
    port = free_port()
    # the page searches with the encoder the library was indexed with (the pixel one)
    env = {"SEARCHAPP_UI_SECRET": SECRET, "HOME": str(tmp_path), **PIXELS_ENV}
    proc = start_page(settings.data_dir, port, tmp_path / "server.log", env)
    try:
        yield port
    finally:
        stop_group(proc)


def test_rebinding_gets_no_app_and_media_needs_the_secret(chromium, locked) -> None:  # noqa: ANN001
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    port = locked
    rules = "--host-resolver-rules=MAP evil.example 127.0.0.1"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[*CHROMIUM_ARGS, rules])
        try:
            page = browser.new_page()
            page.set_default_timeout(STEP_MS)
            # DNS rebinding: evil.example resolves to this machine; the page is refused
            answer = page.goto(f"http://evil.example:{port}/")
            assert answer is not None and answer.status == 403
            expect(page.get_by_text("not the one the page was started on")).to_be_visible(
                timeout=STEP_MS
            )
            assert page.locator('[data-testid="stApp"]').count() == 0

            # the started address: the page asks for the secret first
            answer = page.goto(f"http://127.0.0.1:{port}/")
            assert answer is not None and answer.status == 401
            assert page.locator('[data-testid="stApp"]').count() == 0
            page.get_by_label("Access secret").fill(SECRET)
            page.get_by_role("button", name="Open").click()
            expect(page.get_by_text("Random model weights (chosen by")).to_be_visible(
                timeout=STEP_MS
            )

            box = page.get_by_role("textbox", name="Search your photos")
            box.fill("a cat on a sofa")
            box.press("Enter")
            # the first screen comes in one /photo/thumbs request, the rest one by one
            thumb = page.locator('.tile img[data-src*="/photo/thumb/"]').first
            expect(thumb).to_be_visible(timeout=STEP_MS)
            media = thumb.evaluate("img => new URL(img.dataset.src, location.href).pathname")
            cookies = page.context.cookies()
        finally:
            browser.close()
    [access] = [c for c in cookies if c["name"] == f"searchapp_access_{port}"]
    assert access["httpOnly"] and access["sameSite"] == "Strict"
    host = f"127.0.0.1:{port}"
    code, _, body = request(port, media, host)
    assert code == 403 and b"access secret is missing" in body
    code, headers, body = request(
        port, media, host, {"Cookie": f"{access['name']}={access['value']}"}
    )
    assert code == 200 and headers["content-type"].startswith("image/") and len(body) > 100
    batch = "/photo/thumbs?h=" + media.rsplit("/", 1)[1]
    assert request(port, batch, host)[0] == 403
    code, headers, batched = request(
        port, batch, host, {"Cookie": f"{access['name']}={access['value']}"}
    )
    assert code == 200 and batched == body
