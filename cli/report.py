"""``searchapp status`` for people: the core's status report as aligned text lines."""

from __future__ import annotations

import time
from pathlib import Path

from searchapp.config import command_for
from searchapp.library import StatusReport

# Up to this many failed files are listed one a line; more are summarized by reason.
FAILURE_LINES = 10
EXAMPLES_PER_REASON = 3


def status_lines(report: StatusReport, searches: str | None = None) -> list[str]:
    """The lines ``searchapp status`` prints (``--json`` prints ``report.as_dict()``);
    ``searches`` says who answers searches (the watcher's model, loaded or not)."""
    index = report.index
    lines = [
        f"library: {report.data_dir}",
        f"model:   {report.model} weights {report.weights}, on {report.device} in "
        f"{report.precision}",
        f"index:   {index.note}"
        if index.note
        else f"index:   {index.vectors} vectors ({index.type})",
        f"photos:  {report.photos} indexed, {report.failed} failed{_pending_text(report)}",
        f"watcher: {_describe_daemon(report.daemon, _command(report))}",
    ]
    if searches:
        lines.append(f"search:  {searches}")
    w = report.writer
    if w is not None and not w.is_watcher:
        lines.append(f"writing: 'searchapp {w.kind}' (pid {w.pid}) since {_clock(w.since)}")
    lines += [f"root:    {r.path}{'' if r.online else '  (offline)'}" for r in report.roots]
    return lines + failure_lines(report)


def failure_lines(report: StatusReport) -> list[str]:
    """One line a failed file when few; else a summary by reason with the first paths."""
    if len(report.failures) <= FAILURE_LINES:
        return [f"failed:  {f.path}: {f.reason}" for f in report.failures]
    lines = [
        f"failed:  {report.failed} files; by reason (every file: {_command(report)} status --json)"
    ]
    for group in report.failure_groups(EXAMPLES_PER_REASON):
        lines.append(f"  {group.count:>7}  {group.reason}")
        lines += [f"           {f.path}: {f.reason}" for f in group.examples]
        if group.count > len(group.examples):
            lines.append(f"           ... and {group.count - len(group.examples)} more")
    return lines


def _pending_text(report: StatusReport) -> str:
    p = report.pending
    if p is None:
        return ""
    other = f", {p.to_embed} with no vector of this model (indexed with another)"
    other = other if p.to_embed else ""
    new = p.to_index - p.to_embed
    return f", {new} new or changed to index{other}, {p.to_remove} gone to remove"


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _command(report: StatusReport) -> str:
    return command_for(Path(report.data_dir))


def _describe_daemon(d: dict, command: str) -> str:
    if not d["running"]:
        return f"not running (start it with: {command} watch)"
    last = f"{_clock(d['last_activity'])}" + (f" ({d['activity']})" if d["activity"] else "")
    return f"running, pid {d['pid']}, since {_clock(d['since'])}; last activity {last}"
