"""The photo page end to end in a real browser, each test with a server and library of its
own (``test_ui_browser.py`` shares one): a run started on the page and stopped, and a
timeline longer than a page. A file of its own, so the suite's workers share the browser
tests (``--dist loadfile`` gives a file to one worker)."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.browser import STEP_MS, expect_, shots_dir
from tests.helpers import PIXELS_ENV, free_port, index_once, wait_for
from tests.page import start_page, stop_group

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


@pytest.mark.parametrize("how", ["button", "server stopped"])
def test_a_run_started_on_the_page_stops_cleanly(browser, tmp_path, how) -> None:  # noqa: ANN001
    """ "Add and index", then "Stop indexing" mid-run: the run ends after the batch it was
    writing, recorded as interrupted, and what it indexed stays. SIGTERM to searchapp ui
    mid-run: the server stops at once, its run ends as a killed one (the next run resumes
    it), and what it committed stays."""
    from searchapp.config import ENCODER_PIXELS, load_settings
    from searchapp.library import Library
    from tests.helpers import write_jpegs

    expect = expect_()
    photos = tmp_path / "photos"
    write_jpegs(photos, 24, seed=5)
    port = free_port()
    # two photos a batch, half a second after each commit: a run of ~6 s
    env = {**PIXELS_ENV, "SEARCHAPP_BATCH_SIZE": "2", "SEARCHAPP_FAULT_PACE": "0.5"}
    proc = start_page(tmp_path / "lib", port, tmp_path / "server.log", env)
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        page.goto(f"http://127.0.0.1:{port}/")
        box = page.get_by_role("textbox", name="Photo folder to add")
        box.fill(str(photos))
        expect(page.get_by_role("button", name="Add and index")).to_be_enabled()
        box.press("Enter")  # as the button: a person types a path and presses Enter
        expect(page.get_by_text(re.compile(r"Indexed [1-9]\d* of 24 files"))).to_be_visible()
        if how == "button":
            page.screenshot(path=str(shots_dir() / "indexing-1280x720.png"))
            page.get_by_role("button", name="Stop indexing").click()
            said = page.get_by_text("Stopping indexing after the batch it is writing.")
            expect(said).to_be_visible()
        else:
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        settings = load_settings(data_dir=tmp_path / "lib", encoder=ENCODER_PIXELS,
                                 weights="random")  # fmt: skip
        with Library(settings) as library:
            wait_for(lambda: library.last_run().state != "running", "the run to end", 30)
            indexed, run = library.photo_count(), library.last_run()
        # a server that stops takes its run thread with it: the run reads as a killed one
        ended = "interrupted" if how == "button" else "stopped"
        assert 0 < indexed < 24 and run.state == ended, (indexed, run)
    finally:
        context.close()
        stop_group(proc)


def test_a_long_timeline_pages_through_the_viewer_and_the_url(
    browser, tmp_path, pixel_embedder
) -> None:  # noqa: ANN001
    """70 photos, 60 a page: "Load more" shows the rest and the URL keeps it (a reload
    shows 70 again); the viewer steps from the last shown photo into the next page."""
    from searchapp.config import ENCODER_PIXELS, load_settings
    from tests.helpers import write_jpegs

    expect = expect_()
    write_jpegs(tmp_path / "photos", 70, seed=9)
    settings = load_settings(data_dir=tmp_path / "lib", encoder=ENCODER_PIXELS, weights="random")
    index_once(settings, pixel_embedder, tmp_path / "photos")
    port = free_port()
    proc = start_page(settings.data_dir, port, tmp_path / "server.log", PIXELS_ENV)
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        url = f"http://127.0.0.1:{port}/"
        page.goto(url)
        tiles, more = page.locator(".tile"), page.get_by_role("button", name="Load more")
        expect(tiles).to_have_count(60)
        steps = page.evaluate("history.length")
        more.click()
        expect(tiles).to_have_count(70)
        expect(more).to_be_hidden()
        expect(page).to_have_url(re.compile(r"[?&]pages=2"))
        expect_()(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
                  ).to_have_count(1)  # fmt: skip
        assert page.evaluate("history.length") == steps  # "load more" is no step of Back
        page.reload()
        expect(tiles).to_have_count(70)
        page.goto(url)  # 60 again; the viewer goes on past the 60th
        expect(tiles).to_have_count(60)
        tiles.nth(59).locator(".open").click()
        viewer = page.get_by_role("dialog", name="Photo viewer")
        expect(viewer).to_be_visible()
        page.keyboard.press("ArrowRight")
        expect(tiles).to_have_count(70)
        expect(viewer).to_have_attribute("data-id", tiles.nth(60).get_attribute("data-id"))
        page.go_back()  # one Back closes it; the page it stepped into is in the URL then
        expect(viewer).to_be_hidden()
        expect(page).to_have_url(re.compile(r"[?&]pages=2"))
        expect(tiles).to_have_count(70)
    finally:
        context.close()
        stop_group(proc)
