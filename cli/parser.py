"""The command line's arguments: the global options, one subparser per command, and the
one-line refusals of what argparse would take badly (a port out of range, a global
option after the command)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from searchapp import __version__
from searchapp.config import MAX_BATCH, PRECISIONS, UI_PORT, device_known

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


GLOBAL_OPTIONS = ("--data-dir", "--model", "--weights", "--device", "--precision", "--batch-size")


class _Parser(argparse.ArgumentParser):
    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's
        """Unknown arguments are refused with the usage of the command they were given to
        (argparse shows the top level's)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            commands = getattr(self, "commands", {})  # build_parser sets them on the top
            command = getattr(parsed, "command", None) or ""
            words = list(sys.argv[1:] if args is None else args)
            before = words[: words.index(command)] if command in words else words
            # one given before the command is the top level's (`searchapp --bogus status`)
            top = all(word in before for word in extra)
            chosen = self if top else commands.get(command, self)
            chosen.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        """A global option after the command is refused by argparse as unknown: say where
        it goes (`searchapp ui --data-dir X` read as a typo otherwise)."""
        words = message.split()
        misplaced = [o for o in GLOBAL_OPTIONS if "unrecognized" in message and o in words]
        if misplaced:
            message += (f"; {misplaced[0]} is a global option: put it before the command, "
                        f"as in searchapp {misplaced[0]} VALUE COMMAND")  # fmt: skip
        elif self.prog.endswith(" roots") and "invalid choice" in message:
            message += "; to add a folder: searchapp roots add PATH"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    p.add_argument("--device", type=_device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--precision", choices=PRECISIONS, metavar="PRECISION",
        help="auto, fp32 (reference), bf16 or fp16",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=_batch_size,
        help=f"images per model batch, per model lane (1 to {MAX_BATCH}, default 16)",
    )  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ix = sub.add_parser("index", help="add folders (optional) and index every root")
    ix.add_argument("paths", nargs="*", help="photo folders to add as roots first")
    ix.add_argument("--retry-failed", action="store_true", help="try failed files again")
    ix.add_argument(
        "--ray", metavar="ADDRESS",
        help="decode and embed on a Ray cluster: local (a new instance), auto (the cluster "
        "on this machine), HOST:PORT or ray://HOST:PORT (env SEARCHAPP_RAY_ADDRESS; needs "
        "searchapp[ray])",
    )  # fmt: skip
    ix.add_argument(
        "--ray-shared-root", action="append", metavar="LOCAL=REMOTE",
        help="the Ray workers read files under LOCAL at REMOTE themselves instead of being "
        "sent their bytes (repeatable)",
    )  # fmt: skip

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
    ro.add_argument(
        "action", nargs="?", default="list", choices=["list", "add", "remove"],
        help="list the photo folders (the default), add PATHs (indexed by the next index "
        "run or the watcher), or remove PATHs with their photos from the library (the files "
        "are never touched)",
    )  # fmt: skip
    ro.add_argument("paths", nargs="*", metavar="PATH", help="photo folders to add or remove")

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
    wa.add_argument(
        "--idle-unload", type=float, metavar="SECONDS",
        help="free the model after this long without photos or queries; it loads again "
        "when needed (default 600, 0 keeps it; env SEARCHAPP_IDLE_UNLOAD)",
    )  # fmt: skip

    ui = sub.add_parser("ui", help="serve the search page (Streamlit); --open opens a browser")
    ui.add_argument("--port", type=_port, default=UI_PORT,
                    help=f"port to listen on (default {UI_PORT})")  # fmt: skip
    ui.add_argument(
        "--host", default="127.0.0.1",
        help="address to bind (default 127.0.0.1); beyond loopback the page asks for an "
        "access secret, printed at start (env SEARCHAPP_UI_SECRET sets it)",
    )  # fmt: skip
    ui.add_argument(
        "--open", action="store_true",
        help="open the page in your browser once it answers (honours $BROWSER)",
    )  # fmt: skip
    p.commands = sub.choices  # each command's own usage for its errors
    return p


def _device(text: str) -> str:
    if not device_known(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, "
                                         "cuda:N or mps")  # fmt: skip
    return text


def _batch_size(text: str) -> int:
    size = int(text) if text.isdigit() else 0
    if not 1 <= size <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"{text!r} is not a batch size; give 1 to {MAX_BATCH}")
    return size


def _port(text: str) -> int:
    """A TCP port for ``ui --port``: out of range is a usage error, not a traceback."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; give a number from 1 to 65535")
    return port
