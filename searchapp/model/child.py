"""What runs in the model's own process, the child of :class:`~searchapp.model.host.ModelHost`.

Started with the "spawn" context, it checks the settings first (device, precision, the
weights' source: the checks that import torch) and reports the spec, device and precision
(``READY``) or the one-line error (``FAILED``). Then it answers requests from a small
thread pool, so the indexer's model lanes run in parallel here as they did in one
process; the model loads with the first request. It exits when the parent says ``STOP``
or goes away (its end of the pipe closes), and forwards its log records to the parent.

Messages, parent to child: ``(call_id, op, argument)`` or ``STOP``. Child to parent:
``(READY, spec, device, precision)``, ``(FAILED, error)``, ``(LOG, logger, level, text)``
and answers ``(call_id, ok, value)``, where a failure's value is ``(error class, message)``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import NoReturn

from searchapp import errors
from searchapp.config import Settings
from searchapp.model.device import device_and_precision
from searchapp.model.encoder import ImageEncoder
from searchapp.model.hub import check_weights
from searchapp.model.loader import load_embedder
from searchapp.model.spec import ModelSpec, resolve_spec

READY, FAILED, LOG = "ready", "failed", "log"
LOAD, PREPARED, TEXTS = "load", "prepared", "texts"
STOP = None

ErrorFields = tuple[str, str]


def serve(
    conn: Connection, settings: Settings, spec: ModelSpec | None, workers: int, log_level: int
) -> None:
    """The child's main function: check, report, then answer until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when we stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send = _Sender(conn)
    _forward_logs(send, log_level)
    try:
        spec, device, precision = check(settings, spec)
    except Exception as err:  # noqa: BLE001 - the parent raises it, in one line
        send((FAILED, error_fields(err)))
        _exit()
    send((READY, spec, device, precision))
    model = _Model(settings, spec)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="model")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break  # the parent is gone
        if message is STOP:
            break
        pool.submit(_answer, send, model, *message)
    _exit()


def check(settings: Settings, spec: ModelSpec | None) -> tuple[ModelSpec, str, str]:
    """Resolve the spec (unless given) and check device, precision and, the first time,
    that the weights can be had: a bad setting fails at start, not after a long scan."""
    first = spec is None
    spec = spec or resolve_spec(settings)
    device, precision = device_and_precision(settings)
    if first:
        check_weights(settings, spec, device, precision)
    return spec, device, precision


def error_fields(err: BaseException) -> ErrorFields:
    """An error as (class name, one line): only our own classes cross the pipe, so the
    parent never unpickles a torch exception (which would import torch there)."""
    if isinstance(err, errors.SearchAppError):
        return type(err).__name__, str(err)
    first = (str(err).strip().splitlines() or [""])[0]
    return "ModelError", f"the model failed: {type(err).__name__}: {first}"


def error_from(fields: ErrorFields) -> errors.SearchAppError:
    """The error of :func:`error_fields`, as its own class where it is one of ours."""
    name, message = fields
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.SearchAppError)):
        cls = errors.ModelError
    return cls(message)


class _Sender:
    """Sends from any thread; a parent that went away is noticed by the main loop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def __call__(self, message: tuple) -> None:
        with self._lock, suppress(OSError):
            self._conn.send(message)


class _Model:
    """The encoder, loaded by the first request that needs it; a failed load is tried
    again by the next request."""

    def __init__(self, settings: Settings, spec: ModelSpec) -> None:
        self._settings = settings
        self._spec = spec
        self._lock = threading.Lock()
        self._encoder: ImageEncoder | None = None

    def get(self) -> ImageEncoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = load_embedder(self._settings, announce=False, spec=self._spec)
                keep = getattr(self._encoder, "keep_traced", None)  # the pixel encoder has none
                if keep is not None:  # built from its weights: the next child loads in ~1 s
                    threading.Thread(target=keep, name="model-keep", daemon=True).start()
            return self._encoder


def _answer(send: _Sender, model: _Model, call_id: int, op: str, argument: object) -> None:
    try:
        encoder = model.get()
        if op == PREPARED:
            value = encoder.encode_prepared(argument)
        elif op == TEXTS:
            value = encoder.encode_texts(argument)
        else:
            value = None  # LOAD: loaded above
        send((call_id, True, value))
    except Exception as err:  # noqa: BLE001 - the caller gets it; the child keeps serving
        send((call_id, False, error_fields(err)))


class _LogSender(logging.Handler):
    def __init__(self, send: _Sender) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        self._send((LOG, record.name, record.levelno, self.format(record)))


def _forward_logs(send: _Sender, level: int) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_LogSender(send)]
    root.setLevel(level)


def _exit() -> NoReturn:
    # os._exit: a load in a pool thread must not hold the exit up, and nothing is left to
    # flush but the standard streams
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
