"""The ``searchapp`` command: index folders, search them, show status, manage roots."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from searchapp.cli.parser import build_parser
from searchapp.cli.search import cmd_search
from searchapp.config import Settings, command_for, load_settings, ui_command
from searchapp.errors import SearchAppError
from searchapp.text import printable

QUIET_LOGGERS = ("alembic", "faiss", "uvicorn", "uvicorn.error", "uvicorn.access")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # print undecodable file names as their bytes
        sys.stdout.reconfigure(errors="surrogateescape")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    for name in QUIET_LOGGERS:  # -v is about searchapp, not its libraries' start-up chatter
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        settings = load_settings(
            data_dir=args.data_dir,
            model=args.model,
            weights=args.weights,
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
        )
        with _sigterm_as_interrupt(args.command not in ("watch", "ui")):  # those: their own
            return COMMANDS[args.command](settings, args)
    except SearchAppError as err:
        print(f"searchapp: {printable(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("searchapp: interrupted; everything committed so far is kept.", file=sys.stderr)
        return 130


@contextmanager
def _sigterm_as_interrupt(active: bool) -> Iterator[None]:
    """SIGTERM (``kill``, a shutdown) stops the command as Ctrl-C does: the run is recorded
    as interrupted, what it committed stays, one line, exit 130."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _say_waiting(holder) -> None:  # noqa: ANN001 - searchapp.activity.WriterInfo | None
    from searchapp.activity import describe_writer

    who = describe_writer(holder, "another process")
    print(f"{who} is writing this library; waiting for it...", file=sys.stderr)


def _say_covered(asked: Sequence[str], shown: Sequence[str], roots: Sequence[str]) -> bool:
    """Say of each folder asked to be added that lies inside a photo folder that the
    photo folder covers it already; True if any did."""
    from searchapp.indexer.commands import covered_note

    notes = [covered_note(a, r, shown=s) for a, s, r in zip(asked, shown, roots, strict=False)]
    for note in notes:
        if note:
            print(printable(note))
    return any(notes)


def cmd_index(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.indexer.commands import Index, absolute_folder
    from searchapp.indexer.writer import submit

    settings = settings.with_overrides(
        ray_address=args.ray,
        ray_shared_roots=tuple(args.ray_shared_root) if args.ray_shared_root else None,
    )

    def on_handoff(holder) -> None:  # noqa: ANN001 - WriterInfo
        print(
            f"the running watcher (pid {holder.pid}) is indexing for us; waiting for it...",
            file=sys.stderr,
        )
        if settings.ray_address:
            print(
                "searchapp: the watcher indexes with its own settings, not --ray (it holds the "
                "library); start it with SEARCHAPP_RAY_ADDRESS set to index on Ray",
                file=sys.stderr,
            )

    command = Index(
        add_roots=tuple(absolute_folder(p) for p in args.paths), retry_failed=args.retry_failed
    )
    with ProgressBar() as on_progress:
        outcome = submit(
            settings,
            command,
            progress=on_progress,
            wait_s=3600,
            on_wait=_say_waiting,
            on_handoff=on_handoff,
        )
    stats = outcome.stats
    assert stats is not None  # an Index command always reports its run
    _say_covered(command.add_roots, args.paths, outcome.roots)
    by = f" [done by the watcher, pid {outcome.done_by}]" if outcome.done_by else ""
    print(f"{stats.summary()} ({stats.seconds:.1f} s){by}")
    _say_failed_files(settings)
    if stats.offline_roots:
        from searchapp.library import Library

        with Library(settings) as library:
            away = [printable(r.path) for r in library.roots() if not r.online]
        if away:
            print(f"offline, their photos kept: {', '.join(away)}", file=sys.stderr)
    return 0


def _say_failed_files(settings: Settings) -> None:
    # "failed" counts this run's failures; files that failed before and did not change
    # are "unchanged", so the library's own count is said too
    from searchapp.library import Library

    with Library(settings) as library:
        failed = library.failed_count()
    if failed:
        command = command_for(settings.data_dir)
        print(f"{failed} file(s) in the library could not be read; reasons: {command} status; "
              f"after fixing them: {command} index --retry-failed", file=sys.stderr)  # fmt: skip


BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
)


