"""The event debouncer, driven by a fake clock and fake file states: no sleeps, no files."""

from __future__ import annotations

import pytest

from searchapp.indexer.debounce import (
    BURST_MIN,
    BURST_WAIT_S,
    CLOSED_QUIET_S,
    DEBOUNCE_S,
    DIR,
    GONE,
    MAX_GONE_HOLD_S,
    MAX_PATHS_PER_RUN,
    OPEN_MAX_WAIT_S,
    Debouncer,
    Signature,
)

ROOT = "/photos"
DATA_DIR = "/photos/library"  # the data dir, kept inside a root
STEP = 0.125  # how often the daemon asks for ready paths (a binary fraction: exact sums)


class World:
    """A fake clock and the state of each path (absent: gone)."""

    def __init__(self) -> None:
        self.t = 1024.0
        self.files: dict[str, Signature] = {}
        self.debouncer = Debouncer(DATA_DIR, now=lambda: self.t, signature=self.signature)
        self.debouncer.set_roots([ROOT])

    def signature(self, path: str) -> Signature:
        return self.files.get(path, GONE)

    def write(self, path: str, size: int = 100) -> None:
        """The file now has ``size`` bytes, written at the current time."""
        self.files[path] = (size, int(self.t * 1e9))

    def run(self, seconds: float) -> list[list[str]]:
        """Advance the clock in daemon polls; the batches handed over meanwhile."""
        batches = []
        for _ in range(round(seconds / STEP)):
            batch = self.debouncer.take_ready()
            if batch:
                batches.append(batch)
            self.t += STEP
        return batches

    def ready_after(self, path: str, limit: float = 120.0) -> float:
        """Seconds from now until ``path`` is handed over, polling as the daemon does."""
        start = self.t
        while self.t - start < limit:
            if path in self.debouncer.take_ready():
                return self.t - start
            self.t += STEP
        pytest.fail(f"{path} not ready after {limit} s")


def within_a_poll(waited: float, quiet: float) -> bool:
    """Handed over at the first poll after ``quiet`` seconds, not before."""
    return quiet <= waited < quiet + STEP


@pytest.fixture()
def world() -> World:
    return World()


def test_a_file_is_ready_only_after_its_quiet_time(world: World) -> None:
    path = f"{ROOT}/a.jpg"
    world.write(path)
    assert world.debouncer.add(path)  # no close reports (polling, macOS)
    assert within_a_poll(world.ready_after(path), DEBOUNCE_S)
    assert world.debouncer.pending_count() == 0
    assert world.run(5) == [], "handed over once"


def test_every_change_restarts_the_quiet_time(world: World) -> None:
    path = f"{ROOT}/a.jpg"
    world.write(path)
    world.debouncer.add(path)
    assert world.run(DEBOUNCE_S - 2 * STEP) == []
    world.debouncer.add(path)  # another event, same content
    assert within_a_poll(world.ready_after(path), DEBOUNCE_S)


def test_a_close_event_shortens_the_quiet_time(world: World) -> None:
    path = f"{ROOT}/a.jpg"
    world.write(path)
    world.debouncer.add(path, closes=True, writing=False)  # inotify's IN_CLOSE_WRITE
    waited = world.ready_after(path)
    assert within_a_poll(waited, CLOSED_QUIET_S)
    assert waited < DEBOUNCE_S


def test_a_file_open_for_writing_waits_for_its_close(world: World) -> None:
    path = f"{ROOT}/slow.jpg"
    world.write(path, 10)
    world.debouncer.add(path, closes=True, writing=True)  # written, not yet closed
    assert world.run(10 * DEBOUNCE_S) == [], "a writer that pauses is not done"
    world.write(path, 20)
    world.debouncer.add(path, closes=True)  # an attrib event: no news about the writer
    assert world.run(10 * DEBOUNCE_S) == []
    world.debouncer.add(path, closes=True, writing=False)  # closed
    assert within_a_poll(world.ready_after(path), CLOSED_QUIET_S)


def test_a_file_left_open_is_read_after_the_longest_wait(world: World) -> None:
    path = f"{ROOT}/open.jpg"
    world.write(path)
    world.debouncer.add(path, closes=True, writing=True)
    assert within_a_poll(world.ready_after(path), OPEN_MAX_WAIT_S)


def test_a_still_growing_file_is_not_ready(world: World) -> None:
    path = f"{ROOT}/copying.jpg"
    world.debouncer.add(path)
    for size in range(1, 40):  # 5 s of growth with no further events
        world.write(path, size * 1000)
        assert world.run(STEP) == []
    # the last growth was seen one poll ago
    assert within_a_poll(world.ready_after(path) + STEP, DEBOUNCE_S)


def test_a_moves_old_and_new_path_come_out_in_one_batch(world: World) -> None:
    old, new = f"{ROOT}/a.jpg", f"{ROOT}/sub/a.jpg"
    world.debouncer.add(old, writing=False)  # the old side: gone at once
    world.debouncer.add(new)
    for size in range(1, 30):  # the new side settles late (a copy across drives)
        world.write(new, size)
        assert world.run(STEP) == [], "the vanished path waits for the other side"
    assert world.run(DEBOUNCE_S + STEP) == [[old, new]]


