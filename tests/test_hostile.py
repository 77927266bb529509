"""Hostile and odd inputs: each file is indexed correctly or gets a recorded reason.

One real index run over a folder of broken, tricky and malicious files; none may crash
or hang the run. Decoding is bounded by Pillow's pixel limit (its warning is an error
here), draft-mode JPEG decoding, a file-size cap and refusing truncated data.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import searchapp.indexer.stages as stages
from searchapp.decoder import decode_photo, hash_bytes
from searchapp.errors import ImageDecodeError
from searchapp.store import STATUS_FAILED, STATUS_INDEXED, Store
from searchapp.vectors import open_index
from tests.helpers import PIXELS_ENV, index_once, integrity, without_root_powers

pytestmark = pytest.mark.timeout(300)

INDEXED = "indexed"
NON_UTF8 = os.fsdecode(b"caf\xe9 \xff.jpg")
LONG_NAME = "x" * 196 + ".jpg"


def jpeg_bytes(seed: int, size: int = 96, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    im = Image.fromarray(arr).resize((size, size), Image.NEAREST).convert(mode)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int = 40000) -> bytes:
    """A real 1-bit ``side`` x ``side`` PNG (~200 MB of pixels) in a few hundred KB."""
    z = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    parts = [z.compress(row * 1000) for _ in range(side // 1000)]
    data = b"".join(parts) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height``."""
    data = bytearray(jpeg_bytes(3))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def corrupt_png_chunk() -> bytes:
    data = bytearray(png_bytes(Image.fromarray(np.full((64, 64, 3), 90, np.uint8))))
    idat = data.find(b"IDAT")
    data[idat + 10] ^= 0xFF  # flip a byte inside the compressed data: CRC no longer matches
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("P", (80, 60), color=c) for c in (10, 120, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def odd_images() -> dict[str, bytes]:
    """Valid images in modes that need care: all must be indexed."""
    grad16 = np.tile(np.linspace(0, 65535, 128, dtype=np.uint16), (96, 1))
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[16:48, 16:48] = (200, 30, 30, 255)  # a red square on a transparent ground
    rgb = np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(16)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 0
    return {
        "animated.gif": animated_gif(),
        "gray16.png": png_bytes(Image.fromarray(grad16)),
        "palette.png": png_bytes(palette),
        "palette_transparent.png": png_bytes(transparent_palette, transparency=0),
        "cmyk.jpg": jpeg_bytes(11, mode="CMYK"),
        "rgba.png": png_bytes(Image.fromarray(rgba)),
        "gray.jpg": jpeg_bytes(12, mode="L"),
        # claims 9000x9000 but holds 96x96 of data: libjpeg pads the rest grey, and draft
        # mode decodes it at 1/8 scale (1125x1125), so memory stays bounded
        "claims_9000.jpg": jpeg_claiming(9000, 9000),
        LONG_NAME: jpeg_bytes(13),
        NON_UTF8: jpeg_bytes(14),
    }


def bad_files() -> dict[str, tuple[bytes, str]]:
    """Broken or hostile files and a word their stored reason must contain."""
    good = jpeg_bytes(1)
    return {
        "empty.jpg": (b"", "empty file"),
        "truncated.jpg": (good[: len(good) // 2], "truncated"),
        "noise.jpg": (np.random.default_rng(2).bytes(5000), "not an image"),
        "notes.jpg": (b"shopping list\nmilk\neggs\n" * 20, "not an image"),
        "page.png": (b"<!doctype html><html><body><img src=x></body></html>", "not an image"),
        "bad_chunk.png": (corrupt_png_chunk(), "damaged"),
        "bomb.png": (png_bomb(), "decompression bomb"),
        "claims_huge.jpg": (jpeg_claiming(65000, 65000), "decompression bomb"),
    }


def build_root(root: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """Write every case; returns expected outcome by path and the content of good ones."""
    root.mkdir(parents=True)
    expect: dict[str, str] = {}
    good: dict[str, bytes] = {}
    for name, data in odd_images().items():
        (root / name).write_bytes(data)
        expect[str(root / name)] = INDEXED
        good[str(root / name)] = data
    for name, (data, reason) in bad_files().items():
        (root / name).write_bytes(data)
        expect[str(root / name)] = reason
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    expect[str(root / "loop_a.jpg")] = expect[str(root / "loop_b.jpg")] = "symbolic link loop"
    os.symlink("nowhere.jpg", root / "dangling.jpg")
    expect[str(root / "dangling.jpg")] = "broken symbolic link"
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "up")  # a folder loop: never followed
    for name in ("vanish.jpg", "swap.jpg"):
        (root / name).write_bytes(jpeg_bytes(20 + len(name)))
    expect[str(root / "vanish.jpg")] = "vanished"
    expect[str(root / "swap.jpg")] = INDEXED
    return expect, good


def test_hostile_inputs_are_recorded_or_indexed(settings, embedder, tmp_path, monkeypatch):
    root = tmp_path / "hostile"
    expect, good = build_root(root)
    swapped = jpeg_bytes(99)
    good[str(root / "swap.jpg")] = swapped
    real_read = stages.read_file

    def racing_read(path):  # noqa: ANN001, ANN202 - the file changes after the scan saw it
        if str(path).endswith("vanish.jpg"):
            os.unlink(path)
        elif str(path).endswith("swap.jpg"):
            Path(path).write_bytes(swapped)
        return real_read(path)

    monkeypatch.setattr(stages, "read_file", racing_read)
    stats = index_once(settings, embedder, root)
    assert stats.failed == sum(v != INDEXED for v in expect.values())

    store = Store(settings.db_path)
    rows = store.known_files(store.list_roots()[0].id, embedder.model_id)
    assert set(rows) == set(expect)  # every file has a row, nothing more (no loop followed)
    for path, want in expect.items():
        row = rows[path]
        if want == INDEXED:
            assert row.status == STATUS_INDEXED and row.embedded, path
            assert row.content_hash == hash_bytes(good[path]), path
        else:
            record = store.find_photo_by_path(path)
            assert record.status == STATUS_FAILED, path
            assert want in record.failure_reason, (path, record.failure_reason)
            assert "\n" not in record.failure_reason and len(record.failure_reason) <= 300

    assert os.fsencode(str(root / NON_UTF8)) in {os.fsencode(p) for p in rows}  # same bytes
    assert str(root / LONG_NAME) in rows
    index = open_index(settings.index_path, store, embedder.model_id, embedder.dim)
    indexed_ids = sorted(r.id for r in rows.values() if r.status == STATUS_INDEXED)
    assert sorted(index.ids().tolist()) == indexed_ids
    assert integrity(store.db_path) == "ok"
    store.close()

    monkeypatch.setattr(stages, "read_file", real_read)
    again = index_once(settings, embedder)  # nothing left to do; the vanished file is gone
    assert again.embedded == 0 and again.added == 0 and again.removed == 1


def test_odd_modes_decode_to_sensible_rgb():
    images = odd_images()
    gray16 = decode_photo(images["gray16.png"], 64).image
    assert gray16.mode == "RGB" and gray16.getextrema()[0] == (0, 255)  # not clipped to white
    rgba = np.asarray(decode_photo(images["rgba.png"], 64).image)
    assert tuple(rgba[0, 0]) == (255, 255, 255) and tuple(rgba[32, 32]) == (200, 30, 30)
    gif = decode_photo(images["animated.gif"], 64)
    assert gif.format == "GIF" and gif.image.size == (80, 60)
    assert decode_photo(images["cmyk.jpg"], 64).image.mode == "RGB"


def test_panorama_jpeg_past_pillows_limit_decodes_small():
    """A 101 MP JPEG (Pillow refuses > 89 MP) decodes in draft mode; 4 GP claims do not."""
    big = Image.new("RGB", (12000, 8400), (40, 90, 160))
    big.paste((230, 200, 40), (3000, 2000, 9000, 6000))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=60)
    del big
    photo = decode_photo(buf.getvalue(), 256)
    assert (photo.width, photo.height, photo.format) == (12000, 8400, "JPEG")
    assert photo.image.size == (1500, 1050)  # 1/8 scale: 38 MB instead of 302 MB
    assert photo.image.getpixel((750, 525)) == pytest.approx((230, 200, 40), abs=6)
    with pytest.raises(ImageDecodeError, match="decompression bomb.*over 1000 MP"):
        decode_photo(jpeg_claiming(65000, 65000), 256)


def _index_cli(prefix: list[str], data: Path, root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **PIXELS_ENV)
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "searchapp.cli",
        "--data-dir",
        str(data),
        "index",
        str(root),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_unreadable_folder_and_file(tmp_path):
    prefix = without_root_powers()
    root, data = tmp_path / "photos", tmp_path / "lib"
    (root / "open").mkdir(parents=True)
    (root / "locked").mkdir()
    (root / "open" / "a.jpg").write_bytes(jpeg_bytes(31))
    (root / "locked" / "b.jpg").write_bytes(jpeg_bytes(32))
    (root / "secret.jpg").write_bytes(jpeg_bytes(33))
    (root / "secret.jpg").chmod(0)
    try:
        _index_cli(prefix, data, root)
        (root / "locked").chmod(0)
        _index_cli(prefix, data, root)
        store = Store(data / "library.sqlite3")
        b = store.find_photo_by_path(root / "locked" / "b.jpg")
        assert b is not None and b.status == STATUS_INDEXED  # kept while it cannot be seen
        reasons = {Path(f.path).name: f.failure_reason for f in store.failures()}
        assert reasons == {
            "secret.jpg": "permission denied",
            "locked": "folder cannot be read (permission denied)",
        }
        (root / "locked").chmod(0o755)
        _index_cli(prefix, data, root)
        reasons = {Path(f.path).name: f.failure_reason for f in store.failures()}
        assert reasons == {"secret.jpg": "permission denied"}
        assert store.counts()["photos"] == 2
        store.close()
    finally:
        (root / "locked").chmod(0o755)
        (root / "secret.jpg").chmod(0o644)