class ProgressBar:
    """tqdm on a terminal, silent when piped."""

    def __enter__(self):  # noqa: ANN204
        self.bar = None
        return self.update

    def update(self, p) -> None:  # noqa: ANN001
        if not sys.stderr.isatty() or p.total == 0:
            return
        if self.bar is None:
            from tqdm import tqdm

            # one rate, the model's: tqdm's own counts files that needed no reading too
            # (unchanged, copies), thousands a second at first
            self.bar = tqdm(total=p.total, unit="photo", desc="indexing", file=sys.stderr,
                            bar_format=BAR_FORMAT)  # fmt: skip
        if p.stats.workers:
            self.bar.set_description(f"indexing on {p.stats.workers} Ray worker(s)", False)
        self.bar.n = p.done
        self.bar.set_postfix_str(f"{p.images_per_s:.1f} photos/s embedded", refresh=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.cli.report import status_lines
    from searchapp.config import RANDOM_WARNING
    from searchapp.engine_client import EngineClient
    from searchapp.library import Library

    with Library(settings) as library:
        report = library.status()
        exists = library.exists
    engine = EngineClient(settings).status()
    if args.json:
        engine_json = None if engine is None else engine.__dict__
        print(json.dumps({**report.as_dict(), "engine": engine_json}, indent=2))
        return 0
    if report.random_weights:
        print(RANDOM_WARNING)
    searches = engine.describe() if engine else "each command loads its own model"
    if engine is None and report.writer is not None and report.writer.is_watcher:
        searches += " (a watcher runs, but its engine does not answer for this model now)"
    lines = status_lines(report, searches)
    print("\n".join(printable(line) for line in lines))  # names may hold ESC, CR
    if not exists:
        print(f"no library in {printable(str(settings.data_dir))} yet; start one with: "
              f"{command_for(settings.data_dir)} index PATH", file=sys.stderr)  # fmt: skip
    return 0


def cmd_roots(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.indexer.commands import AddRoots, RemoveRoot, absolute, absolute_folder
    from searchapp.indexer.writer import submit, watcher_running
    from searchapp.library import Library

    if args.action == "list":
        if args.paths:
            print("searchapp: roots list takes no PATH (to add one: roots add PATH)",
                  file=sys.stderr)  # fmt: skip
            return 2
        with Library(settings) as library:
            roots = library.roots(live=True)
        for r in roots:
            print(printable(r.path) + ("" if r.online else "  (offline)"))
        if not roots:
            print(f"no photo folders yet; add one with: {command_for(settings.data_dir)} index "
                  "PATH", file=sys.stderr)  # fmt: skip
        return 0
    if not args.paths:
        print(f"searchapp: roots {args.action} needs at least one PATH", file=sys.stderr)
        return 2
    for path in args.paths:
        if args.action == "add":
            command = AddRoots((absolute_folder(path),))
            outcome = submit(settings, command, wait_s=3600, on_wait=_say_waiting)
            root = outcome.roots[0]
            if _say_covered(command.paths, [path], outcome.roots):
                continue
            holder = watcher_running(settings)
            done = "added" if root in outcome.new_roots else "already a photo folder:"
            then = (f"the running watcher (pid {holder.pid}) indexes it" if holder
                    else f"run: {command_for(settings.data_dir)} index")  # fmt: skip
            print(f"{done} {printable(root)}; {then}")
            continue
        command = RemoveRoot(absolute(path))
        outcome = submit(settings, command, wait_s=3600, on_wait=_say_waiting)
        removed = outcome.removed_photos
        files = "1 file" if removed == 1 else f"{removed} files"  # failed ones too
        print(f"removed {printable(outcome.roots[0])} and its {files} from the library")
    return 0


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.indexer.commands import AddRoots, absolute_folder
    from searchapp.indexer.daemon import run_watch
    from searchapp.indexer.writer import submit
    from searchapp.library import Library

    settings = settings.with_overrides(
        reconcile_interval_s=args.reconcile_interval, idle_unload_s=args.idle_unload
    )
    if args.paths:
        roots = AddRoots(tuple(absolute_folder(p) for p in args.paths))
        submit(settings, roots, wait_s=3600, on_wait=_say_waiting)
    with Library(settings) as library:
        has_roots = bool(library.roots())
    if not has_roots:
        print(f"searchapp: no photo folders yet; run: {command_for(settings.data_dir)} watch PATH",
              file=sys.stderr)  # fmt: skip
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("searchapp.indexer.daemon").info("watch: stopping (signal %d)", signum)
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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s"))
    for name in ("searchapp.indexer", "searchapp.engine", "searchapp.model"):
        logging.getLogger(name).setLevel(logging.INFO)  # runs, the socket, model unloads
    logging.getLogger("searchapp.indexer.watches").setLevel(  # one DEBUG line per event
        logging.DEBUG if verbose else logging.INFO
    )


def cmd_ui(settings: Settings, args: argparse.Namespace) -> int:
    from searchapp.ui import launch
    from searchapp.ui.guard import choose_secret

    if not launch.SERVER.exists():
        print(
            f"searchapp: the web page is missing ({launch.SERVER}); reinstall searchapp",
            file=sys.stderr,
        )
        return 1
    secret, generated = choose_secret(args.host, settings.ui_secret)
    launch.check_port_free(args.host, args.port)
    served = launch.http_url(args.host, args.port).rstrip("/")
    print(f"searchapp: serving {served} (Ctrl+C to stop)", file=sys.stderr)
    if generated:
        print(
            f"searchapp: access secret for this start: {secret}\n"
            "  the page asks for it once per browser; set SEARCHAPP_UI_SECRET to choose your "
            "own.\n  The connection is plain HTTP: share the page only on a network you trust.",
            file=sys.stderr,
        )
    elif secret:
        print("searchapp: the page asks for the secret in SEARCHAPP_UI_SECRET", file=sys.stderr)
    cmd = launch.page_command(args.host, args.port, settings.max_upload_mb)
    return launch.run_page(cmd, launch.page_env(settings, secret), on_started=_opener(args),
                           restart=ui_command(settings.data_dir, args.port))  # fmt: skip


def _opener(args: argparse.Namespace):  # noqa: ANN202 - Callable[[], None] | None
    """What ``ui --open`` runs once the server's process exists; None without ``--open``."""
    from searchapp.ui import launch

    if not args.open:
        return None
    browser = launch.find_browser()
    if browser is None:
        print("searchapp: no graphical browser to open; open the address above", file=sys.stderr)
        return None
    url = launch.page_url(args.host, args.port)
    return lambda: launch.open_when_ready(url, browser)


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "status": cmd_status,
    "roots": cmd_roots,
    "watch": cmd_watch,
    "ui": cmd_ui,
}
