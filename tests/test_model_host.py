"""The model in a child process (``ModelHost``): same vectors, calls in parallel, an idle
child exits, a killed one fails only its calls in flight, and the watcher never imports
torch itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from searchapp.config import Settings
from searchapp.errors import ModelError, WeightsUnavailableError
from searchapp.model import ModelHost, PixelEncoder
from tests import helpers
from tests.test_engine import Watcher, build_library, post

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parent.parent


def images(count: int, seed: int, size: int = 96) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 255, (size, size + 20, 3), dtype=np.uint8))
        for _ in range(count)
    ]


@pytest.fixture()
def host(settings: Settings) -> Iterator[ModelHost]:
    host = ModelHost(settings, lanes=2)
    yield host
    host.close()


def in_flight(host: ModelHost, call: object, *args: object) -> tuple[Future, ThreadPoolExecutor]:
    """Start ``call`` in a thread and wait until the host counts it as running."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(call, *args)
    helpers.wait_for(lambda: host.in_use or future.done(), "the call to start", 30, 0.01)
    return future, pool


def test_vectors_through_the_host_equal_in_process_ones(
    host: ModelHost, embedder: PixelEncoder
) -> None:
    assert (host.model_id, host.dim, host.device, host.precision) == (
        embedder.model_id, embedder.dim, embedder.device, embedder.precision,
    )  # fmt: skip
    assert host.preprocess_config == embedder.preprocess_config
    photos = images(5, seed=1)
    np.testing.assert_array_equal(host.encode_images(photos), embedder.encode_images(photos))
    prepared = np.stack([host.prepare(im) for im in photos])
    np.testing.assert_array_equal(
        host.encode_prepared(prepared), embedder.encode_prepared(prepared)
    )
    texts = ["a kayak on a lake", "two dogs"]
    np.testing.assert_array_equal(host.encode_texts(texts), embedder.encode_texts(texts))
    assert host.encode_images([]).shape == (0, host.dim)
    assert host.is_loaded and host.load_started


def test_calls_from_many_threads_each_get_their_own_answer(
    host: ModelHost, embedder: PixelEncoder
) -> None:
    def work(i: int) -> None:
        for round_ in range(4):
            photos = images(2, seed=100 * i + round_)
            got = host.encode_images(photos)
            np.testing.assert_array_equal(got, embedder.encode_images(photos))
            text = f"query {i} {round_}"
            np.testing.assert_array_equal(host.encode_texts([text]), embedder.encode_texts([text]))

    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(work, i) for i in range(8)]:
            done.result()


def test_a_query_is_answered_while_a_long_batch_runs(host: ModelHost) -> None:
    host.encode_texts(["warm"])  # loaded: what follows measures the calls, not the start
    batch = np.stack([host.prepare(im) for im in images(100, seed=3)])  # ~2 s in the child
    future, pool = in_flight(host, host.encode_prepared, batch)
    with pool:
        host.encode_texts(["kayak"])
        assert not future.done(), "the query waited for the batch"
        assert future.result().shape == (100, host.dim)


def test_an_idle_child_exits_and_the_next_call_starts_another(
    host: ModelHost, embedder: PixelEncoder
) -> None:
    host.encode_texts(["load it"])
    first = host.child_pid
    assert first is not None and host.is_loaded
    helpers.wait_for(lambda: host.unload_if_idle(0.2), "the idle unload", 30, 0.05)
    assert not host.is_loaded and host.child_pid is None
    assert not psutil.pid_exists(first)  # exited, and reaped
    np.testing.assert_array_equal(host.encode_texts(["again"]), embedder.encode_texts(["again"]))
    assert host.child_pid not in (None, first) and host.is_loaded
    assert not host.unload_if_idle(0)  # 0 keeps it


def test_the_child_is_never_stopped_under_a_running_call(host: ModelHost) -> None:
    host.encode_texts(["load it"])
    pid = host.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the call below stays in flight until SIGCONT
    try:
        future, pool = in_flight(host, host.encode_images, images(2, seed=4))
        helpers.holds_for(lambda: not host.unload_if_idle(0.01), "no unload under a call", 1.0)
    finally:
        os.kill(pid, signal.SIGCONT)
    with pool:
        assert future.result().shape == (2, host.dim)
    assert host.child_pid == pid
    helpers.wait_for(lambda: host.unload_if_idle(0.05), "the unload after the call", 30, 0.05)


