"""The status tab: roots, counts, model, index, last run, failed files, live progress."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import streamlit as st

from searchapp.config import Settings, command_for
from searchapp.library import Library, PendingFiles, RunRecord, StatusReport, WriterInfo
from searchapp.paths import encode_path
from searchapp.ui.indexing import add_folder_form, remove_folder, run_indexing, set_flash
from searchapp.ui.markdown import md_escape, say_errors, web_text

LIVE_EVERY_S = 1.0
PENDING_TTL_S = 15  # new files on disk show up in the count within this long
FAILURES_SHOWN = 200
REMOVING = "removing-root"  # the folder whose "Remove" waits for its confirmation
_CHECKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="searchapp-status")


@say_errors
def show_status(library: Library, settings: Settings) -> None:
    """Everything about the library; refreshes itself while an indexing run is going."""
    status = library.status(failures=FAILURES_SHOWN, pending=False)
    if _is_running(status.last_run, status.writer):
        _live_progress(library)
    _folder_checks(library, status)
    _show_library(status, settings)
    st.text(library.model_source())  # the watcher's model, or the page's own
    _show_failures(status, settings)
    with st.expander("Add a photo folder"):
        add_folder_form(settings, key="status-add")


def _is_running(run: RunRecord | None, writer: WriterInfo | None) -> bool:
    # A run row says "running" until it finishes; only a live writer makes it true.
    return run is not None and run.state == "running" and writer is not None


@st.fragment(run_every=LIVE_EVERY_S)
@say_errors
def _live_progress(library: Library) -> None:
    """Polls the runs table; when the run ends, the whole page reruns with fresh counts."""
    run, holder = library.last_run(), library.writer()
    if not _is_running(run, holder):
        st.rerun(scope="app")
        return
    who = f"searchapp {holder.kind} (pid {holder.pid})"
    workers = (run.stats or {}).get("workers")
    if workers:
        who += f" on {workers} Ray worker(s)"
    elapsed = max((run.heartbeat_at or time.time()) - run.started_at, 1e-6)
    rate = run.done / elapsed
    fraction = run.done / run.total if run.total else 0.0
    st.progress(
        min(fraction, 1.0),
        text=f"Indexing in progress ({who}): {run.done} of {run.total} files, {rate:.1f} files/s",
    )


def forget_library() -> None:
    """See ``filters_view.forget_library``."""
    _start_checks.clear()


@st.cache_resource(ttl=PENDING_TTL_S, show_spinner=False)
def _start_checks(_library: Library, data_dir: str, generation: int) -> Future:
    """The slow checks, started once per library state in the background: the stat-only
    diff of the folders (pending files) and the thumbnails missing from the cache. The tab
    shows at once; their counts follow when ready. The distinct-image count (a count over
    every row) comes with them."""
    return _CHECKS.submit(
        lambda: (_library.pending(), _library.missing_thumbnails(), _library.distinct_images())
    )


def _folder_checks(library: Library, status: StatusReport) -> None:
    # as the store spells it: Streamlit hashes it as UTF-8, which a name may not be
    job = _start_checks(library, encode_path(status.data_dir), library.generation())
    if not job.done():
        _show_counts(status, None)
        _wait_for_checks(job)
        return
    pending, missing, distinct = job.result()
    _show_counts(status, pending)
    if distinct != status.photos:
        _explain_copies(status.photos, distinct)
    if missing:
        _offer_thumbnails(library, missing)


@st.fragment(run_every=0.5)
def _wait_for_checks(job: Future) -> None:
    if job.done():
        st.rerun(scope="app")


def _offer_thumbnails(library: Library, missing: list[str]) -> None:
    n = len(missing)
    st.warning(
        f"{n:,} photo{'s have' if n != 1 else ' has'} no thumbnail in the cache, so "
        f"{'their tiles show' if n != 1 else 'its tile shows'} a placeholder.",
        icon=":material/hide_image:",
    )
    if st.button("Rebuild missing thumbnails", key="rebuild-thumbs",
                 help="Reads those originals once and writes their thumbnails."):  # fmt: skip
        with st.spinner(f"Rebuilding {len(missing):,} thumbnails..."):
            done, failed = library.rebuild_thumbnails(missing)
        _start_checks.clear()
        text = f"Rebuilt {done:,} thumbnails."
        originals = "1 original" if failed == 1 else f"{failed:,} originals"
        set_flash(text + (f" {originals} could not be read." if failed else ""), ok=not failed)
        st.rerun()


def _explain_copies(photos: int, distinct: int) -> None:
    # the Photos tab shows each content once; say why its count is smaller
    st.caption(
        f"{photos:,} photos, {distinct:,} distinct images: byte-identical copies are "
        "indexed each (one vector per file) and shown as one tile with a copies mark."
    )


def _show_counts(status: StatusReport, pending: PendingFiles | None) -> None:
    cols = st.container(key="counts").columns(4)  # keyed: two by two on a phone (app.py)
    cols[0].metric("Indexed", status.photos)
    cols[1].metric("Failed", status.failed)
    cols[2].metric(
        "Pending",
        "…" if pending is None else pending.to_index,
        delta=f"{pending.to_remove} to remove" if pending and pending.to_remove else None,
        delta_color="off",
        help="New or changed photos in your folders that are not indexed yet (found by "
        "size and date; nothing is read), and photos indexed with another model that have "
        "no vector of this one. The next indexing run or the watcher picks them up.",
    )
    cols[3].metric("Photo folders", len(status.roots))


def _show_library(status: StatusReport, settings: Settings) -> None:
    st.markdown("**Photo folders**")
    if not status.roots:
        st.caption("No folders yet.")
    for root in status.roots:
        text, remove = st.columns([12, 1], vertical_alignment="center")
        text.text(web_text(root.path) + ("" if root.online else "  (offline: kept, not scanned)"))
        if remove.button("Remove", key=remove_key(root.path), type="tertiary",
                         help="Take this folder and its photos out of the library; "
                         "the files stay on disk."):  # fmt: skip
            st.session_state[REMOVING] = root.path
    if st.session_state.get(REMOVING) in {r.path for r in status.roots}:
        _confirm_removal(settings, st.session_state[REMOVING])
    st.markdown("**Model and index**")
    st.text(
        f"Model: {status.model}, weights {status.weights} ({status.model_id}), "
        f"on {status.device} in {status.precision}"
    )
    index = status.index
    if index.note:
        st.text(f"Index: {index.note}")
    else:
        st.text(f"Index: {index.type}, {index.vectors} vectors, {_size_text(index.size_bytes)}")
    st.text(web_text(f"Library: {status.data_dir}"))
    holder = status.writer
    if holder is not None:
        since = datetime.fromtimestamp(holder.since).strftime("%Y-%m-%d %H:%M:%S")
        st.text(f"Writer: searchapp {holder.kind} (pid {holder.pid}) since {since}")
    st.text(_describe_run(status.last_run))  # a run whose process is gone says "stopped"


def drop_removal() -> None:
    """Forget a folder's Remove that waits for its confirmation (the tab was left)."""
    st.session_state.pop(REMOVING, None)


