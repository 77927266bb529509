"""Indexing from the page, then its Status tab: the counts agree (issue 12).

"Right after indexing from the page, Status shows 'Indexed 75' beside '74 vectors'": the
run's row said "done" before the vector file was saved, so whatever watched the row (the
Status tab's live fragment, another tab, ``searchapp status``) read a finished run beside an
old file; and the report read its counts and the index's generation at two moments, so a
run committing in between was counted in one and not the other.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import event

from searchapp.indexer import pipeline
from searchapp.indexer.commands import AddRoots
from searchapp.indexer.writer import submit
from searchapp.library import Library
from searchapp.store import Store
from tests.helpers import index_once, wait_for, write_jpegs
from tests.test_ui import _app, _texts

DISTINCT = 74  # distinct images, plus one byte-identical copy: 75 photos


@pytest.fixture()
def library_folder(tmp_path):  # noqa: ANN001, ANN201
    photos = tmp_path / "photos"
    files = write_jpegs(photos, DISTINCT, seed=75)
    shutil.copy(files[0], photos / "copy of the first.jpg")
    return photos


def test_status_right_after_indexing_from_the_page_counts_alike(
    monkeypatch, settings, library_folder
) -> None:  # noqa: ANN001
    seen = []  # what a reader sees the moment the run's row turns "done"
    finish_run = Store.finish_run

    def watched_finish(self, run_id, state, stats, message=None):  # noqa: ANN001, ANN202
        finish_run(self, run_id, state, stats, message)
        if state == "done":
            with Library(settings) as reader:
                seen.append(reader.status(pending=False))

    monkeypatch.setattr(Store, "finish_run", watched_finish)
    at = _app(monkeypatch, settings.data_dir).run()
    at.text_input(key="add-path").input(str(library_folder))
    at.button(key="add-index").click().run()
    assert not at.exception
    assert "Indexing finished: added 75" in _texts(at), _texts(at)

    [report] = seen
    assert report.index.problem is None, report.index.note  # saved before "done"
    assert report.photos == report.index.vectors == DISTINCT + 1

    at.session_state["tab"] = "Status"
    at.run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Indexed"] == "75"
    index_lines = [t.value for t in at.text if t.value.startswith("Index: ")]
    assert index_lines and ", 75 vectors, " in index_lines[0], index_lines

    def said_distinct() -> bool:  # the count of distinct images comes with the folder check
        at.run()
        return "75 photos, 74 distinct images" in _texts(at)

    wait_for(said_distinct, "the distinct-image count on the Status tab", timeout_s=60)


def test_status_read_during_a_run_never_pairs_counts_of_two_moments(
    monkeypatch, settings, embedder, tmp_path
) -> None:  # noqa: ANN001
    """The reader pauses after each statement it runs, about as long as one batch of the
    run takes, so the run commits and saves its file between any two of them. Counts and
    generation read by two statements were torn in every trial (checked by splitting the
    statement: 2 to 5 torn reports per run); one statement never is."""
    photos = tmp_path / "many"
    write_jpegs(photos, 60, seed=76)
    monkeypatch.setattr(pipeline, "SAVE_EVERY_S", 0.0)  # a file saved after every batch
    submit(settings, AddRoots((str(photos),)))  # the library exists: readers can open it
    torn, reports = [], [0]
    stop = threading.Event()

    def read_status() -> None:
        with Library(settings, embedder) as reader:
            event.listen(reader.store.engine, "after_cursor_execute", _wait_a_commit)
            while not stop.is_set():
                report = reader.status(pending=False)
                reports[0] += 1
                if report.index.problem is None and report.photos != report.index.vectors:
                    torn.append((report.photos, report.index.vectors))

    reader = threading.Thread(target=read_status)
    reader.start()
    try:
        index_once(replace(settings, batch_size=2), embedder)  # 30 commits, each saved
    finally:
        stop.set()
        reader.join()
    assert reports[0] > 10, "the reader ran along the indexing run"
    assert not torn, f"counts and the index file read at two moments: {torn[:5]}"


def _wait_a_commit(*_args: object) -> None:
    time.sleep(0.005)


def test_a_reload_during_a_run_from_the_page_lets_the_run_finish(
    monkeypatch, settings, photos
) -> None:  # noqa: ANN001
    """Streamlit stops a script by raising from its next st.* call: a reload during a run
    from the page raised it in the progress bar's update, and the run stopped half-way,
    recorded as failed, unsaid. Now the run finishes, then the stop goes through."""
    from streamlit.runtime.scriptrunner import StopException

    import searchapp.ui.indexing as indexing

    class ReloadedBar:  # the bar of a page that was reloaded: every update raises
        def progress(self, *_: object, **__: object) -> None:
            raise StopException()

    monkeypatch.setattr(indexing.st, "progress", lambda *_, **__: ReloadedBar())
    with pytest.raises(StopException):
        indexing.run_indexing(settings, add_roots=[str(photos)])
    store = Store(settings.db_path)
    [run] = store.recent_runs(1)
    assert run.state == "done" and store.counts()["photos"] == 16
    store.close()
