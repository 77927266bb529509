"""Files that never end, files that explode, decoders that surprise, names that lie.

A real ``searchapp index`` process over a folder holding a FIFO, links to ``/dev/zero``
and ``/dev/urandom``, damaged TIFF/EXIF data and names with terminal control characters;
decoder memory measured in fresh processes; decoder exceptions and the time limit
through real indexing runs.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import searchapp.decode_limits as decode_limits
import searchapp.decoder as decoder
from benchmarks.decode_probe import measure_decode
from searchapp.decoder import decode_photo, read_file
from searchapp.errors import ImageDecodeError
from searchapp.store import STATUS_INDEXED, Store
from searchapp.text import printable
from tests.helpers import PIXELS_ENV, index_once, run_cli, write_jpegs
from tests.test_hostile import jpeg_bytes, png_chunk

pytestmark = pytest.mark.timeout(600)

ESC_NAME = "evil\x1b[31mred\nline\r.jpg"
ESC_BROKEN = "bad\x1b]0;owned\x07.jpg"
MB = 2**20


def cli(data: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The real command: its stderr is the process's, libtiff's own writes included."""
    env = dict(os.environ, **PIXELS_ENV)  # hostile files, not the model, are under test
    cmd = [sys.executable, "-m", "searchapp.cli", "--data-dir", str(data), "--weights", "random"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout)


def damaged_files(root: Path) -> None:
    """A JPEG whose EXIF tag claims more data than exists, a TIFF with a damaged strip."""
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    data = bytearray(buf.getvalue())
    tiff = data.find(b"Exif\x00\x00") + 6
    order = "<" if data[tiff : tiff + 2] == b"II" else ">"
    ifd = tiff + struct.unpack(order + "I", data[tiff + 4 : tiff + 8])[0]
    struct.pack_into(order + "I", data, ifd + 2 + 4, 100000)  # Make: 100000 bytes
    (root / "bad_exif.jpg").write_bytes(bytes(data))
    buf = io.BytesIO()
    im.save(buf, "TIFF", compression="tiff_adobe_deflate")
    data = bytearray(buf.getvalue())
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", data[4:8])[0]
    for k in range(struct.unpack(order + "H", data[ifd : ifd + 2])[0]):
        tag, _typ, _count, value = struct.unpack(order + "HHII", data[ifd + 2 + 12 * k :][:12])
        if tag == 0x0111:  # StripOffsets: scramble the compressed pixels
            for j in range(value + 10, value + 60):
                data[j] ^= 0x5A
    (root / "bad_strip.tif").write_bytes(bytes(data))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """One real ``searchapp index`` over every case; (data dir, root, measured facts)."""
    base = tmp_path_factory.mktemp("untrusted")
    root, data = base / "photos", base / "lib"
    write_jpegs(root, 3, seed=1)
    os.mkfifo(root / "photo.jpg")  # open() would block until a writer comes: none will
    os.symlink("/dev/zero", root / "zero.jpg")
    os.symlink("/dev/urandom", root / "urandom.jpg")
    damaged_files(root)
    (root / ESC_NAME).write_bytes(jpeg_bytes(5))
    (root / ESC_BROKEN).write_bytes(b"not a picture")
    started = time.monotonic()
    proc = cli(data, "index", str(root), timeout=300)  # before: hung forever in open()
    facts = {"seconds": time.monotonic() - started, "proc": proc}
    print(f"\nindex over FIFO, /dev/zero, /dev/urandom: exit {proc.returncode}, "
          f"{facts['seconds']:.1f} s")  # fmt: skip
    return data, root, facts


def failures(data: Path) -> dict[str, str]:
    store = Store(data / "library.sqlite3", readonly=True)
    try:
        return {Path(f.path).name: f.failure_reason for f in store.failures()}
    finally:
        store.close()


