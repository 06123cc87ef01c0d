"""The folder watcher's bookkeeping (``batch/watch.py``) beyond single files.

A multi-file image (an ICS header and its pixels) is offered once through its header,
its member reported once; the sink is asked about a file once per state, not once per
poll; folder images are one item (the default folder formats, or the ones given); a
watcher without a callback still ingests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.batch.test_multifile_ingest import write_ics_pair
from zstack_analyzer.batch.ingest import Commit
from zstack_analyzer.batch.runner import SerialRunner
from zstack_analyzer.batch.watch import watch_folder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import pytest

    from zstack_analyzer.batch.walk import FileEntry


def size_of(path: str) -> int:
    return 0 if os.path.isdir(path) else os.path.getsize(path)


@dataclass
class CountingSink:
    """Commits every job; counts how often each path was asked about."""

    present: set[str] = field(default_factory=set)
    asked: dict[str, int] = field(default_factory=dict)
    committed: dict[str, FileEntry] = field(default_factory=dict)
    uses_cluster: bool = False

    def is_present(self, entry: FileEntry) -> bool:
        self.asked[entry.path] = self.asked.get(entry.path, 0) + 1
        return entry.path in self.present

    def task(self) -> Callable[[Any], Any]:
        return size_of

    def job(self, entry: FileEntry) -> Any:
        return entry.path

    def commit(self, entry: FileEntry, result: Any) -> Commit:
        self.committed[entry.path] = entry
        return Commit("ingested", str(result))

    def local_runner(self) -> None:
        return None


def _old(path: Path, data: bytes = b"data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - 600
    os.utime(path, (then, then))
    return path


@contextlib.contextmanager
def _watching(
    folder: Path, sink: CountingSink, *, report: bool = True, **kwargs: Any
) -> Iterator[list[tuple[str, Commit]]]:
    events: list[tuple[str, Commit]] = []
    lock = threading.Lock()

    def on_file(path: str, commit: Commit) -> None:
        with lock:
            events.append((path, commit))

    stop = threading.Event()
    options: dict[str, Any] = {"settle_s": 0.2, "interval_s": 0.05, "stop": stop, **kwargs}
    if report:
        options["on_file"] = on_file
    failed: list[BaseException] = []

    def run() -> None:
        try:
            watch_folder(folder, sink, SerialRunner(), **options)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield events
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        assert failed == []


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the watcher did not get there"
        time.sleep(0.02)


def test_a_set_is_offered_once_through_its_header(tmp_path: Path) -> None:
    ics, ids = write_ics_pair(tmp_path / "in")
    for path in (ics, ids):
        then = time.time() - 600
        os.utime(path, (then, then))
    sink = CountingSink()
    with _watching(tmp_path / "in", sink) as events:
        _until(lambda: len(events) >= 2)
        time.sleep(0.3)  # more polls: nothing is reported again
        assert sorted(events) == sorted(
            [
                (str(ids), Commit("member", f"part of {ics}")),
                (str(ics), Commit("ingested", str(ics.stat().st_size))),
            ]
        )
    assert list(sink.committed) == [str(ics)]
    assert sink.committed[str(ics)].members == ("beads.ids",)
    assert sink.committed[str(ics)].size == ics.stat().st_size + ids.stat().st_size


def test_the_sink_is_asked_once_per_state_and_without_a_callback(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    kept = _old(folder / "kept.tif")
    new = _old(folder / "new.tif", b"12345")
    sink = CountingSink(present={str(kept)})
    with _watching(folder, sink, report=False):
        _until(lambda: str(new) in sink.committed)
        time.sleep(0.3)  # several more polls
        assert sink.asked == {str(kept): 1, str(new): 1}
        _old(kept, b"changed")  # a new state: asked again, once
        _until(lambda: sink.asked[str(kept)] == 2)
        time.sleep(0.3)
        assert sink.asked == {str(kept): 2, str(new): 1}


def test_a_file_that_keeps_changing_is_never_ready(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    growing = _old(folder / "growing.tif", b"x")
    sink = CountingSink()
    with _watching(folder, sink, settle_s=0.0) as events:
        for n in range(2, 30):  # a new size at every poll or so
            growing.write_bytes(b"x" * n)
            then = time.time() - 600
            os.utime(growing, (then, then))
            time.sleep(0.01)
        assert sink.asked.get(str(growing), 0) <= 3
        _until(lambda: len(events) >= 1)
    assert events[-1] == (str(growing), Commit("ingested", str(growing.stat().st_size)))


def test_a_file_is_ready_only_once_settled(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sink = CountingSink()
    with _watching(folder, sink, settle_s=1.0) as events:
        recent = folder / "recent.tif"
        recent.write_bytes(b"r")
        then = time.time() - 0.3
        os.utime(recent, (then, then))
        time.sleep(0.3)  # polls see it twice, the same, but not a second old
        assert events == []
        _until(lambda: len(events) >= 1)  # ~0.7 s later it is
        assert events == [(str(recent), Commit("ingested", "1"))]


def test_folder_images_are_one_item(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _old(folder / "plate.zarr" / "zarr.json", b"{}")
    _old(folder / "cells.foo" / "a", b"a")
    sink = CountingSink()
    with _watching(folder, sink) as events:
        _until(lambda: len(events) >= 2)
        time.sleep(0.2)
    assert sorted(os.path.relpath(p, folder) for p, _ in events) == ["cells.foo/a", "plate.zarr"]
    sink = CountingSink()
    with _watching(folder, sink, dir_suffixes=frozenset({".foo"})) as events:
        _until(lambda: len(events) >= 2)
        time.sleep(0.2)
    assert sorted(os.path.relpath(p, folder) for p, _ in events) == [
        "cells.foo",
        "plate.zarr/zarr.json",
    ]


def test_a_failed_commit_is_logged_with_its_path_and_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(CountingSink):
        def commit(self, entry: FileEntry, result: Any) -> Commit:
            msg = "disk full"
            raise OSError(msg)

    folder = tmp_path / "in"
    bad = _old(folder / "bad.tif")
    caplog.set_level(logging.ERROR, logger="zstack_analyzer.batch.watch")
    with _watching(folder, Failing()) as events:
        _until(lambda: len(events) >= 1)
    assert events[0] == (str(bad), Commit("failed", "OSError: disk full"))
    logged = [r for r in caplog.records if r.name == "zstack_analyzer.batch.watch"]
    assert logged[0].getMessage() == f"{bad}: commit failed"
    assert logged[0].exc_info is not None
    assert "disk full" in str(logged[0].exc_info[1])