def remove_key(path: str) -> str:
    """The Remove button of one folder: keyed by its path, so a list that changed between
    drawing and clicking never removes the folder that moved into its place."""
    return "remove-root-" + hashlib.sha1(encode_path(path).encode()).hexdigest()[:12]


def _confirm_removal(settings: Settings, path: str) -> None:
    """A second step: removing a folder drops its photos' vectors, which take a new
    index run to rebuild."""
    st.warning(
        md_escape(f"Remove {path} from the library? Its photos leave the timeline and the "
                  "searches; the files stay where they are (adding the folder back indexes "
                  "its photos again)."),
        icon=":material/folder_delete:",
    )  # fmt: skip
    yes, no = st.columns(2)
    if yes.button("Remove the folder", key="remove-root-yes", type="primary"):
        del st.session_state[REMOVING]
        remove_folder(settings, path)
        st.rerun(scope="app")
    if no.button("Keep it", key="remove-root-no"):
        del st.session_state[REMOVING]
        st.rerun(scope="app")


def _size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def _describe_run(run: RunRecord | None) -> str:
    if run is None:
        return "Last indexing run: never"
    started = datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M:%S")
    text = f"Last indexing run: {run.kind}, {run.state}, started {started}"
    if (run.stats or {}).get("workers"):
        text += f", on {run.stats['workers']} Ray worker(s)"
    if run.finished_at:
        text += f", took {run.finished_at - run.started_at:.1f} s"
    stats = run.stats or {}
    if stats:
        keys = ("added", "updated", "moved", "removed", "unchanged", "failed")
        text += " (" + ", ".join(f"{k} {stats.get(k, 0)}" for k in keys) + ")"
    if run.message:
        text += f": {run.message}"
    return text


def _show_failures(status: StatusReport, settings: Settings) -> None:
    st.markdown(f"**Failed files ({status.failed})**")
    if not status.failures:
        st.caption("None: every file found was indexed.")
        return
    st.dataframe(
        {
            "file": [web_text(f.path) for f in status.failures],
            "reason": [web_text(f.reason) for f in status.failures],
        },
        hide_index=True,
        width="stretch",
    )
    if status.failed > len(status.failures):
        command = command_for(settings.data_dir)  # shell-quoted: a name's odd bytes as \xNN
        st.caption(f"Showing the first {len(status.failures)}; see `{command} status`.")
    if st.button("Retry failed files", key="retry", help="Read and index them again"):
        # a list cut at FAILURES_SHOWN would retry only some: then retry every failed file
        # (judged by the list itself, not the count, which another query read)
        complete = len(status.failures) < FAILURES_SHOWN
        paths = [f.path for f in status.failures] if complete else None
        if run_indexing(settings, paths=paths, retry_failed=True):
            st.rerun()
