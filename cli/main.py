"""The ``searchapp`` command: index folders, search them, show status, manage roots."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from searchapp import __version__
from searchapp.config import Settings, load_settings
from searchapp.errors import SearchAppError
from searchapp.text import printable

EXAMPLES = """\
examples:
  searchapp index ~/Pictures          add a folder and index it
  searchapp search "red kayak"        find photos by text
  searchapp search --image query.jpg  find photos like an image file
  searchapp search --like 42          more like indexed photo 42
  searchapp status                    what is indexed, what failed and why

Weights: the default MobileCLIP-S2 'datacompdr' weights download once from the Hugging Face
hub to its cache and are used offline after. --weights PATH loads a local checkpoint;
--weights random builds the model with random weights (results carry no meaning).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="searchapp",
        description="Local semantic photo search with MobileCLIP, FAISS and SQLite.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"searchapp {__version__}")
    p.add_argument("--data-dir", help="where the library lives (env SEARCHAPP_DATA_DIR)")
    p.add_argument("--model", help="MobileCLIP architecture (default MobileCLIP-S2)")
    p.add_argument(
        "--weights",
        help="pretrained tag, checkpoint file, hf-hub:REPO, "
        "local-dir:FOLDER, or 'random' (env SEARCHAPP_WEIGHTS)",
    )
    p.add_argument("--device", help="auto, cpu, cuda or mps")
    p.add_argument("--precision", help="auto, fp32 (reference), bf16 or fp16")
    p.add_argument(
        "--batch-size", type=int, help="images per model batch, per model lane (default 16)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ix = sub.add_parser("index", help="add folders (optional) and index every root")
    ix.add_argument("paths", nargs="*", help="photo folders to add as roots first")
    ix.add_argument("--retry-failed", action="store_true", help="try failed files again")

    se = sub.add_parser("search", help="search by text, image file or indexed photo")
    se.add_argument("text", nargs="?", help="text query; 'a + 2:b - c' weights parts")
    se.add_argument("--image", help="find photos like this image file")
    se.add_argument("--like", help="more like this indexed photo (id or path)")
    se.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    se.add_argument("--folder", help="only photos in or below this folder")
    se.add_argument("--json", action="store_true", help="print JSON")

    st = sub.add_parser("status", help="roots, counts, failures, model in use")
    st.add_argument("--json", action="store_true", help="print JSON")

    ro = sub.add_parser("roots", help="list, add or remove photo folders")
    ro.add_argument("action", choices=["list", "add", "remove"])
    ro.add_argument("paths", nargs="*")

    wa = sub.add_parser("watch", help="index every root, then keep indexing changes until stopped")
    wa.add_argument("paths", nargs="*", help="photo folders to add as roots first")
    wa.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="also log every filesystem event",
    )  # fmt: skip
    wa.add_argument(
        "--reconcile-interval", type=float, metavar="SECONDS",
        help="full rescan interval, catches what the OS did not report "
        "(default 3600; env SEARCHAPP_RECONCILE_INTERVAL)",
    )  # fmt: skip

    ui = sub.add_parser("ui", help="open the search page in a browser (Streamlit)")
    ui.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # print undecodable file names as their bytes
        sys.stdout.reconfigure(errors="surrogateescape")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        settings = load_settings(
            data_dir=args.data_dir,
            model=args.model,
            weights=args.weights,
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
        )
        return COMMANDS[args.command](settings, args)
    except SearchAppError as err:
        print(f"searchapp: {printable(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("searchapp: interrupted; everything committed so far is kept.", file=sys.stderr)
        return 130


def _say_waiting(holder) -> None:  # noqa: ANN001 - indexer.lock.WriterInfo | None
    from searchapp.activity import describe_writer

    who = describe_writer(holder, "another process")
    print(f"{who} is writing this library; waiting for it...", file=sys.stderr)


def cmd_index(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.indexer.service import index_library
    from searchapp.store import Store

    store = Store(settings.db_path)
    for path in args.paths:
        store.add_root(path)
    has_roots = bool(store.list_roots())
    store.close()
    if not has_roots:
        print("searchapp: no photo folders yet; run: searchapp index PATH", file=sys.stderr)
        return 1

    handed: list = []

    def on_handoff(holder) -> None:  # noqa: ANN001
        handed.append(holder)
        print(
            f"the running watcher (pid {holder.pid}) is indexing for us; waiting for it...",
            file=sys.stderr,
        )

    with _progress_bar() as on_progress:
        stats = index_library(
            settings,
            retry_failed=args.retry_failed,
            progress=on_progress,
            wait_s=3600,
            on_wait=_say_waiting,
            on_handoff=on_handoff,
        )
    by = f" [done by the watcher, pid {handed[0].pid}]" if handed else ""
    print(f"{stats.summary()} ({stats.seconds:.1f} s){by}")
    if stats.offline_roots:
        print(
            f"{stats.offline_roots} folder(s) are offline; their photos are kept.", file=sys.stderr
        )
    return 0


class _progress_bar:
    """tqdm on a terminal, silent when piped."""

    def __enter__(self):  # noqa: ANN204
        self.bar = None
        return self.update

    def update(self, p) -> None:  # noqa: ANN001
        if not sys.stderr.isatty() or p.total == 0:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=p.total, unit="photo", desc="indexing", file=sys.stderr)
        self.bar.n = p.done
        self.bar.set_postfix_str(f"{p.images_per_s:.1f} img/s", refresh=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.errors import QueryError
    from searchapp.search import SearchService
    from searchapp.store import PhotoFilter

    chosen = [x for x in (args.text, args.image, args.like) if x]
    if len(chosen) != 1:
        raise QueryError("give exactly one of: TEXT, --image PATH, --like PHOTO")
    if args.k < 1:
        raise QueryError("-k must be at least 1.")
    service = SearchService(settings)
    flt = PhotoFilter(folder=str(Path(args.folder).resolve())) if args.folder else None
    if args.text:
        results = service.search_text(args.text, args.k, flt)
    elif args.image:
        results = service.search_image(args.image, args.k, flt)
    else:
        results = service.search_like(args.like, args.k, flt)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.rank:3d}  {r.score:.3f}  [{r.photo_id}]  {printable(r.path)}")
        if not results:
            print("no results")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.embedder import RANDOM_WARNING, model_id_for
    from searchapp.plan import count_pending
    from searchapp.store import Store
    from searchapp.vectors import IndexFileError, VectorIndex

    store = Store(settings.db_path)
    model_id = model_id_for(settings)
    counts = store.counts()
    pending = count_pending(store, model_id)  # stat only: new, changed and gone files
    try:
        loaded = VectorIndex.load(settings.index_path, model_id)
        size, kind = loaded.ntotal, loaded.describe()
    except IndexFileError:
        size, kind = 0, "none yet"
    runs = store.recent_runs(1)
    info = {
        "roots": [{"path": r.path, "online": r.online} for r in store.list_roots()],
        "photos": counts["photos"],
        "failed": counts["failed"],
        "pending": {"to_index": pending.to_index, "to_remove": pending.to_remove},
        "failures": [{"path": f.path, "reason": f.failure_reason} for f in store.failures()],
        "model": settings.model,
        "weights": settings.weights or "default",
        "model_id": model_id,
        "random_weights": settings.random_weights,
        "index": {
            "type": kind,
            "vectors": size,
            "path": str(settings.index_path),
        },
        "data_dir": str(settings.data_dir),
        "last_run": runs[0].__dict__ if runs else None,
        **_writer_status(settings),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    if settings.random_weights:
        print(RANDOM_WARNING)
    print(f"library: {printable(str(settings.data_dir))}")
    print(f"model:   {settings.model} weights {info['weights']}")
    print(f"index:   {size} vectors ({info['index']['type']})")
    print(
        f"photos:  {counts['photos']} indexed, {counts['failed']} failed, "
        f"{pending.to_index} new or changed to index, {pending.to_remove} gone to remove"
    )
    print(f"watcher: {_describe_daemon(info['daemon'])}")
    if info["writer"] and info["writer"]["kind"] != "watch":
        w = info["writer"]
        print(f"writing: 'searchapp {w['kind']}' (pid {w['pid']}) since {_clock(w['since'])}")
    for r in info["roots"]:
        print(f"root:    {printable(r['path'])}{'' if r['online'] else '  (offline)'}")
    for f in info["failures"]:
        print(f"failed:  {printable(f['path'])}: {printable(f['reason'] or '')}")
    return 0


def _writer_status(settings: Settings) -> dict:
    """Who writes the library now, and whether that is a watcher (for ``status``)."""
    from searchapp.activity import read_writer

    holder = read_writer(settings)
    writer = holder.__dict__ if holder else None
    daemon = {"running": False}
    if holder is not None and holder.kind == "watch":
        daemon = {
            "running": True,
            "pid": holder.pid,
            "since": holder.since,
            "last_activity": holder.last_activity,
            "activity": holder.activity,
        }
    return {"daemon": daemon, "writer": writer}


def _clock(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _describe_daemon(d: dict) -> str:
    if not d["running"]:
        return "not running (start it with: searchapp watch)"
    last = f"{_clock(d['last_activity'])}" + (f" ({d['activity']})" if d["activity"] else "")
    return f"running, pid {d['pid']}, since {_clock(d['since'])}; last activity {last}"


def cmd_roots(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.activity import read_writer
    from searchapp.store import Store

    store = Store(settings.db_path)
    try:
        if args.action == "list":
            for r in store.list_roots():
                print(printable(r.path) + ("" if r.online else "  (offline)"))
            return 0
        if not args.paths:
            print(f"searchapp: roots {args.action} needs at least one PATH", file=sys.stderr)
            return 2
        for path in args.paths:
            if args.action == "add":
                # registering a folder is safe beside a running watcher, which picks it up
                added = printable(store.add_root(path).path)
                holder = read_writer(settings)
                if holder is not None and holder.kind == "watch":
                    print(f"added {added}; the running watcher (pid {holder.pid}) indexes it")
                else:
                    print(f"added {added}; run: searchapp index")
                continue
            removed, count = _remove_root(settings, store, path)
            print(f"removed {printable(removed)} and its {count} photos from the index")
    finally:
        store.close()
    return 0


def _remove_root(settings: Settings, store, path: str) -> tuple[str, int]:  # noqa: ANN001
    """Forget a root: by the running watcher if there is one, else under the writer lock."""
    from searchapp.embedder import model_id_for
    from searchapp.indexer.lock import WriterLock
    from searchapp.indexer.service import ask_watcher
    from searchapp.vectors import IndexFileError, VectorIndex

    target = str(Path(path).expanduser().resolve())
    answer = ask_watcher(settings, "remove_root", 600, root=target)
    if answer is not None:
        return answer["root"], answer["removed"]

    with WriterLock(settings, "index").acquire(3600, _say_waiting):
        root, ids = store.remove_root(target)
        try:
            index = VectorIndex.load(settings.index_path, model_id_for(settings))
            index.remove(ids)
            index.save(settings.index_path, store.generation())
        except IndexFileError:
            pass  # rebuilt from the store on next open
    return root.path, len(ids)


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    import signal
    import threading

    from searchapp.indexer.watcher import run_watch
    from searchapp.store import Store

    if args.reconcile_interval is not None:
        settings = settings.with_overrides(reconcile_interval_s=args.reconcile_interval)
    store = Store(settings.db_path)
    try:
        for path in args.paths:
            store.add_root(path)
        has_roots = bool(store.list_roots())
    finally:
        store.close()
    if not has_roots:
        print("searchapp: no photo folders yet; run: searchapp watch PATH", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("searchapp.indexer.watcher").info("watch: stopping (signal %d)", signum)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C or SIGTERM ends it at once

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    _log_like_a_daemon(verbose=getattr(args, "verbose", False))
    run_watch(settings, stop)
    return 0


def _log_like_a_daemon(verbose: bool) -> None:
    """Timestamped lines; one INFO line per batch, every event with --verbose."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("searchapp.indexer").setLevel(logging.INFO)
    logging.getLogger("searchapp.indexer.watcher").setLevel(
        logging.DEBUG if verbose else logging.INFO
    )


def cmd_ui(settings: Settings, args: argparse.Namespace) -> int:
    import os
    import subprocess

    import searchapp.ui

    app = Path(searchapp.ui.__file__).resolve().parent / "app.py"
    if not app.exists():
        print(f"searchapp: the web page is missing ({app}); reinstall searchapp", file=sys.stderr)
        return 1
    env = dict(os.environ)
    env.update(
        {
            "SEARCHAPP_DATA_DIR": str(settings.data_dir),
            "SEARCHAPP_MODEL": settings.model,
            "SEARCHAPP_WEIGHTS": settings.weights,
            "SEARCHAPP_DEVICE": settings.device,
            "SEARCHAPP_PRECISION": settings.precision,
            "SEARCHAPP_BATCH_SIZE": str(settings.batch_size),
        }
    )
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", args.host,
        "--server.port", str(args.port),
        "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(settings.max_upload_mb),
        "--server.enableXsrfProtection", "true",
        "--server.headless", "true",  # no e-mail prompt; the URL is printed below
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "minimal",  # no "Deploy" button or developer menu
    ]  # fmt: skip
    print(f"searchapp: serving http://{args.host}:{args.port} (Ctrl+C to stop)", file=sys.stderr)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "status": cmd_status,
    "roots": cmd_roots,
    "watch": cmd_watch,
    "ui": cmd_ui,
}
