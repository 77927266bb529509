"""The writer layer: every write to a library, and the daemon that keeps it current.

Front-ends call :func:`submit` with a typed command; it runs the command in a
:class:`Writer` under the writer lock, or hands it to the running watcher
(:func:`run_watch`), whose daemon runs the same ``Writer``.
"""

from searchapp.indexer.commands import AddRoots, Command, Index, Outcome, RemoveRoot
from searchapp.indexer.daemon import run_watch
from searchapp.indexer.pipeline import IndexStats, Progress
from searchapp.indexer.writer import Writer, submit, watcher_running

__all__ = [
    "AddRoots",
    "Command",
    "Index",
    "IndexStats",
    "Outcome",
    "Progress",
    "RemoveRoot",
    "Writer",
    "run_watch",
    "submit",
    "watcher_running",
]