def test_files_that_never_end_are_refused_without_blocking(hostile_run):
    data, root, facts = hostile_run
    proc = facts["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "added 5" in proc.stdout and "failed 5" in proc.stdout, proc.stdout
    reasons = failures(data)
    assert reasons["photo.jpg"] == (
        "not a regular file (a named pipe (FIFO)); only regular files are read"
    )
    assert "a character device" in reasons["zero.jpg"]
    assert "a character device" in reasons["urandom.jpg"]
    store = Store(data / "library.sqlite3", readonly=True)
    indexed = {Path(p.path).name for p in store.get_photos(list(range(1, 50))).values()
               if p.status == STATUS_INDEXED}  # fmt: skip
    store.close()
    assert {"img_1_000.jpg", "img_1_001.jpg", "img_1_002.jpg", ESC_NAME} <= indexed


def test_read_file_refuses_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo.jpg")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    (tmp_path / "folder.jpg").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.jpg"))
    try:
        for name, kind in [
            ("fifo.jpg", "named pipe"),
            ("zero.jpg", "character device"),
            ("sock.jpg", "socket"),
        ]:
            with pytest.raises(ImageDecodeError, match=kind):
                read_file(tmp_path / name)
        with pytest.raises(ImageDecodeError, match="is a folder"):
            read_file(tmp_path / "folder.jpg")
    finally:
        sock.close()


def test_read_file_stops_at_the_size_limit_when_the_size_lies(tmp_path, monkeypatch):
    """/proc files say size 0, like devices did, and still hold bytes: never read past."""
    os.symlink(f"/proc/{os.getpid()}/maps", tmp_path / "maps.jpg")
    assert os.stat(tmp_path / "maps.jpg").st_size == 0
    assert len(read_file(tmp_path / "maps.jpg")) > 1000  # a regular file: read as it is
    monkeypatch.setattr(decoder, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ImageDecodeError, match="file too large"):
        read_file(tmp_path / "maps.jpg")


def test_library_messages_go_to_the_log_not_stderr(hostile_run):
    _data, root, facts = hostile_run
    noise = ("Warning", "warnings.warn", "Tag data", "ZIPDecode", "Corrupt", "Decoding error")
    stderr = facts["proc"].stderr
    assert not [line for line in stderr.splitlines() if any(n in line for n in noise)], stderr
    assert "damaged image" in failures(_data)["bad_strip.tif"]
    # they are log lines of the decoder's logger (the CLI shows INFO with -v)
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s %(message)s')\n"
        "from searchapp.decoder import load_photo\n"
        "from searchapp.errors import ImageDecodeError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        load_photo(path, 64)\n"
        "    except ImageDecodeError:\n"
        "        pass\n"
    )
    paths = [str(root / "bad_exif.jpg"), str(root / "bad_strip.tif")]
    logged = subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=60
    )
    lines = logged.stderr.splitlines()
    assert (
        "INFO searchapp.decoder UserWarning: Tag data larger than file. Skipping tag 271" in lines
    )
    assert any(
        x.startswith("INFO searchapp.decoder libtiff: ZIPDecode: Decoding error") for x in lines
    )
    assert len(lines) == 2, logged.stderr


def test_control_characters_in_names_are_escaped(hostile_run):
    data, root, _facts = hostile_run
    status = run_cli(data, "status")
    assert status.returncode == 0, status.stderr
    assert "\x1b" not in status.stdout and "\x07" not in status.stdout
    assert f"failed:  {root}/bad\\x1b]0;owned\\x07.jpg: not an image" in status.stdout
    exact = json.loads(run_cli(data, "status", "--json").stdout)  # JSON keeps the name exact
    assert str(root / ESC_BROKEN) in {f["path"] for f in exact["failures"]}
    found = run_cli(data, "search", "--like", str(root / "img_1_000.jpg"), "-k", "9")
    assert found.returncode == 0, found.stderr
    assert "\x1b" not in found.stdout and "\r" not in found.stdout
    assert f"{root}/evil\\x1b[31mred\\nline\\r.jpg" in found.stdout
    assert len(found.stdout.splitlines()) == 4  # 4 other photos, one line each


def test_printable_escapes_controls_only():
    assert printable("/photos/été 2024/IMG 1.jpg") == "/photos/été 2024/IMG 1.jpg"
    assert printable("a\x1b[2Jb\r\n\t\x7f\x9b") == "a\\x1b[2Jb\\r\\n\\t\\x7f\\x9b"
    assert printable("photo\u202egpj.exe") == "photo\\u202egpj.exe"
    assert printable(os.fsdecode(b"caf\xe9 \x9b.jpg")) == os.fsdecode(b"caf\xe9 ") + "\\x9b.jpg"


