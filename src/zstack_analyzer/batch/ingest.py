"""Ingest folders: walk, skip what is bad or already present, process the rest, commit.

Why a *sink*: where records go differs (this machine's database and storage,
or a server's HTTP API), but the walk, the classification of bad entries, the
"already present" check, the progress and the summary must not. A sink says
whether a file is already present (cheap, in this process), what task to run
for it (anywhere: a dask worker, a thread) and how to commit its result (in
this process, one file at a time, so an interrupted run leaves only whole
records and a re-run finishes the rest).

The library never prints: progress goes to the callback the caller passes.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from zstack_analyzer.batch.grouping import Member, SetMemo, group_entry, walk_roots
from zstack_analyzer.batch.runner import SMALL_BATCH, open_runner
from zstack_analyzer.batch.walk import (
    BadEntry,
    FileEntry,
    count_files,
    folder_format_suffixes,
    walk,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

    from zstack_analyzer.batch.runner import Runner

__all__ = [
    "MAX_LISTED",
    "Commit",
    "IngestProgress",
    "IngestSummary",
    "Outcome",
    "Sink",
    "ingest",
]

logger = logging.getLogger(__name__)

#: Unsupported files listed by name in a summary (the rest are counted).
MAX_LISTED = 100

#: ``member``: a file of a multi-file image whose main file carries the record.
Outcome = Literal["ingested", "present", "unsupported", "skipped", "failed", "member"]


@dataclass(frozen=True, slots=True)
class Commit:
    """What a sink made of one file."""

    outcome: Outcome
    reason: str = ""
    image_id: str | None = None


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """One file finished (whatever its outcome); totals are 0 when not counted."""

    path: str
    outcome: Outcome
    files_done: int
    bytes_done: int
    files_total: int
    bytes_total: int


@dataclass
class IngestSummary:
    """What an ingest did: counts, plus the reason for every skipped and failed file."""

    ingested: int = 0
    present: int = 0
    unsupported: int = 0
    unsupported_listed: list[str] = field(default_factory=list)
    #: Files that are part of a multi-file image ingested through its main file.
    members: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_done: int = 0
    seconds: float = 0.0
    runner: str = ""

    @property
    def ok(self) -> bool:
        """Every supported file is in (skips allowed)."""
        return not self.failed

    def add(self, path: str, commit: Commit) -> None:
        """Count one file's outcome."""
        if commit.outcome == "ingested":
            self.ingested += 1
        elif commit.outcome == "present":
            self.present += 1
        elif commit.outcome == "unsupported":
            self.unsupported += 1
            if len(self.unsupported_listed) < MAX_LISTED:
                self.unsupported_listed.append(path)
        elif commit.outcome == "member":
            self.members += 1
        elif commit.outcome == "skipped":
            self.skipped.append((path, commit.reason))
        else:
            self.failed.append((path, commit.reason))

    def as_json(self) -> dict[str, Any]:
        """The summary as JSON-able data (``zstack ingest --json``)."""
        return {
            "ingested": self.ingested,
            "already_present": self.present,
            "unsupported": self.unsupported,
            "unsupported_files": self.unsupported_listed,
            "members": self.members,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "bytes": self.bytes_done,
            "seconds": round(self.seconds, 3),
            "runner": self.runner,
        }


class Sink(Protocol):
    """Where ingested files go (see the module docstring)."""

    #: Whether its tasks are CPU work for a cluster (True) or I/O for threads (False).
    uses_cluster: bool

    def is_present(self, entry: FileEntry) -> bool:
        """Cheap check in this process: already ingested and unchanged."""
        ...

    def task(self) -> Callable[[Any], Any]:
        """The function run for each job (picklable, module level, for dask)."""
        ...

    def job(self, entry: FileEntry) -> Any:
        """The argument of :meth:`task` for ``entry`` (picklable)."""
        ...

    def commit(self, entry: FileEntry, result: Any) -> Commit:
        """Turn a task's result into a record (in this process)."""
        ...

    def local_runner(self) -> AbstractContextManager[Runner] | None:
        """The runner for a sink that does not use the cluster (``None``: decide as usual)."""
        ...


