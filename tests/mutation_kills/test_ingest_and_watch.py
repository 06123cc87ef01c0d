"""The ingest loop and the folder watcher (``batch/ingest.py``, ``batch/watch.py``) in process.

A small sink that keeps its records in a dict (the ``Sink`` protocol, as the local and HTTP
sinks implement it) shows every outcome: bad entries, files still being written, files
already present, a sink that fails to check or to commit, progress totals, the summary;
and for the watcher: a file is handled once complete, again only when it changes, a bad
entry is reported once, an empty file not at all, a skipped commit is retried.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from zstack_analyzer.batch.ingest import MAX_LISTED, Commit, IngestSummary, ingest
from zstack_analyzer.batch.runner import SerialRunner
from zstack_analyzer.batch.watch import watch_folder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from zstack_analyzer.batch.ingest import IngestProgress
    from zstack_analyzer.batch.walk import FileEntry


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


@dataclass
class DictSink:
    """Records by path; ``present`` are paths already in; ``fail_*`` make the sink itself fail."""

    present: set[str] = field(default_factory=set)
    fail_check: set[str] = field(default_factory=set)
    fail_commit: set[str] = field(default_factory=set)
    skip_once: set[str] = field(default_factory=set)
    unsupported: set[str] = field(default_factory=set)
    uses_cluster: bool = False
    records: dict[str, bytes] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)

    def is_present(self, entry: FileEntry) -> bool:
        if entry.path in self.fail_check:
            raise RuntimeError("database is down")
        return entry.path in self.present or entry.path in self.records

    def task(self) -> Callable[[Any], Any]:
        return _read

    def job(self, entry: FileEntry) -> Any:
        self.jobs.append(entry.path)
        return entry.path

    def commit(self, entry: FileEntry, result: Any) -> Commit:
        if entry.path in self.fail_commit:
            raise ValueError("disk full")
        if entry.path in self.skip_once:
            self.skip_once.discard(entry.path)
            return Commit("skipped", "changed while read")
        if entry.path in self.unsupported:
            return Commit("unsupported", "not an image")
        self.records[entry.path] = result
        return Commit("ingested", image_id=f"id-{len(self.records)}")

    def local_runner(self) -> contextlib.AbstractContextManager[SerialRunner] | None:
        return None if self.uses_cluster else contextlib.nullcontext(SerialRunner())


def _old(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - 600
    os.utime(path, (then, then))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    _old(root / "a.tif", b"aaa")
    _old(root / "sub" / "b.tif", b"bbbbb")
    _old(root / "sub" / "c.tif", b"cc")
    (root / "empty.tif").write_bytes(b"")
    return root


def test_ingest_counts_every_outcome_with_progress(folder: Path) -> None:
    sink = DictSink(present={str(folder / "a.tif")}, unsupported={str(folder / "sub" / "c.tif")})
    seen: list[IngestProgress] = []
    told: list[str | None] = ["unset"]
    summary = ingest([folder], sink, progress=seen.append, on_dashboard=told.append)
    assert told == ["unset", None]  # a local runner: no dashboard, and it is said so
    assert sink.records == {str(folder / "sub" / "b.tif"): b"bbbbb"}
    assert summary.ingested == 1
    assert summary.present == 1
    assert summary.unsupported == 1
    assert summary.unsupported_listed == [str(folder / "sub" / "c.tif")]
    assert summary.skipped == [(str(folder / "empty.tif"), "empty file (0 bytes)")]
    assert summary.failed == []
    assert summary.ok
    assert summary.bytes_done == 3 + 5 + 2
    assert summary.runner == "in process"
    assert summary.seconds > 0
    outcomes = {p.path: p.outcome for p in seen}
    assert outcomes == {
        str(folder / "a.tif"): "present",
        str(folder / "sub" / "b.tif"): "ingested",
        str(folder / "sub" / "c.tif"): "unsupported",
        str(folder / "empty.tif"): "skipped",
    }
    assert [p.files_done for p in seen] == [1, 2, 3, 4]
    assert seen[-1].bytes_done == 10
    assert {(p.files_total, p.bytes_total) for p in seen} == {(4, 10)}  # the empty file counts
    assert sorted(sink.jobs) == [str(folder / "sub" / "b.tif"), str(folder / "sub" / "c.tif")]


def test_ingest_without_counting_has_no_totals(folder: Path) -> None:
    seen: list[IngestProgress] = []
    ingest([folder], DictSink(), progress=seen.append, count_first=False)
    assert {(p.files_total, p.bytes_total) for p in seen} == {(0, 0)}


def test_a_sink_that_fails_fails_that_file_only(folder: Path) -> None:
    sink = DictSink(fail_check={str(folder / "a.tif")}, fail_commit={str(folder / "sub" / "b.tif")})
    summary = ingest([folder], sink)
    assert dict(summary.failed) == {
        str(folder / "a.tif"): "checking: database is down",
        str(folder / "sub" / "b.tif"): "ValueError: disk full",
    }
    assert not summary.ok
    assert summary.ingested == 1
    assert sink.records == {str(folder / "sub" / "c.tif"): b"cc"}
    assert summary.bytes_done == 10


def test_files_still_being_written_are_skipped(folder: Path) -> None:
    fresh = folder / "fresh.tif"
    fresh.write_bytes(b"new!")
    sink = DictSink()
    summary = ingest([folder], sink, settle_s=60)
    reasons = dict(summary.skipped)
    assert reasons[str(fresh)].startswith("still being written (modified ")
    assert reasons[str(fresh)].endswith(" s ago)")
    assert str(fresh) not in sink.records
    assert len(sink.records) == 3
    assert summary.bytes_done == 14  # a skipped file's size is counted as done
    later = ingest([folder], DictSink(), settle_s=0)
    assert later.ingested == 4


def test_a_cluster_sink_with_a_small_batch_runs_in_process(folder: Path) -> None:
    told: list[str | None] = []
    summary = ingest([folder], DictSink(uses_cluster=True), on_dashboard=told.append)
    assert summary.runner == "in process"
    assert summary.ingested == 3
    assert told == [None]


def test_summary_lists_at_most_max_listed_unsupported() -> None:
    summary = IngestSummary()
    for n in range(MAX_LISTED + 5):
        summary.add(f"f{n}", Commit("unsupported"))
    summary.add("p", Commit("present"))
    summary.add("s", Commit("skipped", "why"))
    summary.add("x", Commit("failed", "broken"))
    summary.add("i", Commit("ingested"))
    summary.bytes_done = 7
    summary.seconds = 1.23456
    summary.runner = "r"
    assert summary.unsupported == MAX_LISTED + 5
    assert len(summary.unsupported_listed) == MAX_LISTED
    assert summary.as_json() == {
        "ingested": 1,
        "already_present": 1,
        "unsupported": MAX_LISTED + 5,
        "unsupported_files": [f"f{n}" for n in range(MAX_LISTED)],
        "members": 0,
        "skipped": [{"path": "s", "reason": "why"}],
        "failed": [{"path": "x", "reason": "broken"}],
        "bytes": 7,
        "seconds": 1.235,
        "runner": "r",
    }
    assert not summary.ok


# ---------------------------------------------------------------------------- watching


@contextlib.contextmanager
def _watching(
    folder: Path, sink: DictSink, settle_s: float = 0.3
) -> Iterator[list[tuple[str, Commit]]]:
    events: list[tuple[str, Commit]] = []
    lock = threading.Lock()

    def on_file(path: str, commit: Commit) -> None:
        with lock:
            events.append((path, commit))

    stop = threading.Event()
    thread = threading.Thread(
        target=watch_folder,
        args=(folder, sink, SerialRunner()),
        kwargs={"settle_s": settle_s, "interval_s": 0.05, "stop": stop, "on_file": on_file},
    )
    thread.start()
    try:
        yield events
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the watcher did not get there"
        time.sleep(0.02)


def test_watch_handles_each_complete_file_once(folder: Path) -> None:
    sink = DictSink(present={str(folder / "a.tif")}, fail_commit={str(folder / "sub" / "c.tif")})
    (folder / "fifo").unlink(missing_ok=True)
    os.mkfifo(folder / "fifo")
    with _watching(folder, sink) as events:
        _until(lambda: len(events) >= 4)
        time.sleep(0.3)  # several more polls: nothing is reported again
        by_path = dict(events)
        assert len(events) == 4, events
        assert by_path[str(folder / "a.tif")] == Commit("present")
        assert by_path[str(folder / "sub" / "b.tif")].outcome == "ingested"
        assert by_path[str(folder / "sub" / "c.tif")] == Commit("failed", "ValueError: disk full")
        assert by_path[str(folder / "fifo")].outcome == "skipped"
        assert "FIFO" in by_path[str(folder / "fifo")].reason
        assert str(folder / "empty.tif") not in by_path  # an empty file: not reported
        # A file that changes is handled again (once complete).
        _old(folder / "sub" / "b.tif", b"bbbbbbbb")
        sink.records.pop(str(folder / "sub" / "b.tif"))
        _until(lambda: len(events) >= 5)
        assert events[4][0] == str(folder / "sub" / "b.tif")
        assert sink.records[str(folder / "sub" / "b.tif")] == b"bbbbbbbb"


def test_watch_waits_for_a_file_to_settle(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sink = DictSink()
    with _watching(folder, sink, settle_s=300) as events:
        (folder / "new.tif").write_bytes(b"fresh")
        time.sleep(0.4)  # many polls: the file is never old enough
        assert events == []
        _old(folder / "old.tif", b"old")
        _until(lambda: len(events) >= 1)
        assert events[0][0] == str(folder / "old.tif")
        assert str(folder / "new.tif") not in sink.records


def test_watch_retries_a_file_its_commit_skipped(folder: Path) -> None:
    target = str(folder / "sub" / "b.tif")
    sink = DictSink(skip_once={target})
    with _watching(folder, sink) as events:
        _until(lambda: target in sink.records)
        outcomes = [commit.outcome for path, commit in events if path == target]
        assert outcomes == ["skipped", "ingested"]