def test_a_vanished_path_is_held_at_most_max_gone_hold(world: World) -> None:
    gone, busy = f"{ROOT}/deleted.jpg", f"{ROOT}/busy.jpg"
    world.debouncer.add(gone)
    world.debouncer.add(busy)
    batches: list[list[str]] = []
    size = 0
    while not batches:
        size += 1
        world.write(busy, size)  # never settles
        batches = world.run(STEP)
    assert batches == [[gone]]
    assert within_a_poll(world.t - 1024.0 - STEP, MAX_GONE_HOLD_S)


def test_a_burst_is_handed_over_in_fuller_batches(world: World) -> None:
    busy = f"{ROOT}/busy.jpg"
    world.debouncer.add(busy)
    few = [f"{ROOT}/few_{i}.jpg" for i in range(3)]
    for path in few:
        world.write(path)
        world.debouncer.add(path, closes=True, writing=False)
    held = 0.0
    while True:  # few files ready while others still arrive: wait for more
        world.write(busy, int(world.t * 10))
        batch = world.debouncer.take_ready()
        if batch:
            break
        world.t += STEP
        held += STEP
    assert batch == few
    assert within_a_poll(held, CLOSED_QUIET_S + BURST_WAIT_S)

    many = [f"{ROOT}/many_{i:02d}.jpg" for i in range(BURST_MIN)]
    for path in many:
        world.write(path)
        world.debouncer.add(path, closes=True, writing=False)
    world.write(busy, 1)
    world.debouncer.add(busy)
    # enough ready files go at once, busy or not
    assert within_a_poll(world.ready_after(many[0]), CLOSED_QUIET_S)


def test_more_than_max_paths_collapse_to_their_folders(world: World) -> None:
    a = [f"{ROOT}/a/{i:03d}.jpg" for i in range(MAX_PATHS_PER_RUN)]
    b = [f"{ROOT}/b/{i:03d}.jpg" for i in range(MAX_PATHS_PER_RUN)]
    for path in a + b:
        world.write(path)
        world.debouncer.add(path, closes=True, writing=False)
    assert world.run(1.0) == [[f"{ROOT}/a", f"{ROOT}/b"]]


def test_a_folder_with_a_file_still_written_is_not_collapsed(world: World) -> None:
    a = [f"{ROOT}/a/{i:03d}.jpg" for i in range(MAX_PATHS_PER_RUN)]
    b = [f"{ROOT}/b/{i:03d}.jpg" for i in range(MAX_PATHS_PER_RUN)]
    writing = f"{ROOT}/b/writing.jpg"
    world.write(writing)
    world.debouncer.add(writing, closes=True, writing=True)
    for path in a + b:
        world.write(path)
        world.debouncer.add(path, closes=True, writing=False)
    assert world.run(1.0) == [[f"{ROOT}/a", *b]]
    assert world.debouncer.pending_count() == 1


def test_a_folder_waits_for_the_files_changing_below_it(world: World) -> None:
    folder, inside = f"{ROOT}/new album", f"{ROOT}/new album/x.jpg"
    world.files[folder] = DIR
    world.debouncer.add(folder, is_dir=True)
    world.debouncer.add(inside)
    for size in range(1, 30):
        world.write(inside, size)
        assert world.run(STEP) == []
    assert world.run(DEBOUNCE_S + STEP) == [[folder, inside]]


def test_paths_the_library_does_not_index_are_ignored(world: World) -> None:
    ignored = [
        (f"{DATA_DIR}/thumbs/1.jpg", False),  # the library's own files
        (DATA_DIR, True),
        ("/elsewhere/a.jpg", False),  # outside every root
        (ROOT, True),  # the root itself
        (f"{ROOT}/.hidden.jpg", False),
        (f"{ROOT}/.cache/a.jpg", False),
        (f"{ROOT}/a.jpg.part", False),  # still being downloaded
        (f"{ROOT}/a.jpg~", False),
        (f"{ROOT}/~$a.jpg", False),
        (f"{ROOT}/notes.txt", False),
    ]
    for path, is_dir in ignored:
        assert not world.debouncer.add(path, is_dir=is_dir), path
    assert world.debouncer.pending_count() == 0
    assert world.debouncer.add(f"{ROOT}/album", is_dir=True)
    assert world.debouncer.add(f"{ROOT}/album/a.JPG")
    assert world.debouncer.pending_count() == 2


def test_drop_below_forgets_a_vanished_roots_changes(world: World) -> None:
    world.debouncer.set_roots([ROOT, "/usb"])
    for path in (f"{ROOT}/a.jpg", "/usb/b.jpg", "/usb/c/d.jpg"):
        world.write(path)
        world.debouncer.add(path)
    assert world.debouncer.drop_below("/usb") == 2
    assert world.run(2 * DEBOUNCE_S) == [[f"{ROOT}/a.jpg"]]


def test_lost_events_are_reported_once(world: World) -> None:
    assert world.debouncer.take_overflow() is False
    world.debouncer.mark_overflow()
    assert world.debouncer.take_overflow() is True
    assert world.debouncer.take_overflow() is False