def ingest(
    paths: Iterable[str | Path],
    sink: Sink,
    *,
    scheduler: str | None = None,
    settle_s: float = 0.0,
    progress: Callable[[IngestProgress], None] | None = None,
    count_first: bool = True,
    dir_suffixes: frozenset[str] | None = None,
    dashboard: str | None = None,
    on_dashboard: Callable[[str | None], None] | None = None,
) -> IngestSummary:
    """Ingest every file under ``paths`` into ``sink``.

    Parameters
    ----------
    paths
        Files and folders (walked recursively, streaming).
    sink
        Where records go.
    scheduler
        A dask scheduler address for the tasks; ``None``: a LocalCluster for
        batches above :data:`~zstack_analyzer.batch.runner.SMALL_BATCH` files,
        else this process.
    settle_s
        A file modified less than this long ago is skipped as still being written.
    progress
        Called after each file with the running totals.
    count_first
        Walk once to count files and bytes (the progress totals, the runner choice).
    dir_suffixes
        Folder names that are images (default: the folder formats a reader claims).
    dashboard
        ``HOST:PORT`` for the dask dashboard of the LocalCluster a large batch
        starts (port 0: a free port); ``None``: no dashboard.
    on_dashboard
        Told once where the dashboard is (a URL), or ``None`` when this run has none
        (a small batch in process, a server doing the work).

    Examples
    --------
    >>> summary = ingest(["/data/lab"], sink)  # doctest: +SKIP
    >>> summary.ingested, summary.present, summary.failed
    (412, 0, [])
    """
    paths = list(paths)
    if dir_suffixes is None:
        dir_suffixes = folder_format_suffixes()
    started = time.perf_counter()
    files_total, bytes_total = (
        count_files(paths, dir_suffixes=dir_suffixes) if count_first else (0, 0)
    )
    summary = IngestSummary()
    done = [0]

    def report(path: str, commit: Commit, size: int) -> None:
        summary.add(path, commit)
        summary.bytes_done += size
        done[0] += 1
        if progress is not None:
            progress(
                IngestProgress(
                    path, commit.outcome, done[0], summary.bytes_done, files_total, bytes_total
                )
            )

    roots = walk_roots(paths)
    memo = SetMemo()

    def jobs() -> Iterator[tuple[FileEntry, Any]]:
        for walked in walk(paths, dir_suffixes=dir_suffixes):
            if isinstance(walked, BadEntry):
                report(walked.path, Commit("skipped", walked.reason), 0)
                continue
            item = group_entry(walked, roots, memo=memo)
            if isinstance(item, Member):
                report(item.path, Commit("member", f"part of {item.main}"), item.size)
                continue
            age_s = time.time() - item.mtime_ns / 1e9
            if age_s < settle_s:
                reason = f"still being written (modified {max(age_s, 0):.1f} s ago)"
                report(item.path, Commit("skipped", reason), item.size)
                continue
            try:
                present = sink.is_present(item)
            except Exception as exc:  # a sink's own trouble fails this file, not the run
                report(item.path, Commit("failed", f"checking: {exc}"), item.size)
                continue
            if present:
                report(item.path, Commit("present"), item.size)
                continue
            yield item, sink.job(item)

    task = sink.task()

    def run_one(pair: tuple[FileEntry, Any]) -> Any:
        return task(pair[1])

    # Decide the runner on the work actually left, not the files seen: a re-run where
    # everything is present must not pay for starting a cluster.
    pending = jobs()
    head = list(itertools.islice(pending, SMALL_BATCH + 1))
    runner_cm = sink.local_runner() if not sink.uses_cluster else None
    if runner_cm is not None and on_dashboard is not None:
        on_dashboard(None)
    if runner_cm is None:
        expected = len(head) if len(head) <= SMALL_BATCH else max(files_total, len(head))
        runner_cm = open_runner(
            scheduler=scheduler, expected=expected, dashboard=dashboard, on_dashboard=on_dashboard
        )
    with runner_cm as runner:
        stream = itertools.chain(head, pending)
        for (entry, _), result in runner.map_unordered(run_one, stream):
            try:
                commit = sink.commit(entry, result)
            except Exception as exc:
                logger.exception("%s: commit failed", entry.path)
                commit = Commit("failed", f"{type(exc).__name__}: {exc}")
            report(entry.path, commit, entry.size)
        summary.runner = runner.description
    summary.seconds = time.perf_counter() - started
    return summary
