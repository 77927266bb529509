"""Indexing from the page: add a folder and index it, or retry failed files, with a bar."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.scriptrunner import RerunException, StopException

from searchapp.activity import WriterInfo
from searchapp.config import Settings
from searchapp.errors import SearchAppError
from searchapp.indexer.commands import (
    Index,
    Outcome,
    RemoveRoot,
    StopRequested,
    absolute,
    covered_note,
)
from searchapp.indexer.pipeline import Progress
from searchapp.indexer.writer import submit
from searchapp.scanner import holds_photos
from searchapp.ui.markdown import md_escape
from searchapp.ui.resources import get_library

FLASH = "flash"
# Streamlit stops or reruns a script by raising these from its next st.* call (a reload,
# a click elsewhere)
SCRIPT_CONTROL = (StopException, RerunException)
# a summary outlives the reruns that follow at once (the Status tab's folder check reran
# the page half a second after a run and took it away), then goes on the next one
FLASH_KEEP_S = 20.0
WATCHER_WAIT_S = 600.0
STOP = "stop-run"  # the Stop button's key


def _stop_button(stop: threading.Event) -> DeltaGenerator:
    """A "Stop indexing" button that sets ``stop``; its slot, to clear when the run ends.

    At the click Streamlit stops this script and runs the page again in a new thread
    (``runner.fastReruns``, on by default; with it off the callback would only run once
    the run is over), where the callback sets the event; the run's thread sees it after
    its next commit."""
    slot = st.empty()
    slot.button(
        "Stop indexing", key=STOP, icon=":material/stop:", on_click=_request_stop,
        args=(stop,), help="Ends the run after the batch it is writing; what it indexed stays.",
    )  # fmt: skip
    return slot


def _request_stop(stop: threading.Event) -> None:
    stop.set()  # the run may end on its own first: say what was asked, Status says the rest
    set_flash("Stopping indexing after the batch it is writing. What it indexed stays "
              "searchable; Status shows how far it got, and indexing the folder again goes "
              "on from there.", ok=False)  # fmt: skip


def run_indexing(
    settings: Settings,
    *,
    add_roots: list[str] | None = None,
    paths: list[str] | None = None,
    retry_failed: bool = False,
) -> bool:
    """Index under the writer lock with a live ``st.progress``; errors show as one line.

    Returns True when the run finished; its summary is kept for the next reruns. A reload
    or a click while it runs does not stop it (a reload had stopped runs half-way,
    unsaid): this script's bar stops and the run goes on to its end in this thread, while
    the page has already moved on (Status shows the run).
    """
    st.session_state.pop(FLASH, None)  # the last run's summary is not this one's
    bar = st.progress(0.0, text="Looking for photos...")
    asked: list[BaseException] = []
    stop_clicked = threading.Event()

    def show(fraction: float, text: str) -> None:
        if not asked:
            try:
                bar.progress(fraction, text=text)
            except SCRIPT_CONTROL as control:
                asked.append(control)
        if stop_clicked.is_set():
            raise StopRequested

    def on_progress(p: Progress) -> None:
        fraction = p.done / p.total if p.total else 1.0
        show(min(fraction, 1.0),
             f"Indexed {p.done} of {p.total} files ({p.images_per_s:.1f} images/s)")  # fmt: skip

    def on_handoff(holder: WriterInfo) -> None:
        show(0.0, f"searchapp watch (pid {holder.pid}) is indexing this; waiting...")

    wait_s = _wait_for_watcher(settings)
    # the watcher's runs are its own: the page only waits for them
    stop = st.empty() if wait_s else _stop_button(stop_clicked)
    command = Index(
        paths=tuple(paths) if paths is not None else None,
        retry_failed=retry_failed,
        add_roots=tuple(absolute(p) for p in add_roots or ()),
    )
    try:
        outcome = submit(
            settings,
            command,
            kind="ui",
            progress=on_progress,
            wait_s=wait_s,
            on_handoff=on_handoff,
        )
    except SearchAppError as err:
        bar.empty()
        stop.empty()
        st.error(md_escape(str(err)))
        return False
    except StopRequested:  # the page has moved on already, its flash set by the click
        if asked:
            raise asked[0] from None
        return False
    stop.empty()
    if asked:  # a stopped script cannot write its session either: Status has the run
        raise asked[0]
    failed = get_library(settings).failed_count()
    set_flash(_summary(command, outcome, failed), ok=not failed)
    bar.progress(1.0, text="Done")
    return True


def _summary(command: Index, outcome: Outcome, failed: int) -> str:
    """What a finished run did, for the flash: folders already covered, its counts, and
    the library's failed files ("failed" is this run's; files that failed before and did
    not change count as unchanged, so the library's own number is said too, as the CLI
    does)."""
    notes = (
        covered_note(asked, root)
        for asked, root in zip(command.add_roots, outcome.roots, strict=False)
    )
    covered = "".join(f"{note}. " for note in notes if note)
    stats = outcome.stats
    assert stats is not None  # an Index command always reports its run
    text = md_escape(covered) + f"Indexing finished: {stats.summary()} ({stats.seconds:.1f} s)."
    if failed:
        text += f" {failed:,} file(s) in the library could not be read: see Status."
    return text


def _wait_for_watcher(settings: Settings) -> float:
    """How long a command may wait: a running watcher does the work for the page (and is
    waited for); any other writer means "busy", said at once rather than freezing it."""
    holder = get_library(settings).writer()
    return WATCHER_WAIT_S if holder is not None and holder.is_watcher else 0.0


def remove_folder(settings: Settings, path: str) -> None:
    """Forget a photo folder and its photos (their files stay on disk), here or through
    the running watcher; what happened is the next run's flash."""
    wait_s = _wait_for_watcher(settings)
    try:
        with st.spinner(f"Removing {md_escape(path)} from the library..."):
            outcome = submit(settings, RemoveRoot(path), kind="ui", wait_s=wait_s)
    except SearchAppError as err:
        set_flash(md_escape(str(err)), ok=False)
        return
    n = outcome.removed_photos
    set_flash(md_escape(f"Removed {path} and its {n:,} photo{'s' if n != 1 else ''} from the "
                        "library; the files are untouched. Add the folder again to bring "
                        "them back."))  # fmt: skip