def test_a_killed_child_fails_the_call_in_flight_and_the_next_call_starts_afresh(
    host: ModelHost, embedder: PixelEncoder
) -> None:
    host.encode_texts(["load it"])
    pid = host.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the call is surely in flight when the kill lands
    future, pool = in_flight(host, host.encode_images, images(2, seed=5))
    os.kill(pid, signal.SIGKILL)
    with pool, pytest.raises(ModelError) as failed:
        future.result(timeout=60)
    message = str(failed.value)
    assert "\n" not in message and "SIGKILL" in message and "starts it again" in message
    assert not host.is_loaded
    photos = images(2, seed=6)
    np.testing.assert_array_equal(host.encode_images(photos), embedder.encode_images(photos))
    assert host.child_pid not in (None, pid)


def test_a_start_error_in_the_child_comes_back_as_the_same_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    bad = Settings(data_dir=tmp_path / "lib", weights=str(missing), device="cpu")
    with pytest.raises(WeightsUnavailableError) as failed:
        ModelHost(bad)
    assert str(failed.value) == (
        f"weights file {missing} not found; give the path of an open_clip checkpoint "
        "(.safetensors or .bin), a local-dir:FOLDER, or --weights random."
    )


# Runs a watcher (``run_watch`` in a thread) on the real random-weight MobileCLIP, indexes
# through it and searches a text through its engine; then reports this process's modules.
WATCHER_PROBE = """
import json, sys, threading
import psutil
from searchapp.config import load_settings
from searchapp.engine_client import EngineClient
from searchapp.indexer.commands import Index
from searchapp.indexer.daemon import run_watch
from searchapp.indexer.writer import submit

settings = load_settings(data_dir=sys.argv[1], encoder="clip", weights="random", precision="fp32")
stop = threading.Event()
watcher = threading.Thread(target=run_watch, args=(settings, stop))
watcher.start()
try:
    client = EngineClient(settings, answer_timeout_s=120)
    while not client.available():
        assert watcher.is_alive(), "the watcher ended"
        stop.wait(0.1)
    stats = submit(settings, Index(add_roots=(sys.argv[2],)), wait_s=200).stats
    answer = client.search({"text": "a kayak on a lake", "k": 10})
    children = [
        any("libtorch" in m.path for m in child.memory_maps())
        for child in psutil.Process().children()
    ]
finally:
    stop.set()
    watcher.join()
print(json.dumps({
    "embedded": stats.embedded,
    "results": len(answer["results"]),
    "children_with_torch": sum(children),
    "heavy": sorted({"torch", "open_clip", "timm", "torchvision"} & set(sys.modules)),
}))
"""


def test_the_watcher_process_never_imports_torch(tmp_path: Path) -> None:
    helpers.write_jpegs(tmp_path / "photos", 4, seed=7)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCHAPP_")}
    env.update(HF_HUB_OFFLINE="1", SEARCHAPP_DEVICE="cpu")
    cmd = [sys.executable, "-c", WATCHER_PROBE, str(tmp_path / "lib"), str(tmp_path / "photos")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=280)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"embedded": 4, "results": 4, "children_with_torch": 1, "heavy": []}


def model_child(watcher: Watcher) -> psutil.Process | None:
    """The watcher's model process (the spawned child), if one runs."""
    for child in psutil.Process(watcher.proc.pid).children():
        if any("spawn_main" in part for part in child.cmdline()):
            return child
    return None


def test_the_watcher_outlives_its_killed_model_process(tmp_path: Path) -> None:
    lib, _ = build_library(tmp_path, 4)
    watcher = Watcher(lib)
    try:
        assert post(lib, "encode", {"text": "kayak"})[0] == 200
        child = model_child(watcher)
        assert child is not None
        child.suspend()  # the next request stays in flight until the kill
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(post, lib, "encode", {"text": "lake"})
            helpers.holds_for(lambda: not waiting.done(), "the request to wait", 1.0)
            child.kill()
            status, failed = waiting.result(timeout=60)
        assert (status, failed["error"]["kind"]) == (503, "ModelError"), failed
        assert "SIGKILL" in failed["error"]["message"]
        status, again = post(lib, "encode", {"text": "river"})  # not in the query cache
        assert status == 200
        np.testing.assert_allclose(again["vector"], PixelEncoder().encode_texts(["river"])[0])
        assert watcher.proc.poll() is None
        fresh = model_child(watcher)
        assert fresh is not None and fresh.pid != child.pid
    finally:
        watcher.stop()
    helpers.wait_for(lambda: gone(fresh.pid), "the child to exit with its watcher", 30)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
