"""Decode, thumbnail and embed on a Ray cluster (``--ray``); the rest stays on the driver.

The driver keeps everything that needs the library: scan, plan, read and hash, the
resolver, and the one writer committing batches in order. :class:`RayStage` is the
pipeline's swappable decode+embed stage (``pipeline.RemoteStage``): each resolved batch
goes to one :class:`~searchapp.indexer.ray_worker.EmbedWorker` actor and comes back
decoded and embedded, in the order it was sent. Ray is imported here only, when a run
asks for it; ``open_ray_stage`` fails before anything is written (missing extra,
unreachable cluster, other versions on a worker, a shared root a worker cannot see).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import tempfile
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from searchapp.config import Settings
from searchapp.errors import (
    RayClusterError,
    RayError,
    RayUnavailableError,
    RayVersionError,
    SearchAppError,
)
from searchapp.indexer.pipeline import ReadyBatch, ResolvedBatch
from searchapp.indexer.ray_worker import (
    EmbedWorker,
    Job,
    Result,
    software_versions,
    version_mismatches,
)
from searchapp.indexer.stages import Decoded, Failed, Hashed, Ready, ToDecode, photo_row
from searchapp.model import ModelSpec, fetch_checkpoint
from searchapp.model.hub import model_folder_files
from searchapp.paths import is_under
from searchapp.thumbnails import write_thumbnail_bytes

log = logging.getLogger(__name__)

LOCAL, AUTO = "local", "auto"
# ``--ray local`` on Linux: a node on a loopback address Ray does not rewrite (it turns
# 127.0.0.1 into the machine's network address), so the instance is not on the network
LOCAL_NODE_IP = "127.0.0.2" if sys.platform.startswith("linux") else ""
CONNECT_TIMEOUT_S = 5.0
START_TIMEOUT_S = 300.0  # actors starting and loading the model on a busy machine
INSTALL_HINT = "install the Ray extra: pip install 'searchapp[ray]'"


def import_ray():  # noqa: ANN201 - the ray module
    """The ``ray`` module, or one line naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            f"--ray needs Ray, which is not installed; {INSTALL_HINT}."
        ) from None
    return ray


@dataclass
class _Worker:
    """One actor, the batches it holds, and how many it may hold at once."""

    actor: object
    host: str
    slots: int
    busy: int = 0


@dataclass
class _Sent:
    """A batch out on a worker: what the driver needs to take it back."""

    claim: object
    resolved: list
    sizes: list[int]
    jobs: list[Job]
    worker: _Worker | None
    ref: object | None


