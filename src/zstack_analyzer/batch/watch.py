"""Watch a folder: ingest each new file once it is complete.

Why polling and a settle time, not inotify: acquisition software writes a file
for minutes, on network shares where change events are unreliable or absent.
A file is *complete* when two polls saw the same size and mtime and its mtime
is at least ``settle_s`` old (nothing has written to it for that long). After
a restart the first polls see every file again; those already present are
recognised by the sink (same path, size, mtime or same hash) and cost no
work, so the watcher catches up on exactly the files that arrived while it
was down.

A multi-file image (:mod:`zstack_analyzer.batch.grouping`) is one entry, its
main file, whose size and mtime are the whole set's: it is complete only when
every member is, and a member rewritten later makes the set new again. Its
members are reported once as ``member`` and never ingested on their own.

Memory: one small entry per file not yet complete, plus ``(size, mtime)`` per
file already handled, so a handled file is not asked about again each poll.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from zstack_analyzer.batch.grouping import Member, SetMemo, group_entry, walk_roots
from zstack_analyzer.batch.ingest import Commit
from zstack_analyzer.batch.walk import BadEntry, FileEntry, folder_format_suffixes, walk

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from zstack_analyzer.batch.ingest import Sink
    from zstack_analyzer.batch.runner import Runner

__all__ = ["watch_folder"]

logger = logging.getLogger(__name__)


def watch_folder(
    folder: str | Path,
    sink: Sink,
    runner: Runner,
    *,
    settle_s: float = 5.0,
    interval_s: float = 1.0,
    stop: threading.Event | None = None,
    on_file: Callable[[str, Commit], None] | None = None,
    dir_suffixes: frozenset[str] | None = None,
) -> None:
    """Poll ``folder`` until ``stop`` is set, ingesting each complete new file into ``sink``.

    Parameters
    ----------
    folder
        Walked recursively at every poll (streaming).
    sink, runner
        Where records go and where the per-file work runs (see :func:`ingest`).
    settle_s
        Seconds without change before a file counts as complete.
    interval_s
        Seconds between polls.
    stop
        Set it (from a signal handler, another thread) to end the watch after the current poll.
    on_file
        Called once per handled file (and once per bad entry) with its outcome.
    """
    stop = stop or threading.Event()
    if dir_suffixes is None:
        dir_suffixes = folder_format_suffixes()
    pending: dict[str, tuple[int, int]] = {}  # seen once, not yet complete
    handled: dict[str, tuple[int, int]] = {}
    reported_bad: set[str] = set()
    reported_members: set[str] = set()
    roots = walk_roots([folder])
    task = sink.task()

    def run_one(pair: tuple[FileEntry, object]) -> object:
        return task(pair[1])

    while not stop.is_set():
        ready: list[FileEntry] = []
        still_pending: dict[str, tuple[int, int]] = {}
        now = time.time()
        memo = SetMemo()  # one per poll: a set found once per poll
        for walked in walk([folder], dir_suffixes=dir_suffixes):
            item = walked if isinstance(walked, BadEntry) else group_entry(walked, roots, memo=memo)
            if isinstance(item, Member):
                if item.path not in reported_members and on_file is not None:
                    on_file(item.path, Commit("member", f"part of {item.main}"))
                reported_members.add(item.path)
                continue
            if isinstance(item, BadEntry):
                # An empty file is often one just created: not worth a report yet.
                if (
                    item.path not in reported_bad
                    and on_file is not None
                    and not item.reason.startswith("empty file")
                ):
                    on_file(item.path, Commit("skipped", item.reason))
                    reported_bad.add(item.path)
                continue
            state = (item.size, item.mtime_ns)
            if handled.get(item.path) == state:
                continue
            if pending.get(item.path) == state and now - item.mtime_ns / 1e9 >= settle_s:
                ready.append(item)
            else:
                still_pending[item.path] = state
        pending = still_pending
        if ready:
            jobs = []
            for entry in ready:
                handled[entry.path] = (entry.size, entry.mtime_ns)
                if sink.is_present(entry):
                    if on_file is not None:
                        on_file(entry.path, Commit("present"))
                    continue
                jobs.append((entry, sink.job(entry)))
            for (entry, _), result in runner.map_unordered(run_one, jobs):
                try:
                    commit = sink.commit(entry, result)
                except Exception as exc:
                    logger.exception("%s: commit failed", entry.path)
                    commit = Commit("failed", f"{type(exc).__name__}: {exc}")
                if commit.outcome == "skipped":
                    handled.pop(entry.path, None)  # changed while read: try again later
                if on_file is not None:
                    on_file(entry.path, commit)
        stop.wait(interval_s)
