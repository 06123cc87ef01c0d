"""Where batch work runs (``batch/runner.py``) and thumbnails of many files (``batch/many.py``).

Real runners on real work: the in-process and thread runners, a dask cluster in this
process (threads, loopback, free ports) reached as a scheduler address, and one
LocalCluster of worker processes taking over from this process. How many items a runner
takes from the stream before the first result is how its bounded window shows.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests.batch.conftest import make_archive
from zstack_analyzer.batch.runner import (
    SMALL_BATCH,
    DaskRunner,
    SerialRunner,
    StartingRunner,
    ThreadRunner,
    open_runner,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class Counted:
    """An item stream that counts how many items were taken from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.taken += 1
            yield i


def _square(x: int) -> int:
    if x == 7:
        msg = "item 7 is bad"
        raise ValueError(msg)
    return x * x


def _pid_and_trim(seconds: float) -> tuple[int, str | None]:
    time.sleep(seconds)
    return os.getpid(), os.environ.get("MALLOC_TRIM_THRESHOLD_")


@pytest.fixture
def in_process_cluster() -> Iterator[str]:
    """A dask scheduler and a worker of 2 threads in this process, on loopback free ports."""
    from distributed import LocalCluster

    with LocalCluster(
        processes=False,
        n_workers=1,
        threads_per_worker=2,
        host="127.0.0.1",
        scheduler_port=0,
        protocol="tcp",
        # no dashboard (never dask's default 8787): its HTTP server on a free port
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        yield cluster.scheduler_address


def test_serial_runner_runs_each_item_in_order_here() -> None:
    runner = SerialRunner()
    assert runner.description == "in process"
    assert list(runner.map_unordered(_square, [3, 1, 2])) == [(3, 9), (1, 1), (2, 4)]


def test_thread_runner_keeps_twice_its_threads_in_flight() -> None:
    runner = ThreadRunner(2)
    assert runner.description == "2 threads"
    assert ThreadRunner(0).description == "1 threads"
    items = Counted(20)
    results = runner.map_unordered(_square, (i for i in items if i != 7))
    first = next(results)
    assert items.taken == 4  # 2 x 2 threads submitted before waiting for one
    rest = dict([first, *results])
    assert rest == {i: i * i for i in range(20) if i != 7}
    assert list(ThreadRunner(3).map_unordered(_square, [])) == []
    with pytest.raises(ValueError, match="item 7 is bad"):
        dict(ThreadRunner(1).map_unordered(_square, range(9)))


def test_thread_runner_uses_its_threads() -> None:
    barrier = threading.Barrier(3, timeout=30)

    def meet(i: int) -> int:
        barrier.wait()  # only returns once 3 calls run at the same time
        return i

    assert sorted(i for i, _ in ThreadRunner(3).map_unordered(meet, range(3))) == [0, 1, 2]


def test_thread_runner_yields_each_result_as_it_comes() -> None:
    """A slow item does not hold back the others' results (nor does it run alongside more
    threads than asked for)."""
    released = threading.Event()

    def slow_first(i: int) -> tuple[bool, str]:
        name = threading.current_thread().name
        if i == 0:
            return released.wait(30), name
        return True, name

    results = ThreadRunner(2).map_unordered(slow_first, range(4))
    first, _ = next(results)
    assert first != 0  # a fast item came back while item 0 still waits
    released.set()
    outcomes = dict([(first, (True, "")), *results])
    assert outcomes[0][0] is True
    assert all(name.startswith("zstack-batch") for _, name in outcomes.values() if name)

    started = threading.Event()

    def alone(i: int) -> bool:
        if i == 0:
            return started.wait(2)  # item 1 would set it if it ran at the same time
        started.set()
        return True

    assert dict(ThreadRunner(1).map_unordered(alone, range(2))) == {0: False, 1: True}


def test_dask_runner_window_chunks_and_description(in_process_cluster: str) -> None:
    from distributed import Client

    with Client(in_process_cluster, set_as_default=False) as client:
        runner: DaskRunner[int] = DaskRunner(client)
        assert runner.description == f"dask.distributed at {in_process_cluster} (2 threads)"
        assert (runner.window, runner.chunk) == (8, 4)  # 4 x 2 threads, 4 files a task
        items = Counted(100)
        results = runner.map_unordered(abs, iter(items))
        first = next(results)
        assert items.taken == (8 + 1) * 4  # the window, then one more chunk per result
        assert dict([first, *results]) == {i: i for i in range(100)}
        small: DaskRunner[int] = DaskRunner(client, window=2, chunk=0)
        assert (small.window, small.chunk) == (2, 1)
        items = Counted(10)
        results = small.map_unordered(_square, iter(items))
        next(results)
        assert items.taken == 3
        results.close()
        assert list(small.map_unordered(_square, [])) == []
        with pytest.raises(ValueError, match="item 7 is bad"):
            dict(small.map_unordered(_square, range(9)))


def test_open_runner_in_process_up_to_a_small_batch() -> None:
    told: list[str | None] = ["unset"]
    with open_runner(expected=SMALL_BATCH, on_dashboard=told.append) as runner:
        assert isinstance(runner, SerialRunner)
    assert told == ["unset", None]
    with open_runner() as runner:
        assert isinstance(runner, SerialRunner)


def test_open_runner_on_a_scheduler_says_it_has_no_dashboard(
    in_process_cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A scheduler without a dashboard still runs an HTTP server (404 at ``/status``).

    It used to be told as the dashboard: ``dask dashboard: http://...:PORT/status``,
    a page that does not exist. Now: no dashboard.
    """
    _scheduler_without_dashboard(in_process_cluster, caplog)


def _scheduler_without_dashboard(in_process_cluster: str, caplog: pytest.LogCaptureFixture) -> None:
    told: list[str | None] = []
    caplog.set_level(logging.INFO, logger="zstack_analyzer.batch.runner")
    with open_runner(scheduler=in_process_cluster, expected=1, on_dashboard=told.append) as runner:
        assert isinstance(runner, DaskRunner)
        assert dict(runner.map_unordered(_square, [2, 3])) == {2: 4, 3: 9}
    assert told == [None]
    assert f"batch runs on dask.distributed at {in_process_cluster}" in caplog.text
    with open_runner(scheduler=in_process_cluster) as runner:  # nobody to tell
        assert isinstance(runner, DaskRunner)


def test_open_runner_on_a_scheduler_with_a_dashboard_says_where() -> None:
    from distributed import LocalCluster

    with LocalCluster(
        processes=False,
        n_workers=1,
        threads_per_worker=1,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
        protocol="tcp",
    ) as cluster:
        told: list[str | None] = []
        with open_runner(scheduler=cluster.scheduler_address, on_dashboard=told.append):
            pass
        assert len(told) == 1
        assert told[0] is not None
        assert told[0] == cluster.dashboard_link
        assert told[0].startswith("http://127.0.0.1:")


def test_a_local_cluster_takes_over_above_a_small_batch(caplog: pytest.LogCaptureFixture) -> None:
    """One worker process, one thread, without the nanny's fixed malloc trim threshold."""
    caplog.set_level(logging.INFO, logger="zstack_analyzer.batch.runner")
    here = os.getpid()
    told: list[str | None] = ["unset"]
    seen: list[tuple[int, str | None]] = []
    with open_runner(expected=SMALL_BATCH + 1, workers=1, on_dashboard=told.append) as runner:
        assert isinstance(runner, StartingRunner)
        assert runner.description == "in process (LocalCluster starting)"
        for _, (pid, trim) in runner.map_unordered(_pid_and_trim, [0.05] * 2400):  # 120 s
            seen.append((pid, trim))
            if pid != here:
                break
        assert seen[0][0] == here
        assert seen[-1][0] != here
        assert seen[-1][1] is None
        in_here = sum(1 for pid, _ in seen if pid == here)
        assert runner.in_process == in_here
        assert runner.description.startswith("LocalCluster dask.distributed at tcp://127.0.0.1:")
        assert runner.description.endswith(f"(1 threads); first {in_here} in process")
    assert told == ["unset", None]  # no dashboard asked for: none, and it is said so
    assert "batch runs on dask.distributed at tcp://127.0.0.1:" in caplog.text


def test_a_local_cluster_that_ends_before_the_start_has_run_nothing_there() -> None:
    with open_runner(expected=SMALL_BATCH + 1, workers=1) as runner:
        assert isinstance(runner, StartingRunner)
        assert list(runner.map_unordered(_square, [1, 2])) == [(1, 1), (2, 4)]
        assert runner.in_process == 2


# ------------------------------------------------------------------- thumbnails of many


def test_thumbnails_of_many_in_process(tmp_path: Path) -> None:
    from zstack_analyzer.batch import thumbnails_of_many
    from zstack_analyzer.batch.tasks import default_thumbnail_spec
    from zstack_analyzer.cache import RenderCache
    from zstack_analyzer.limits import ReadLimits

    files = make_archive(tmp_path / "archive", n=3)
    (tmp_path / "archive" / "empty.tif").write_bytes(b"")
    seen = []
    results = thumbnails_of_many([tmp_path / "archive"], tmp_path / "cache", progress=seen.append)
    assert sorted(r.path for r in results) == sorted(str(f) for f in files)
    assert seen == results
    assert all(r.status == "ok" and r.thumbnail_ready and r.pid == os.getpid() for r in results)
    cache = RenderCache(tmp_path / "cache")
    spec = default_thumbnail_spec()
    for result in results:
        picture = cache.get(result.sha256, spec.cache_key(result.sha256))
        assert picture is not None
        assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    # the limits given are the ones the files are read with
    tight = ReadLimits(max_plane_bytes=16)
    refused = thumbnails_of_many([files[0]], tmp_path / "cache2", limits=tight)
    assert [r.status for r in refused] == ["failed"]
    assert not (tmp_path / "cache2").exists() or not any((tmp_path / "cache2").rglob("*.png"))


def test_thumbnails_of_many_runs_here_when_told_the_batch_is_small(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from zstack_analyzer.batch import thumbnails_of_many

    caplog.set_level(logging.INFO, logger="zstack_analyzer.batch.runner")
    make_archive(tmp_path / "archive", n=SMALL_BATCH + 1)
    results = thumbnails_of_many([tmp_path / "archive"], tmp_path / "cache", expected=1)
    assert len(results) == SMALL_BATCH + 1
    assert {r.pid for r in results} == {os.getpid()}
    assert "batch runs on" not in caplog.text  # no cluster was started
    few = thumbnails_of_many([tmp_path / "archive" / "day0"], tmp_path / "cache")
    assert len(few) == 5
    assert "batch runs on" not in caplog.text  # 5 files: no cluster either


def test_thumbnails_of_many_on_the_scheduler_given(
    tmp_path: Path, in_process_cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    from zstack_analyzer.batch import thumbnails_of_many

    caplog.set_level(logging.INFO, logger="zstack_analyzer.batch.runner")
    make_archive(tmp_path / "archive", n=2)
    results = thumbnails_of_many(
        [tmp_path / "archive"], tmp_path / "cache", scheduler=in_process_cluster
    )
    assert sorted(r.status for r in results) == ["ok", "ok"]
    assert f"batch runs on dask.distributed at {in_process_cluster}" in caplog.text