class RayStage:
    """Decode+embed batches on Ray actors, one model each; results in the order sent."""

    def __init__(self, ray, settings: Settings, spec: ModelSpec) -> None:  # noqa: ANN001
        self.ray = ray
        self.settings = settings
        self.spec = spec
        self.shared = shared_roots(settings)
        self._workers: list[_Worker] = []
        self._weights = None

    @property
    def workers(self) -> int:
        """Workers alive (a lost node's worker is dropped and its batches sent again)."""
        return len(self._workers)

    def describe(self) -> str:
        hosts = sorted({w.host for w in self._workers})
        return f"{self.workers} Ray worker(s) on {', '.join(hosts)}"

    # ------------------------------------------------------------ start
    def start(self) -> RayStage:
        """Start one actor per machine (per GPU), check them, load the model on each."""
        ray = self.ray
        self._workers = [self._spawn(node) for node in _worker_nodes(ray, self.settings)]
        if not self._workers:
            raise RayClusterError(
                "the Ray cluster has no CPUs or GPUs for workers; start a worker with: "
                "ray start --address HEAD:PORT"
            )
        remotes = [r for _, r in self.shared]
        facts = self._get([w.actor.facts.remote(remotes) for w in self._workers])
        here = software_versions()
        for worker, fact in zip(self._workers, facts, strict=True):
            worker.slots = fact["lanes"] + 1  # one more than the lanes: no lane idles
            _check_worker(here, fact)
        self._weights = _ship_weights(ray, self.spec)
        described = self._get([w.actor.load.remote(self._weights) for w in self._workers])
        log.info("%s: %s", self.describe(), "; ".join(described))
        return self

    def _spawn(self, node: dict) -> _Worker:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        cls = self.ray.remote(EmbedWorker).options(
            num_cpus=node["cpus"],
            num_gpus=node["gpus"],
            max_concurrency=8,  # more than any worker's lanes + 1
            max_restarts=0,  # a lost worker's batches go to the others instead
            scheduling_strategy=strategy,
        )
        settings = self.settings
        if node["gpus"] == 0 and settings.device == "auto":
            settings = settings.with_overrides(device="cpu")
        return _Worker(cls.remote(settings, self.spec, node["cpus"]), node["ip"], 1)

    def _get(self, refs: list) -> list:
        try:
            return self.ray.get(refs, timeout=START_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            raise RayClusterError(
                f"the Ray workers did not start within {START_TIMEOUT_S:.0f} s (busy cluster?);"
                " see: ray status"
            ) from None
        except self.ray.exceptions.RayTaskError as err:
            raise _cause(err) from None
        except self.ray.exceptions.RayError as err:
            raise RayClusterError(_lost(err)) from None

    # ------------------------------------------------------------ run
    def ready(self, batches: Iterator[ResolvedBatch]) -> Iterator[ReadyBatch]:
        """Send each batch to the least busy worker; take them back in order."""
        out: deque[_Sent] = deque()
        for claim, hashed, resolved in batches:
            out.append(self._send(claim, hashed, resolved))
            while out and (out[0].ref is None or len(out) > self._window()):
                yield self._receive(out.popleft())
        while out:
            yield self._receive(out.popleft())

    def _window(self) -> int:
        return sum(w.slots for w in self._workers)

    def _send(self, claim: object, hashed: list, resolved: list) -> _Sent:
        sizes, jobs = [], []
        for h, r in zip(hashed, resolved, strict=True):
            sizes.append(len(h.data) if isinstance(h, Hashed) else 0)
            if isinstance(r, ToDecode):
                jobs.append(self._job(r, h.data))
        sent = _Sent(claim, resolved, sizes, jobs, None, None)
        return self._dispatch(sent) if jobs else sent

    def _job(self, item: ToDecode, data: bytes) -> Job:
        path = remote_path(item.work.file.path, self.shared)
        if path is None:
            return Job(item.content_hash, item.embed, data=data)
        return Job(item.content_hash, item.embed, path=path)

    def _dispatch(self, sent: _Sent) -> _Sent:
        if not self._workers:
            raise RayClusterError(
                "every Ray worker is gone (the cluster stopped?); everything committed so far "
                "is kept: start the cluster again and rerun, or index without --ray"
            )
        worker = min(self._workers, key=lambda w: w.busy / w.slots)
        worker.busy += 1
        sent.worker, sent.ref = worker, worker.actor.process.remote(sent.jobs)
        return sent

    def _receive(self, sent: _Sent) -> ReadyBatch:
        ray = self.ray
        while sent.ref is not None:
            try:
                results, vectors = ray.get(sent.ref)
                sent.worker.busy -= 1
                break
            except ray.exceptions.RayTaskError as err:
                raise _cause(err) from None
            except ray.exceptions.RayError as err:  # the worker or its node is gone
                self._drop(sent.worker, err)
                self._dispatch(sent)
        else:
            results, vectors = [], None
        return sent.claim, sent.resolved, self._ready_items(sent, results, vectors)

    def _drop(self, worker: _Worker, err: Exception) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
            # said at INFO: the run goes on, and the progress shows one worker less
            log.info("Ray worker on %s lost (%s); its batches go to others", worker.host, err)

    def _ready_items(
        self, sent: _Sent, results: list[Result], vectors: np.ndarray | None
    ) -> list[Ready]:
        out: list[Ready] = []
        done = iter(results)
        for item, size in zip(sent.resolved, sent.sizes, strict=True):
            if not isinstance(item, ToDecode):
                out.append(item)
                continue
            result = next(done)
            if result.reason is not None:
                out.append(Failed(item.work, result.reason))
                continue
            write_thumbnail_bytes(self.settings.thumbs_dir, item.content_hash, result.thumbnail)
            vector = vectors[result.vector] if vectors is not None and result.vector >= 0 else None
            row = photo_row(item, size, result.facts)
            out.append(Decoded(item.work, row, item.source, vector=vector))
        return out

    def close(self) -> None:
        """Stop the actors and leave the cluster (a ``local`` instance stops with it)."""
        for worker in self._workers:
            try:
                self.ray.kill(worker.actor)
            except Exception:  # noqa: BLE001 - a lost cluster has nothing left to stop
                log.debug("Ray worker on %s already gone", worker.host)
        self._workers = []
        self.ray.shutdown()


def open_ray_stage(settings: Settings, spec: ModelSpec) -> RayStage:
    """Connect to ``settings.ray_address`` and start checked workers; nothing is written."""
    ray = import_ray()
    connect(ray, settings)
    stage = RayStage(ray, settings, spec)
    try:
        return stage.start()
    except BaseException:
        stage.close()
        raise


def connect(ray, settings: Settings) -> None:  # noqa: ANN001
    """``ray.init`` for an address: local (a new instance), auto, HOST:PORT or ray://."""
    address = settings.ray_address
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING, namespace="searchapp")
    node_ip = settings.ray_node_ip or _node_ip_for(address)
    if node_ip:
        quiet["_node_ip_address"] = node_ip
    try:
        if address == LOCAL:
            # "local", not None: None would join a cluster named by RAY_ADDRESS instead
            ray.init(LOCAL, num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
            return
        # Ray retries an absent head for ever, printing as it goes: ask once, briefly
        _require_listening(address, gcs_address(ray, address))
        with tempfile.TemporaryFile() as said, _stderr_into(said):
            try:
                ray.init(address=address, **quiet)
            except Exception:
                said.seek(0)
                if b"InvalidAuthToken" in said.read():
                    raise RayClusterError(
                        f"the Ray cluster at {address} refused this machine's auth token; copy "
                        "the head's token (ray get-auth-token) to RAY_AUTH_TOKEN or "
                        "~/.ray/auth_token here"
                    ) from None
                raise
    except SearchAppError:
        raise
    except Exception as err:  # noqa: BLE001 - Ray raises many types for "cannot connect"
        text = " ".join(str(err).split())[:200]
        if "version" in text.lower():  # Ray's own check: another Ray or Python there
            raise RayVersionError(
                f"the Ray cluster at {address} runs another Ray or Python ({text}); install the "
                "same versions here and there"
            ) from None
        raise RayClusterError(
            f"cannot join the Ray cluster at {address} ({text}); check the address and that "
            "this machine has the cluster's auth token, or index without --ray"
        ) from None


@contextmanager
def _stderr_into(file: IO[bytes]) -> Iterator[None]:
    """Send file descriptor 2 into ``file`` for a while: Ray's C++ client logs every retry
    of a refused connection there, and the error we raise says it in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def gcs_address(ray, address: str) -> tuple[str, int]:  # noqa: ANN001
    """(host, port) that answers for ``address``: the head's GCS, or a ray:// client server."""
    if address == AUTO:
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:
            address = canonicalize_bootstrap_address_or_die(AUTO)
        except ConnectionError:
            raise RayClusterError(
                "no Ray cluster runs on this machine (--ray auto); start one with: ray start "
                "--head, or use --ray local"
            ) from None
    default_port = 10001 if address.startswith("ray://") else 6379
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        host, port = address.removeprefix("ray://"), str(default_port)
    return host.strip("[]"), int(port)


def _require_listening(address: str, where: tuple[str, int]) -> None:
    try:
        socket.create_connection(where, CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise RayClusterError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start its head "
            "(ray start --head), check the address and firewall, or index without --ray"
        ) from None


def _node_ip_for(address: str) -> str:
    """This machine's node address: loopback for ``local`` and for a head on loopback."""
    if address == LOCAL:
        return LOCAL_NODE_IP
    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    try:
        return host if ipaddress.ip_address(host).is_loopback else ""
    except ValueError:
        return ""


def _worker_nodes(ray, settings: Settings) -> list[dict]:  # noqa: ANN001
    """The live nodes' resources, one entry per actor: a GPU each, else the whole node."""
    use_gpus = settings.device == "auto" or settings.device.startswith("cuda")
    out = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res, ip = node.get("Resources", {}), node.get("NodeManagerAddress", "?")
        cpus, gpus = int(res.get("CPU", 0)), int(res.get("GPU", 0)) if use_gpus else 0
        if gpus:
            share = max(1, cpus // gpus) if cpus else 0
            out += [{"NodeID": node["NodeID"], "ip": ip, "cpus": share, "gpus": 1}] * gpus
        elif cpus:
            out.append({"NodeID": node["NodeID"], "ip": ip, "cpus": cpus, "gpus": 0})
    return out


def _check_worker(here: dict[str, str], fact: dict) -> None:
    differ = version_mismatches(here, fact["versions"])
    if differ:
        raise RayVersionError(
            f"Ray worker {fact['host']} runs other versions ({'; '.join(differ)}); install the "
            "same versions there (pip install 'searchapp[ray]==VERSION' in the same Python)"
        )
    if fact["missing_roots"]:
        raise RayClusterError(
            f"Ray worker {fact['host']} cannot see {', '.join(fact['missing_roots'])}; mount "
            "the library there or drop --ray-shared-root (the driver then sends the bytes)"
        )


def _ship_weights(ray, spec: ModelSpec):  # noqa: ANN001, ANN202 - an ObjectRef or None
    """The weights in the object store, resolved here once (None: no file): a checkpoint's
    bytes, or an hf-hub:/local-dir: model's folder as {file name: bytes}."""
    if spec.weights_kind == "tag":
        return ray.put(Path(fetch_checkpoint(spec.model, spec.weights)).read_bytes())
    if spec.weights_kind == "file":
        return ray.put(Path(spec.weights).read_bytes())
    if spec.weights_kind == "schema":
        return ray.put(model_folder_files(spec.weights))
    return None  # random weights (seeded) and the pixel test encoder need no file


def shared_roots(settings: Settings) -> list[tuple[str, str]]:
    """``--ray-shared-root LOCAL=REMOTE`` pairs, longest LOCAL first."""
    pairs = [tuple(p.split("=", 1)) for p in settings.ray_shared_roots]
    return sorted(((os.path.normpath(a), os.path.normpath(b)) for a, b in pairs), reverse=True)


def remote_path(path: str, shared: list[tuple[str, str]]) -> str | None:
    """Where a worker reads ``path`` itself, or None: the driver sends the bytes."""
    for local, remote in shared:
        if is_under(path, local):
            return os.path.join(remote, os.path.relpath(path, local))
    return None


def _cause(err: Exception) -> Exception:
    """Our own error raised on a worker (a model that cannot load), as it was raised."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, SearchAppError):
        return cause
    return RayError(f"a Ray worker failed: {' '.join(str(cause or err).split())[:300]}")


def _lost(err: Exception) -> str:
    text = " ".join(str(err).split())[:200]
    return f"the Ray cluster failed while starting the workers ({text}); see: ray status"


__all__ = ["RayStage", "connect", "import_ray", "open_ray_stage", "remote_path", "shared_roots"]
