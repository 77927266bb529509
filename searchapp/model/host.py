"""The model in a child process, so the watcher never imports torch and idle means exited.

``import torch`` alone keeps ~650 MB resident with a CUDA wheel, and the heaps indexing
grows are not given back by ``malloc_trim``; a process that exits gives all of it back.
:class:`ModelHost` is the encoder the watcher uses: preprocessing stays here (Pillow and
NumPy), arrays go to the child (``searchapp.model.child``), vectors come back.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import replace

import numpy as np
from PIL import Image

from searchapp.config import Settings
from searchapp.errors import ModelError
from searchapp.model import child as proto
from searchapp.model.preprocess import prepare_pixels
from searchapp.model.spec import ModelSpec, warn_if_meaningless

log = logging.getLogger("searchapp.model")

QUERY_WORKERS = 2  # child threads beside the indexing lanes: a query never waits for a lane
STOP_WAIT_S = 10.0  # how long a child may take to exit before it is killed


class ModelHost:
    """An encoder (the :class:`~searchapp.model.encoder.ImageEncoder` interface, like
    :class:`~searchapp.model.lazy.LazyEmbedder`) whose model lives in a child process.

    Made, it starts the child, which checks device, precision and weights (the checks
    import torch) and reports them, so a bad setting fails here in one line. The model
    loads with the first photo or query, or :meth:`start_loading`. Calls from several
    threads run at once in the child (``lanes`` for indexing, plus room for queries),
    ``threads`` torch threads each. :meth:`unload_if_idle` lets the child exit; a child
    that died (kill -9, out of memory) fails its calls in flight with :class:`ModelError`,
    and the next call starts a fresh one. ``device`` and ``precision`` are the child's
    checked choice (``auto`` resolved). The child is spawned, so a script that makes a
    host needs the ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, settings: Settings, *, lanes: int = 1, threads: int = 0) -> None:
        self.settings = settings
        self._child_settings = replace(settings, torch_threads=threads) if threads else settings
        self._workers = max(1, lanes) + QUERY_WORKERS
        self._lock = threading.Lock()  # the current child, busy count, last use
        self._start_lock = threading.Lock()  # one child starts at a time
        self._busy = 0  # calls running now: the child is never stopped under one
        self._last_used = time.monotonic()
        self._child: _Child | None = None
        self._spec: ModelSpec | None = None  # the first child's, given to the next ones
        self.spec, self.device, self.precision = self._current_child().ready()
        self._spec = self.spec
        self.model_id = self.spec.model_id
        self.dim = self.spec.dim
        self.preprocess_config = self.spec.preprocess
        warn_if_meaningless(self.spec)  # said once, not by each child

    @property
    def load_started(self) -> bool:
        child = self._child
        return child is not None and child.load_requested

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory now (in a running child)."""
        child = self._child
        return child is not None and child.loaded

    @property
    def in_use(self) -> bool:
        """Whether a call is running now (the child is never stopped under one)."""
        return self._busy > 0

    @property
    def child_pid(self) -> int | None:
        """The running child's process id (tests and benchmarks measure it), or None."""
        child = self._child
        return None if child is None or child.stopped else child.pid

    def start_loading(self) -> None:
        """Have the model load now (once per child); returns at once."""
        with self._use():
            pass

    def unload_if_idle(self, idle_s: float) -> bool:
        """Stop the child if unused for ``idle_s`` seconds (0: never); True if stopped."""
        with self._lock:
            child = self._child
            if idle_s <= 0 or child is None or self._busy or child.loading:
                return False
            if time.monotonic() - self._last_used < idle_s:
                return False
            self._child = None
        loaded = child.loaded
        child.stop()
        if loaded:
            log.info("model: unloaded after %.0f s idle; the next photo or query loads it", idle_s)
        return True

    def close(self) -> None:
        """Stop the child (the watcher's end)."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.stop()

    def prepare(self, image: Image.Image) -> np.ndarray:
        return prepare_pixels(image, self.preprocess_config)

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        with self._use() as child:
            return child.call(proto.PREPARED, pixels)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_prepared(np.stack([self.prepare(im) for im in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        with self._use() as child:
            return child.call(proto.TEXTS, list(texts))

    @contextmanager
    def _use(self) -> Iterator[_Child]:
        with self._lock:
            self._busy += 1
        try:
            child = self._current_child()
            child.request_load()
            yield child
        finally:
            with self._lock:
                self._busy -= 1
                self._last_used = time.monotonic()

    def _current_child(self) -> _Child:
        """The running child, or a new one (at start, after an unload or a death)."""
        with self._start_lock:
            child = self._child
            if child is None or child.stopped:
                child = _Child(self._child_settings, self._spec, self._workers)
                with self._lock:
                    self._child = child
            return child


class _Child:
    """One child process, its pipe, and the reader thread that answers its calls."""

    def __init__(self, settings: Settings, spec: ModelSpec | None, workers: int) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._conn, theirs = context.Pipe()
        level = logging.getLogger().getEffectiveLevel()
        self._process = context.Process(
            target=proto.serve,
            args=(theirs, settings, spec, workers, level),
            name="searchapp-model",
            daemon=True,
        )
        self._process.start()
        theirs.close()  # only the child holds its end: its exit is our end-of-file
        self.pid = self._process.pid
        self.stopped = False
        self._ready: Future[tuple[ModelSpec, str, str]] = Future()
        self._load: Future | None = None
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()  # pending calls, stopped
        self._send_lock = threading.Lock()  # one message on the pipe at a time
        self._reader = threading.Thread(target=self._read, name="model-reader", daemon=True)
        self._reader.start()

    def ready(self) -> tuple[ModelSpec, str, str]:
        """(spec, device, precision) once the child checked them; raises its error."""
        return self._ready.result()

    @property
    def load_requested(self) -> bool:
        return self._load is not None

    @property
    def loading(self) -> bool:
        load = self._load
        return load is not None and not load.done()

    @property
    def loaded(self) -> bool:
        load = self._load
        return not self.stopped and load is not None and load.done() and not load.exception()

    def request_load(self) -> None:
        with self._lock:
            if self._load is not None:
                return
            self._load = Future()
        self._submit(proto.LOAD, None, self._load)

    def call(self, op: str, argument: object) -> np.ndarray:
        """Send one request and wait for its answer."""
        future: Future = Future()
        self._submit(op, argument, future)
        return future.result()

    def _submit(self, op: str, argument: object, future: Future) -> None:
        with self._lock:
            if self.stopped:
                future.set_exception(self._stop_error())
                return
            call_id = next(self._ids)
            self._pending[call_id] = future
        with self._send_lock, suppress(OSError):  # a dead child: the reader fails the call
            self._conn.send((call_id, op, argument))

    def stop(self) -> None:
        """Ask the child to exit; kill it if it does not."""
        with self._send_lock, suppress(OSError):
            self._conn.send(proto.STOP)
        self._reader.join(STOP_WAIT_S)
        if self._process.is_alive():
            self._process.kill()
        self._reader.join()

    def _read(self) -> None:
        try:
            while True:
                self._handle(self._conn.recv())
        except (EOFError, OSError):
            pass  # the child exited or died
        self._process.join(STOP_WAIT_S)
        with self._lock:
            self.stopped = True
            pending, self._pending = self._pending, {}
        if not self._ready.done():
            self._ready.set_exception(self._stop_error())
        for future in pending.values():
            future.set_exception(self._stop_error())
        with self._send_lock:
            self._conn.close()

    def _handle(self, message: tuple) -> None:
        tag = message[0]
        if tag == proto.READY:
            self._ready.set_result(message[1:])
        elif tag == proto.FAILED:
            self._ready.set_exception(proto.error_from(message[1]))
        elif tag == proto.LOG:
            logging.getLogger(message[1]).log(message[2], "%s", message[3])
        else:
            call_id, ok, value = message
            with self._lock:
                future = self._pending.pop(call_id, None)
            if future is not None:
                future.set_result(value) if ok else future.set_exception(proto.error_from(value))

    def _stop_error(self) -> Exception:
        """Why calls fail now: the child's own start-up error, or how it ended."""
        if self._ready.done() and self._ready.exception() is not None:
            failed = self._ready.exception()
            return type(failed)(str(failed))
        return ModelError(f"the model process stopped ({_ending(self._process.exitcode)}); "
                          "the next photo or query starts it again.")  # fmt: skip


def _ending(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    killed = -code == getattr(signal, "SIGKILL", None)  # Windows has no SIGKILL
    return f"killed by {name}" + (", out of memory?" if killed else "")