# ---------------------------------------------------------------- memory bounds


def progressive_jpeg_claiming(width: int, height: int) -> bytes:
    im = Image.fromarray(np.random.default_rng(3).integers(0, 256, (16, 16, 3), np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", progressive=True, quality=90, subsampling=0)
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc2")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def webp_with_alpha_claiming(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (16, 16), (1, 2, 3, 100)).save(buf, "WEBP", lossless=True)
    data = bytearray(buf.getvalue())
    at = data.find(b"VP8L") + 9  # 14 bits width-1, 14 bits height-1, alpha, version
    bits = int.from_bytes(data[at : at + 4], "little")
    bits = (bits & ~((1 << 28) - 1)) | (side - 1) | ((side - 1) << 14)
    data[at : at + 4] = bits.to_bytes(4, "little")
    return bytes(data)


def png_rgba(side: int) -> bytes:
    """A real ``side`` x ``side`` RGBA PNG of one colour: a few hundred KB."""
    import zlib

    z = zlib.compressobj(9)
    row = b"\x00" + b"\x10\x20\x30\xff" * side
    body = b"".join(z.compress(row * 100) for _ in range(side // 100))
    body += z.compress(row * (side % 100)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_stored(pixels: np.ndarray) -> bytes:
    """A real RGB PNG of ``pixels`` with its data stored, not deflated, each row marked with
    the Paeth filter: written in ~1 s where Pillow's encoder takes 4-7 s, and the costliest
    filter to undo, so decoding stays slow (the pixels come out scrambled; noise either way)."""
    import zlib

    height, width, _ = pixels.shape
    paeth = np.full((height, 1), 4, np.uint8)
    rows = np.concatenate([paeth, pixels.reshape(height, -1)], axis=1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(rows.tobytes(), 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def test_tiny_files_claiming_huge_pictures_are_refused_before_decoding(tmp_path):
    cases = {
        "progressive.jpg": progressive_jpeg_claiming(31000, 31000),  # was 5.6 GB, 11 s
        "alpha.webp": webp_with_alpha_claiming(9400),  # 88 MP: was 1.8 GB
    }
    for name, data in cases.items():
        assert len(data) < 1000
        (tmp_path / name).write_bytes(data)
        grew, seconds, out = measure_decode(tmp_path / name)
        print(f"\n{name} ({len(data)} bytes): {out} | {grew:.0f} MB, {seconds:.2f} s")
        assert out.startswith("refused: image too large to decode safely"), out
        assert grew < 64 and seconds < 2


def test_largest_accepted_png_stays_within_the_budget(tmp_path):
    """88 MP RGBA (Pillow's limit): decoded, then shrunk in stripes before any conversion."""
    (tmp_path / "big.png").write_bytes(png_rgba(9400))
    grew, seconds, out = measure_decode(tmp_path / "big.png")
    print(f"\n9400x9400 RGBA PNG: {out} | {grew:.0f} MB, {seconds:.2f} s")
    assert out == "ok 523x523"
    assert grew < decode_limits.MAX_DECODE_BYTES / MB  # was 1096 MB before the shrink


@pytest.mark.skipif("AVIF" not in decode_limits.FORMATS, reason="this Pillow reads no AVIF")
def test_avif_photos_are_indexed_and_decode_within_their_estimate(settings, embedder, tmp_path):
    """AVIF (phones and browsers save it) was skipped without a word; now it is a photo,
    a damaged one fails alone, and a decode stays within the memory estimate that the
    limits check before decoding (libavif: measured 9.5-11.9 bytes a pixel)."""
    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (96, 64), (200, 40, 30)).save(root / "phone.avif", quality=60)
    whole = (root / "phone.avif").read_bytes()
    (root / "cut.avif").write_bytes(whole[: len(whole) // 2])
    stats = index_once(settings, embedder, root)
    assert (stats.added, stats.failed) == (1, 1)
    big = tmp_path / "big.avif"
    Image.new("RGBA", (4096, 4096), (9, 9, 9, 9)).save(big, quality=10, speed=10)
    data = big.read_bytes()
    opened = decoder._open(data, decode_limits.deadline_after())
    estimate = decode_limits.decode_cost(opened, data, 256, opened.size)
    grew, _, out = measure_decode(big)
    print(f"\n4096x4096 RGBA AVIF: {out} | {grew:.0f} MB, estimate {estimate / MB:.0f} MB")
    assert out.startswith("ok") and grew * MB <= estimate


# ---------------------------------------------------------------- decoder surprises


def heic_bytes(seed: int, side: int = 64) -> bytes:
    im = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8))
    buf = io.BytesIO()
    im.save(buf, "HEIF", quality=60)
    return buf.getvalue()


def test_whatever_a_decoder_raises_fails_only_that_file(settings, embedder, tmp_path, monkeypatch):
    from pillow_heif.as_plugin import HeifImageFile

    root = tmp_path / "photos"
    write_jpegs(root, 3, seed=7)
    (root / "phone.heic").write_bytes(heic_bytes(1))
    (root / "surprise.heic").write_bytes(heic_bytes(2, side=48))
    whole = heic_bytes(3)
    (root / "damaged.heic").write_bytes(whole[: len(whole) * 2 // 3])  # cut in its pixels
    real_load = HeifImageFile.load

    def surprising_load(self):  # noqa: ANN001, ANN202 - libheif raising a type nobody expects
        if self.size == (48, 48):
            raise RuntimeError("heif: unsupported feature\nin a second line")
        return real_load(self)

    monkeypatch.setattr(HeifImageFile, "load", surprising_load)
    stats = index_once(settings, embedder, root)  # before: RuntimeError ended the whole run
    assert stats.added == 4 and stats.failed == 2
    store = Store(settings.db_path)
    reason = {Path(f.path).name: f.failure_reason for f in store.failures()}
    store.close()
    assert reason["surprise.heic"] == (
        "damaged image (RuntimeError: heif: unsupported feature in a second line)"
    )
    assert reason["damaged.heic"].startswith(("damaged image", "truncated or damaged"))


def test_decode_time_limit_fails_the_slow_file_only(settings, embedder, tmp_path, monkeypatch):
    root = tmp_path / "photos"
    write_jpegs(root, 2, seed=9)  # 64x64: a few ms each
    noise = np.random.default_rng(4).integers(0, 256, (6000, 8000, 3), np.uint8)
    data = png_stored(noise)  # 144 MB, read in pieces
    (root / "slow.png").write_bytes(data)
    del noise
    started, started_cpu = time.perf_counter(), time.process_time()
    decode_photo(data, 256, content_hash="not hashed")
    full, full_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    # the limits below are relative to this; it only has to dwarf the checks' granularity
    assert full > 0.3, f"slow.png decodes in {full:.2f} s: too fast for this test"
    limit = round(full / 20, 3)  # limits relative to this machine's speed now
    monkeypatch.setattr(decode_limits, "DECODE_TIME_LIMIT_S", limit)
    started, started_cpu = time.perf_counter(), time.process_time()
    with pytest.raises(ImageDecodeError, match=f"decoding took over {limit:g} s, the limit"):
        decode_photo(data, 256, content_hash="not hashed")
    stopped, stopped_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    print(f"\nslow.png: {full:.2f} s to decode; stopped after {stopped:.2f} s at {limit} s")
    # stopped early, in CPU time: a loaded machine stretches the wall clock, not the work
    assert stopped_cpu < full_cpu / 3, (stopped_cpu, full_cpu)
    del data
    # a quarter of the slow file's time: still over 100x what a 64x64 JPEG takes
    monkeypatch.setattr(decode_limits, "DECODE_TIME_LIMIT_S", round(full / 4, 3))
    stats = index_once(settings, embedder, root)
    assert stats.added == 2 and stats.failed == 1
    store = Store(settings.db_path)
    failed = store.failures()
    store.close()
    assert [Path(f.path).name for f in failed] == ["slow.png"]
    assert failed[0].failure_reason.startswith(f"decoding took over {round(full / 4, 3):g} s")
