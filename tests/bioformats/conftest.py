"""Fixtures of the Bio-Formats fallback tests: the runtime, one warm pool, testdata-more.

Why one pool per session: a JVM start costs seconds of CPU; every test here
shares the process's pool (its options are the service's defaults, so a
service test's app does not restart it). The modules mark themselves
``xdist_group("bioformats")`` so that under ``-n 2 --dist loadgroup`` they all
run in one worker process, which starts one JVM.
"""

from __future__ import annotations

import contextlib
import gc
from typing import TYPE_CHECKING, Any

import pytest

from tests.needs import unavailable
from tests.testdata_more import require_testdata_more

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from zstack_analyzer.readers.bioformats.pool import WorkerPool


@pytest.fixture(scope="session")
def testdata_more() -> Path:
    """The folder of long-tail files, or skip (fail on CI)."""
    return require_testdata_more()


@pytest.fixture(scope="session")
def bf_runtime() -> None:
    """Java, JPype1 and the jar are there, or skip (fail on CI)."""
    from zstack_analyzer.errors import MissingDependencyError
    from zstack_analyzer.readers.bioformats import pool_options, require_runtime

    try:
        require_runtime(pool_options().jar)
    except MissingDependencyError as exc:
        unavailable(str(exc))


@pytest.fixture
def bf_pool(bf_runtime: None) -> WorkerPool:
    """This process's pool, with one worker warm (started once; kept between tests).

    Function-scoped because a test may configure other options for a while
    (which replaces the process's pool); the next test gets the current one.
    """
    from zstack_analyzer.readers.bioformats import get_pool

    pool = get_pool()
    pool.warm(1)
    return pool


def sizes(reader: Any, scene: int = 0) -> tuple[int, ...]:
    """(T, C, Z, Y, X) of a reader's scene."""
    info = reader.scene_info(scene)
    return (info.size_t, info.size_c, info.size_z, info.size_y, info.size_x)


def _workers_started_here() -> set[int]:
    """Process ids of this process's Bio-Formats workers (children started by a pool)."""
    import psutil

    found = set()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "zstack_analyzer.readers.bioformats.worker" in child.cmdline():
                found.add(child.pid)
    return found


def _workers_of_pools() -> set[int]:
    """Process ids of the workers some pool still holds (idle ones: no request is running)."""
    from zstack_analyzer.readers.bioformats.pool import WorkerPool

    return {pid for obj in gc.get_objects() if isinstance(obj, WorkerPool) for pid in obj.pids()}


@pytest.fixture(autouse=True)
def no_worker_left_behind() -> Iterator[None]:
    """Fail a test after which a worker it started runs on that no pool holds, and end it.

    Why: such a worker (its pool lost its handle) holds a JVM heap until its socket is
    garbage-collected, and its Popen's "still running" warning then fails whatever test
    runs at that moment; ended here, it fails the test that leaked it and nothing later.
    """
    import psutil

    before = _workers_started_here()
    yield
    new = _workers_started_here() - before
    if not new:
        return
    leaked = sorted(new - _workers_of_pools())
    for pid in leaked:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            process.kill()
            process.wait(10)
    assert not leaked, f"Bio-Formats workers no pool holds were left running: {leaked}"
