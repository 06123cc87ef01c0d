"""The ingest loop's choices (``batch/ingest.py``): members, settling, folder images, runners.

Files are given in order (as paths on the command line), so the order of the progress
reports shows when the loop walks ahead of the work: it takes the first
``SMALL_BATCH + 1`` jobs to choose a runner, and only then walks on as results come.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.batch.test_multifile_ingest import write_ics_pair
from zstack_analyzer.batch.ingest import Commit, ingest
from zstack_analyzer.batch.runner import SMALL_BATCH, SerialRunner, ThreadRunner

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from zstack_analyzer.batch.ingest import IngestProgress
    from zstack_analyzer.batch.runner import Runner
    from zstack_analyzer.batch.walk import FileEntry


def size_of(path: str) -> int:
    """The task: what a worker would read (a folder image counts 0 here)."""
    return 0 if os.path.isdir(path) else os.path.getsize(path)


@dataclass
class ListSink:
    """Commits every job; ``present`` paths are already in; ``runner`` its local runner."""

    uses_cluster: bool = False
    runner: Runner | None = None
    present: set[str] = field(default_factory=set)
    fail_check: set[str] = field(default_factory=set)
    committed: list[FileEntry] = field(default_factory=list)

    def is_present(self, entry: FileEntry) -> bool:
        if entry.path in self.fail_check:
            raise RuntimeError("database is down")
        return entry.path in self.present

    def task(self) -> Callable[[Any], Any]:
        return size_of

    def job(self, entry: FileEntry) -> Any:
        return entry.path

    def commit(self, entry: FileEntry, result: Any) -> Commit:
        self.committed.append(entry)
        return Commit("ingested", str(result))

    def local_runner(self) -> contextlib.AbstractContextManager[Runner] | None:
        return None if self.runner is None else contextlib.nullcontext(self.runner)


def _old(path: Path, data: bytes = b"data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - 600
    os.utime(path, (then, then))
    return path


def _outcomes(seen: list[IngestProgress]) -> list[tuple[str, str]]:
    return [(os.path.basename(p.path), p.outcome) for p in seen]


def test_members_are_reported_with_their_main_file_and_the_walk_goes_on(tmp_path: Path) -> None:
    ics, ids = write_ics_pair(tmp_path / "in")
    later = _old(tmp_path / "in" / "later.tif", b"12345")
    for path in (ics, ids):
        then = time.time() - 600
        os.utime(path, (then, then))
    sink = ListSink(runner=SerialRunner())
    seen: list[IngestProgress] = []
    summary = ingest([ics, ids, later], sink, progress=seen.append)
    assert _outcomes(seen) == [
        ("beads.ids", "member"),
        ("beads.ics", "ingested"),
        ("later.tif", "ingested"),
    ]
    assert summary.members == 1
    assert summary.ingested == 2
    member = seen[0]
    assert member.path == str(ids)
    assert member.bytes_done == ids.stat().st_size  # a member's size is counted as done
    total = ics.stat().st_size + ids.stat().st_size
    assert seen[1].bytes_done == ids.stat().st_size + total  # the set carries both files
    assert [e.members for e in sink.committed] == [("beads.ids",), ()]


def test_files_are_settled_by_their_age_from_now(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.tif"
    fresh.write_bytes(b"new")
    # by default nothing waits to settle: a file written just now is ingested
    assert ingest([fresh], ListSink()).ingested == 1
    half = tmp_path / "half.tif"
    half.write_bytes(b"half")
    then = time.time() - 0.5
    os.utime(half, (then, then))
    summary = ingest([half], ListSink(), settle_s=1.5)
    assert summary.ingested == 0
    assert summary.skipped[0][1].startswith("still being written (modified 0.")
    future = tmp_path / "future.tif"
    future.write_bytes(b"later")
    ahead = time.time() + 100
    os.utime(future, (ahead, ahead))
    skipped = ingest([future], ListSink(), settle_s=1).skipped
    assert skipped == [(str(future), "still being written (modified 0.0 s ago)")]


def test_a_sink_failing_its_check_is_a_failed_outcome(tmp_path: Path) -> None:
    bad = _old(tmp_path / "bad.tif")
    seen: list[IngestProgress] = []
    summary = ingest([bad], ListSink(fail_check={str(bad)}), progress=seen.append)
    assert _outcomes(seen) == [("bad.tif", "failed")]
    assert summary.failed == [(str(bad), "checking: database is down")]


def test_folder_images_are_one_item(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _old(root / "plate.zarr" / "zarr.json", b"{}")
    _old(root / "plate.zarr" / "0" / "c" / "0", b"chunk")
    _old(root / "cells.foo" / "a", b"a")
    seen: list[IngestProgress] = []
    sink = ListSink()
    summary = ingest([root], sink, progress=seen.append)
    items = sorted((os.path.relpath(p.path, root), p.outcome) for p in seen)
    assert items == [
        ("cells.foo/a", "ingested"),
        ("plate.zarr", "ingested"),
    ]
    # a folder image's own entry counts 0 bytes
    assert {(p.files_total, p.bytes_total) for p in seen} == {(2, 1)}
    assert summary.ingested == 2
    # folder suffixes given: those, and only those, are folder images
    seen.clear()
    ingest([root], ListSink(), progress=seen.append, dir_suffixes=frozenset({".foo"}))
    items = sorted((os.path.relpath(p.path, root), p.outcome) for p in seen)
    assert [name for name, _ in items] == ["cells.foo", "plate.zarr/0/c/0", "plate.zarr/zarr.json"]
    assert {(p.files_total, p.bytes_total) for p in seen} == {(3, 2 + 5)}


def test_the_runner_is_chosen_on_the_first_jobs_then_the_walk_goes_on(tmp_path: Path) -> None:
    files = [_old(tmp_path / f"f{n:02}.tif") for n in range(12)]
    present = str(files[10])
    seen: list[IngestProgress] = []
    sink = ListSink(runner=SerialRunner(), present={present})
    summary = ingest(files, sink, progress=seen.append)
    outcomes = _outcomes(seen)
    # nine jobs taken first; the present file (the 11th) is reached only after them
    assert outcomes == [
        *[(f"f{n:02}.tif", "ingested") for n in range(10)],
        ("f10.tif", "present"),
        ("f11.tif", "ingested"),
    ]
    assert summary.ingested == 11
    assert summary.runner == "in process"


def test_a_sink_that_does_not_use_the_cluster_runs_on_its_own_runner(tmp_path: Path) -> None:
    files = [_old(tmp_path / f"f{n}.tif") for n in range(3)]
    told: list[str | None] = []
    summary = ingest(files, ListSink(runner=ThreadRunner(2)), on_dashboard=told.append)
    assert summary.runner == "2 threads"
    assert told == [None]
    # a cluster sink's local runner is not used: the batch is small, so in process
    cluster = ListSink(uses_cluster=True, runner=ThreadRunner(2))
    assert ingest(files, cluster).runner == "in process"


def test_eight_jobs_left_run_here_whatever_else_was_walked(tmp_path: Path) -> None:
    files = [_old(tmp_path / f"f{n}.tif") for n in range(SMALL_BATCH + 3)]
    sink = ListSink(uses_cluster=True, present={str(f) for f in files[:3]})
    summary = ingest(files, sink)
    assert summary.present == 3
    assert summary.ingested == SMALL_BATCH
    assert summary.runner == "in process"  # 8 left to do: no cluster for them


def test_a_cluster_sink_runs_on_the_scheduler_given(tmp_path: Path) -> None:
    from distributed import LocalCluster

    files = [_old(tmp_path / f"f{n}.tif", b"x" * n) for n in range(1, 4)]
    with LocalCluster(
        processes=False,
        n_workers=1,
        threads_per_worker=1,
        host="127.0.0.1",
        scheduler_port=0,
        protocol="tcp",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        sink = ListSink(uses_cluster=True)
        summary = ingest(files, sink, scheduler=cluster.scheduler_address)
    assert summary.runner.startswith(f"dask.distributed at {cluster.scheduler_address}")
    assert sorted(e.path for e in sink.committed) == sorted(str(f) for f in files)


def test_a_large_batch_starts_a_local_cluster_with_the_dashboard_asked_for(tmp_path: Path) -> None:
    files = [_old(tmp_path / f"f{n:02}.tif") for n in range(SMALL_BATCH + 1)]
    told: list[str | None] = []
    summary = ingest(
        files,
        ListSink(uses_cluster=True),
        count_first=False,
        dashboard="127.0.0.1:0",
        on_dashboard=told.append,
    )
    assert summary.ingested == SMALL_BATCH + 1
    assert summary.runner != "in process"  # a LocalCluster (started, or still starting)
    assert len(told) == 1
    assert told[0] is not None
    assert told[0].startswith("http://127.0.0.1:")
