"""The photo page's speed in a real browser, on a 100,000-photo synthetic library.

Builds (once, cached under ``SEARCHAPP_BENCH_DIR``) a library written directly, not by
running a model: rows with dates, sizes and folders, random vectors for the pixel test
encoder, small thumbnails and originals (hard links to a few hundred real JPEGs, so the
disk holds a few MB), 2% of the photos with a byte-identical copy. Then starts
``searchapp ui`` on a loopback port and drives headless Chromium through Playwright:

- a fresh server: the library's first tiles, counted from the start of the server;
- a new tab to a usable page (the timeline's first thumbnails decoded), server running,
  beside a tab of the page already open (as the floor's new tab is measured), and again
  with no tab of the page open (each new tab then waits ~0.6 s longer here, most likely
  for a new renderer process);
- a text query to a complete grid (every tile of the first page decoded);
- "load more" appending a page (earlier tiles must stay the same DOM nodes);
- the viewer's next photo (ArrowRight) with its thumbnail, then its large preview;
- the Status tab's first open.

    .venv/bin/python benchmarks/bench_page.py [--count 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' page helpers
from searchapp.config import ENCODER_PIXELS, Settings, load_settings  # noqa: E402
from searchapp.model import load_embedder  # noqa: E402
from searchapp.store import BatchWrite, PhotoWrite, Store  # noqa: E402
from searchapp.thumbnails import thumbnail_path  # noqa: E402
from searchapp.vectors import open_index  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.page import start_page, stop_group  # noqa: E402

BENCH_DIR = Path(os.environ.get("SEARCHAPP_BENCH_DIR", "/tmp/searchapp-bench"))
PER_FOLDER = 250
WRITE_BATCH = 5_000
DISTINCT = 240  # real JPEGs behind the hard links
SHAPES = [(640, 480), (480, 640), (640, 427), (640, 360), (512, 512), (427, 640)]
PIXELS = {"SEARCHAPP_ENCODER": "pixels", "SEARCHAPP_WEIGHTS": "random",
          "SEARCHAPP_PRECISION": "fp32", "HF_HUB_OFFLINE": "1"}  # fmt: skip
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


# ---------------------------------------------------------------- the library
def page_library(count: int) -> tuple[Settings, Path]:
    base = BENCH_DIR / f"page-{count}"
    settings = load_settings(data_dir=base / "data", encoder=ENCODER_PIXELS, weights="random")
    root = base / "photos"
    marker = settings.data_dir / "complete.json"
    if not marker.exists():
        shutil.rmtree(base, ignore_errors=True)
        started = time.monotonic()
        _build(settings, root, count)
        marker.write_text(json.dumps({"count": count}))
        print(f"  library built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return settings, root


def _sources(folder: Path) -> list[tuple[Path, Path, int, int]]:
    """(original, thumbnail, width, height) of DISTINCT real JPEGs of several shapes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(DISTINCT):
        w, h = SHAPES[i % len(SHAPES)]
        base = rng.integers(40, 215, 3)
        grad = np.linspace(0, 40, w, dtype=np.float32)[None, :, None]
        pixels = np.clip(base + grad + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(pixels)
        original, thumb = folder / f"src{i}.jpg", folder / f"thumb{i}.jpg"
        im.save(original, quality=80)
        im.thumbnail((384, 384))
        im.save(thumb, quality=75)
        out.append((original, thumb, w, h))
    return out


def _build(settings: Settings, root: Path, count: int) -> None:
    encoder = load_embedder(settings)
    sources = _sources(settings.data_dir.parent / "sources")
    root.mkdir(parents=True, exist_ok=True)
    store = Store(settings.db_path)
    root_id = store.add_root(root).id
    rng = np.random.default_rng(0)
    for start in range(0, count, WRITE_BATCH):
        batch = BatchWrite(model_id=encoder.model_id)
        vecs = rng.standard_normal((WRITE_BATCH, encoder.dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for i in range(start, min(start + WRITE_BATCH, count)):
            batch.indexed.append(_photo(settings, root, root_id, i, sources, batch, vecs))
        store.write_batch(batch)
        print(f"  {min(start + WRITE_BATCH, count):,} rows", file=sys.stderr)
    index = open_index(settings.index_path, store, encoder.model_id, encoder.dim)
    assert index.ntotal == count, (index.ntotal, count)
    store.close()


def _photo(settings, root, root_id, i, sources, batch, vecs) -> PhotoWrite:  # noqa: ANN001
    # every 50th photo is a byte-identical copy of the one before: same content hash
    content = i - 1 if i % 50 == 1 else i
    original, thumb, w, h = sources[content % DISTINCT]
    year = 2015 + (i * 10) // max(1, 100_000)
    folder = root / str(year) / f"{1 + (i // PER_FOLDER) % 12:02d}-album-{i // PER_FOLDER:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"IMG_{i:06d}.jpg"
    os.link(original, path)
    chash = f"{content:032x}"
    target = thumbnail_path(settings.thumbs_dir, chash)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(thumb, target)
    batch.vectors[chash] = vecs[content % len(vecs)]
    stat = path.stat()
    taken = None if i % 97 == 0 else 1.42e9 + i * 3000.0
    return PhotoWrite(root_id, str(path), stat.st_size, stat.st_mtime_ns, chash, w, h, "JPEG",
                      taken, "Synth")  # fmt: skip


# ---------------------------------------------------------------- the browser
# Conditions are checked inside the page on each animation frame (Playwright's raf
# polling), and times are taken with the page's own clock: polling from Python would
# compete with the browser for the same two cores and measure itself.
HELPERS = """() => {
  window.__grid = () => {
    const cached = window.__gridRoot;
    if (cached && cached.host.isConnected) return cached;
    const host = [...document.querySelectorAll('*')].find(
      e => e.shadowRoot && e.shadowRoot.querySelector('.gallery'));
    window.__gridRoot = host ? host.shadowRoot : null;
    return window.__gridRoot;
  };
  window.__tiles = () => {
    const g = window.__grid();
    return g ? [...g.querySelectorAll('.tile')] : [];
  };
  window.__decoded = (n) => { const t = window.__tiles().slice(0, n);
    return t.length > 0 && t.every(x => { const i = x.querySelector('img');
      return i.complete && i.naturalWidth > 0; }); };
  // tiles load lazily: "complete" means every tile in the window is decoded
  window.__visible = () => { const t = window.__tiles().filter(
      x => x.getBoundingClientRect().top < window.innerHeight);
    return t.length > 0 && t.every(x => { const i = x.querySelector('img');
      return i.complete && i.naturalWidth > 0; }); };
  window.__start = () => { window.__t0 = performance.now(); };
  window.__done = (ok) => { if (ok && !window.__t1) window.__t1 = performance.now(); return ok; };
  window.__t1 = 0;
}"""


def _arm(page) -> None:  # noqa: ANN001
    page.evaluate(HELPERS)
    page.evaluate("() => { window.__t1 = 0; window.__start(); }")


def _until(page, condition: str, timeout_s: float = 120.0) -> float:  # noqa: ANN001
    """Seconds, by the page's clock, from ``_arm`` until ``condition`` (JS) first holds."""
    page.wait_for_function(f"() => window.__done({condition})", polling="raf",
                           timeout=timeout_s * 1000)  # fmt: skip
    return page.evaluate("() => (window.__t1 - window.__t0) / 1000")


def measure(settings: Settings, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    log = settings.data_dir.parent / "server.log"
    t_server = time.perf_counter()
    proc = start_page(settings.data_dir, port, log, PIXELS)
    url = f"http://127.0.0.1:{port}/"
    out: dict[str, list[float]] = {k: [] for k in (
        "fresh server: first tiles (s from start)", "new tab: thumbnails shown",
        "new tab, no tab of it open: thumbnails", "query: complete grid", "load more: appended",
        "viewer next: thumbnail", "viewer next: preview", "status: first open")}  # fmt: skip
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url)
            page.evaluate(HELPERS)
            page.wait_for_function("() => window.__tiles().length > 0", polling="raf",
                                   timeout=300_000)  # fmt: skip
            out["fresh server: first tiles (s from start)"].append(time.perf_counter() - t_server)
            page.close()
            context = browser.new_context(viewport={"width": 1280, "height": 720})
            # as the floor below: a new tab beside one the person already has open
            keeper = context.new_page()
            keeper.goto(url)
            keeper.get_by_role("textbox", name="Search your photos").wait_for(timeout=120_000)
            for run in range(runs):
                _one_round(context, url, out, run)
            keeper.close()
            for _ in range(runs):  # no tab of the page open: most likely a new renderer each
                page = context.new_page()
                out["new tab, no tab of it open: thumbnails"].append(_new_tab(page, url))
                page.close()
            context.close()
            _floor(browser, out, runs)
            browser.close()
    finally:
        stop_group(proc)
    return out


def _one_round(context, url: str, out: dict[str, list[float]], run: int) -> None:  # noqa: ANN001
    page = context.new_page()  # a new tab in the same browser: its HTTP cache is warm
    out["new tab: thumbnails shown"].append(_new_tab(page, url))

    box = page.get_by_role("textbox", name="Search your photos")
    box.fill(f"a red kayak on a lake {run}")
    first = page.evaluate("() => window.__tiles()[0].dataset.id")
    _arm(page)
    box.press("Enter")
    out["query: complete grid"].append(_until(
        page, f"window.__tiles().length > 0 && window.__tiles()[0].dataset.id !== '{first}'"
        " && window.__visible()"))  # fmt: skip

    shown = page.evaluate("() => { const t = window.__tiles(); t[0].dataset.bench = 'kept';"
                          " return t.length; }")  # fmt: skip
    _arm(page)
    page.evaluate("() => window.__grid().querySelector('.more').click()")
    out["load more: appended"].append(_until(page, f"window.__tiles().length > {shown}"))
    kept = page.evaluate("() => window.__tiles()[0].dataset.bench")
    assert kept == "kept", "load more redrew the earlier tiles"

    page.evaluate("() => window.__tiles()[0].querySelector('.open').click()")
    page.wait_for_function("() => { const v = window.__grid().querySelector('.viewer');"
                           " return v && !v.hidden; }", polling="raf")  # fmt: skip
    first_id = page.evaluate("() => window.__grid().querySelector('.viewer').dataset.id")
    big = "window.__grid().querySelector('.viewer .big')"
    _arm(page)
    page.keyboard.press("ArrowRight")
    moved = f"window.__grid().querySelector('.viewer').dataset.id !== '{first_id}'"
    out["viewer next: thumbnail"].append(
        _until(page, f"{moved} && {big}.complete && {big}.naturalWidth > 0"))  # fmt: skip
    page.evaluate("() => { window.__t1 = 0; }")
    out["viewer next: preview"].append(_until(
        page, f"{moved} && {big}.src.includes('/photo/preview/') && {big}.complete"))  # fmt: skip
    page.keyboard.press("Escape")

    if run == 0:
        _arm(page)
        page.get_by_role("tab", name="Status").click()
        out["status: first open"].append(
            _until(page, "document.body.innerText.includes('Photo folders')"))  # fmt: skip
    page.close()


def _new_tab(page, url: str) -> float:  # noqa: ANN001
    """Seconds from a new tab's navigation (its time origin) to its first screen of
    thumbnails decoded."""
    page.goto(url)
    page.evaluate(HELPERS)
    page.wait_for_function("() => window.__done(window.__visible())", polling="raf")
    return page.evaluate("() => window.__t1 / 1000")


def _wait_health(port: int, timeout_s: float = 120.0) -> None:
    from tests.page import status

    deadline = time.monotonic() + timeout_s
    while status("127.0.0.1", port, "/_stcore/health") != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("the hello page did not start")
        time.sleep(0.2)


HELLO = """import streamlit as st
st.button("again", key="again")
st.write(f"hello {st.session_state.get('n', 0)}")
st.session_state["n"] = st.session_state.get("n", 0) + 1
"""


def _floor(browser, out: dict[str, list[float]], runs: int) -> None:  # noqa: ANN001
    """The same two waits on a two-line Streamlit page, on the same machine at the same
    time: what any Streamlit page costs here, before a single photo."""
    import subprocess

    script = BENCH_DIR / "hello.py"
    script.write_text(HELLO)
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    for name in ("new tab", "new tab, no tab of it open", "one rerun"):
        out[f"floor: hello page, {name}"] = []
    try:
        _wait_health(port)
        context = browser.new_context()
        page = context.new_page()
        page.goto(url, timeout=120_000)
        page.get_by_text("hello").wait_for(timeout=120_000)
        for _ in range(runs):
            tab = context.new_page()
            out["floor: hello page, new tab"].append(_hello_tab(tab, url))
            before = tab.get_by_text("hello").inner_text()
            tab.evaluate("() => { window.__t0 = performance.now(); }")
            tab.get_by_role("button", name="again").click()
            tab.wait_for_function(f"() => !document.body.innerText.includes('{before}') &&"
                                  " (window.__t1 = performance.now())", polling="raf")  # fmt: skip
            out["floor: hello page, one rerun"].append(
                tab.evaluate("() => (window.__t1 - window.__t0) / 1000"))  # fmt: skip
            tab.close()
        page.close()
        for _ in range(runs):
            tab = context.new_page()
            out["floor: hello page, new tab, no tab of it open"].append(_hello_tab(tab, url))
            tab.close()
        context.close()
    finally:
        stop_group(proc)


def _hello_tab(tab, url: str) -> float:  # noqa: ANN001
    tab.goto(url)
    tab.wait_for_function("() => document.body.innerText.includes('hello') &&"
                          " (window.__t1 = performance.now())", polling="raf")  # fmt: skip
    return tab.evaluate("() => window.__t1 / 1000")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    settings, root = page_library(args.count)
    print(f"{args.count:,} photos under {root}")
    for name, values in measure(settings, args.runs).items():
        if values:
            print(f"{name:46s} median {statistics.median(values):6.3f} s  "
                  f"max {max(values):6.3f} s  (n={len(values)})")  # fmt: skip


if __name__ == "__main__":
    main()