def set_flash(text: str, *, ok: bool = True) -> None:
    """A line for the next reruns: what a button's run did; a warning where it left files
    that could not be read (a green "finished" over three failed files read as fixed)."""
    st.session_state[FLASH] = (text, time.monotonic(), ok)


def show_flash() -> None:
    """The summary of a run that finished in the last ``FLASH_KEEP_S`` seconds."""
    kept = st.session_state.get(FLASH)
    if kept is None:
        return
    text, at, ok = kept
    if time.monotonic() - at > FLASH_KEEP_S:
        del st.session_state[FLASH]
        return
    if ok:
        st.success(text)
    else:
        st.warning(text)


def add_folder_form(settings: Settings, *, key: str = "add") -> None:
    """A folder box and an "Add and index" button; a folder without photos is refused
    unless "add it anyway" is ticked (a camera folder that fills later)."""
    with st.form(f"{key}-form", border=False, enter_to_submit=True):  # Enter adds it too
        folder = st.text_input(
            "Photo folder to add",
            key=f"{key}-path",
            placeholder=f"e.g. {Path.home() / 'Pictures'}",
            help="A folder on this computer; every photo below it is indexed. A pasted "
            "path may keep its quotes, or be a file:// link.",
        )
        added = st.form_submit_button("Add and index", key=f"{key}-index", type="primary")
    if added:
        _add_folder(settings, typed_folder(folder), key)
    if st.session_state.get(f"{key}-empty"):
        st.checkbox("Add it anyway (photos added later are indexed)", key=f"{key}-anyway")


def typed_folder(text: str) -> str:
    """The folder a person pasted: a path copied with its quotes ("Copy as path", a
    terminal), a ``file://`` link from a file manager, or a shell-escaped name."""
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if text.startswith("file://"):
        url = urlsplit(text)
        if url.netloc not in ("", "localhost"):
            return text  # another computer's file: said to be no folder here
        text = unquote(url.path, errors="surrogateescape")  # a name's bytes as the OS has them
    if "\\" in text and not Path(text).expanduser().exists():
        text = re.sub(r"\\(.)", r"\1", text)  # Urlaub\ Italien, as a shell completes it
    return text


def _add_folder(settings: Settings, path: str, key: str) -> None:
    """Check the typed folder, then add and index it (a folder without photos only once
    "add it anyway" is ticked)."""
    if not path:
        st.error("Type the path of a photo folder first.")
        return
    if not Path(path).expanduser().is_dir():
        st.error(f"{md_escape(path)} is not a folder on this computer; check the path.")
        return
    empty = False
    if not st.session_state.get(f"{key}-anyway", False):
        with st.spinner(f"Looking for photos in {md_escape(path)}..."):  # a big tree takes a while
            empty = holds_photos(str(Path(path).expanduser())) is False
    if empty:
        st.warning(
            f"No photos found in {md_escape(path)}, so it was not added. Pick the folder "
            "that holds your photos, or tick 'Add it anyway' to keep it for photos to come."
        )
        st.session_state[f"{key}-empty"] = path  # the box below, drawn in this same run
        return
    if run_indexing(settings, add_roots=[path]):
        # the box was for that folder: the next empty one is warned about again
        st.session_state.pop(f"{key}-empty", None)
        st.session_state.pop(f"{key}-anyway", None)
        st.rerun()
