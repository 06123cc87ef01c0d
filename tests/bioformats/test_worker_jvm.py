"""The worker's JVM side, through a real worker process: what ``open``, ``read``, ``formats``
and ``version`` answer, how Java's errors are classed, which files it keeps open, how it starts.

Why a pool of this module's own (not the process's warm one): a worker started once for the
whole session would never run another version of the worker's code, and these tests are
what mutation testing of ``worker.py`` runs (each variant needs a fresh worker). The values
expected are Bio-Formats' own (its ``FakeReader``, whose file name sets what it reports) or
an independent reader's (the library's native DeltaVision reader).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import pytest
from defusedxml import ElementTree as ET

from zstack_analyzer.errors import (
    CorruptFileError,
    LimitExceededError,
    UnsupportedFormatError,
)
from zstack_analyzer.readers.bioformats.pool import PoolOptions, WorkerPool
from zstack_analyzer.registry import open_reader

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.xdist_group("bioformats")

_OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


@pytest.fixture(scope="module")
def worker(bf_runtime: None) -> Iterator[WorkerPool]:
    """One worker of this module's own, 128 MiB of heap, a generous deadline (loaded machine)."""
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, timeout_s=90.0))
    pool.warm()
    yield pool
    pool.close()


def _fake(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"fake")
    return path


def _open(pool: WorkerPool, path: Path) -> dict[str, Any]:
    result: dict[str, Any] = pool.request(path, {"op": "open", "path": str(path)}).header["result"]
    return result


def _read(pool: WorkerPool, path: Path, **where: Any) -> bytes:
    request = {"op": "read", "path": str(path), "series": 0, "t": 0, "c": 0, "z": 0, **where}
    answer = pool.request(path, request)
    assert answer.header == {"ok": True, "nbytes": len(answer.payload or b"")}
    assert answer.payload is not None
    return answer.payload


def _open_files(pool: WorkerPool) -> list[str]:
    (pid,) = pool.pids()
    return [f.path for f in psutil.Process(pid).open_files()]


def test_open_describes_every_series_and_keeps_resolutions_inside_their_series(
    worker: WorkerPool, tmp_path: Path
) -> None:
    path = _fake(
        tmp_path,
        "m&series=2&sizeX=16&sizeY=8&sizeZ=3&sizeC=2&sizeT=4&pixelType=int16&resolutions=2.fake",
    )
    found = _open(worker, path)
    one = {
        "size_x": 16,
        "size_y": 8,
        "size_z": 3,
        "size_c": 2,
        "size_t": 4,
        "samples": 1,
        "pixel_type": "int16",
        "dtype": "int16",
        "little_endian": True,
        "interleaved": False,
        "tile_x": 16,  # a plane this small is one tile
        "tile_y": 8,
        "resolutions": 2,  # not flattened into series of their own
    }
    assert found["series"] == [one, one]
    assert found["format"] == "Simulated data"
    assert found["reader"] == "FakeReader"
    assert found["used_files"] == [str(path)]
    images = ET.fromstring(found["ome_xml"]).findall(f"{_OME}Image")
    assert len(images) == 2
    pixels = images[1].find(f"{_OME}Pixels")
    assert pixels is not None
    assert (pixels.get("SizeX"), pixels.get("SizeZ"), pixels.get("Type")) == ("16", "3", "int16")


@pytest.mark.parametrize(
    ("pixel_type", "dtype"),
    [("float", "float32"), ("double", "float64"), ("bit", "uint8"), ("int8", "int8")],
)
def test_pixel_types_byte_order_and_samples(
    worker: WorkerPool, tmp_path: Path, pixel_type: str, dtype: str
) -> None:
    name = f"p&pixelType={pixel_type}&little=false&interleaved=true&rgb=3&sizeC=3&sizeX=64.fake"
    (series,) = _open(worker, _fake(tmp_path, name))["series"]
    assert (series["pixel_type"], series["dtype"]) == (pixel_type, dtype)
    assert series["little_endian"] is False and series["interleaved"] is True
    assert (series["samples"], series["size_c"]) == (3, 1)  # one RGB channel of 3 samples
    assert series["tile_x"] == 64 and 1 <= series["tile_y"] <= 512


def test_used_files_name_the_companion_too(worker: WorkerPool, testdata_more: Path) -> None:
    path = testdata_more / "ics" / "testim.ics"
    assert _open(worker, path)["used_files"] == [str(path), str(path.with_suffix(".ids"))]


def test_read_returns_the_plane_asked_for(worker: WorkerPool, testdata_more: Path) -> None:
    path = testdata_more / "dv" / "toxo.dv"
    (series,) = _open(worker, path)["series"]
    assert (series["size_c"], series["size_z"], series["dtype"]) == (2, 17, "uint16")
    dtype = np.dtype("<u2" if series["little_endian"] else ">u2")
    with open_reader(path) as native:  # the library's own DeltaVision reader
        for c, z in [(0, 0), (1, 0), (0, 9), (1, 16)]:
            got = np.frombuffer(_read(worker, path, c=c, z=z, region=[0, 0, 128, 128]), dtype)
            plane = native.read_plane(0, 0, c, z)
            np.testing.assert_array_equal(got.reshape(128, 128), plane)
        region = _read(worker, path, c=1, z=3, region=[10, 20, 30, 5])
        np.testing.assert_array_equal(
            np.frombuffer(region, dtype).reshape(5, 30), native.read_plane(0, 0, 1, 3)[20:25, 10:40]
        )


def test_read_picks_the_series(worker: WorkerPool, tmp_path: Path) -> None:
    path = _fake(tmp_path, "s&series=2&sizeX=6&sizeY=2&sizeZ=3&sizeT=2&pixelType=uint8.fake")
    first = _read(worker, path, series=0, t=1, z=2, region=[0, 0, 6, 2])
    second = _read(worker, path, series=1, t=1, z=2, region=[0, 0, 6, 2])
    assert len(first) == len(second) == 12
    assert first != second  # FakeReader draws each series apart


def test_java_errors_are_unsupported_corrupt_or_missing(worker: WorkerPool, tmp_path: Path) -> None:
    unknown = tmp_path / "notes.xyz"
    unknown.write_bytes(b"hello" * 20)
    with pytest.raises(UnsupportedFormatError) as unsupported:
        _open(worker, unknown)
    assert unsupported.value.detail.startswith("loci.formats.UnknownFormatException: ")
    junk = tmp_path / "notes.dm3"
    junk.write_bytes(b"hello" * 20)
    with pytest.raises(CorruptFileError) as corrupt:
        _open(worker, junk)
    assert corrupt.value.detail == "loci.formats.FormatException: invalid header"
    folder = tmp_path / "folder.dm3"  # Java cannot open it: its FileNotFoundException
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=r"folder\.dm3: no such file"):
        _open(worker, folder)
    fake = _fake(tmp_path, "f&sizeX=6&sizeY=2.fake")
    with pytest.raises(CorruptFileError) as outside:
        _read(worker, fake, region=[0, 0, 60, 2])
    assert outside.value.detail == (
        "loci.formats.FormatException: Invalid tile size: x=0, y=0, w=60, h=2"
    )
    with pytest.raises(CorruptFileError) as series:
        _read(worker, fake, series=5, region=[0, 0, 6, 2])
    assert series.value.detail.startswith("java.lang.IllegalArgumentException: Invalid series: 5")
    assert _read(worker, fake, region=[0, 0, 6, 2])  # the worker still answers


def test_formats_and_version_are_the_jars(worker: WorkerPool) -> None:
    table = json.loads(
        resources.files("zstack_analyzer.readers.bioformats").joinpath("formats.json").read_text()
    )
    here = Path(__file__)
    assert worker.request(here, {"op": "formats"}).header["result"] == table["readers"]
    assert worker.request(here, {"op": "version"}).header["result"] == table["bioformats_version"]


def test_a_file_is_opened_again_when_its_size_or_time_changes_only(
    worker: WorkerPool, testdata_more: Path, tmp_path: Path
) -> None:
    path = tmp_path / "ball.nrrd"
    source = testdata_more / "nrrd" / "BallBinary30x30x30.nrrd"
    shutil.copyfile(source, path)
    text = source.read_bytes()
    assert b"space directions: (1,0,0)" in text

    def size_x_um() -> str | None:
        pixels = ET.fromstring(_open(worker, path)["ome_xml"]).find(f"{_OME}Image/{_OME}Pixels")
        assert pixels is not None
        return pixels.get("PhysicalSizeX")

    assert size_x_um() == "1.0"
    before = path.stat()
    # Same size, same time: the open reader answers (setId is what costs).
    path.write_bytes(text.replace(b"space directions: (1,0,0)", b"space directions: (2,0,0)"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert size_x_um() == "1.0"
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # touched
    assert size_x_um() == "2.0"
    # Another size (same time): opened again too.
    after = path.stat()
    path.write_bytes(text.replace(b"space directions: (1,0,0)", b"space directions: (30,0,0)"))
    os.utime(path, ns=(after.st_atime_ns, after.st_mtime_ns))
    assert size_x_um() == "30.0"
    # The readers of the old versions were closed: the worker holds the file once.
    assert _open_files(worker).count(str(path)) == 1


def test_the_four_files_used_last_stay_open(
    worker: WorkerPool, testdata_more: Path, tmp_path: Path
) -> None:
    source = testdata_more / "nrrd" / "BallBinary30x30x30.nrrd"
    paths = []
    for name in "abcde":
        paths.append(tmp_path / f"{name}.nrrd")
        shutil.copyfile(source, paths[-1])
    a, b, c, d, e = (str(p) for p in paths)
    for path in paths[:4]:
        _open(worker, path)
    _open(worker, paths[0])  # a is used again: b is now the least recent
    _open(worker, paths[4])
    held = {f for f in _open_files(worker) if f.startswith(str(tmp_path))}
    assert held == {a, c, d, e}
    # b opens again (it was closed), and the least recent, c, is closed for it.
    _open(worker, paths[1])
    held = {f for f in _open_files(worker) if f.startswith(str(tmp_path))}
    assert held == {a, b, d, e}


def test_a_jar_without_bioformats_fails_the_start_and_every_retry(
    bf_runtime: None, tmp_path: Path
) -> None:
    jar = tmp_path / "other.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr("README", "not Bio-Formats")
    pool = WorkerPool(PoolOptions(workers=1, heap_mb=128, jar=str(jar)))
    path = _fake(tmp_path, "a.fake")
    try:
        for _ in range(2):  # the failed start freed its place: the retry starts again
            with pytest.raises(CorruptFileError) as info:
                pool.request(path, {"op": "open", "path": str(path)})
            assert str(info.value) == (
                "Bio-Formats worker did not start: Class loci.formats.ImageReader is not found"
            )
            assert info.value.path == path
            assert pool.pids() == [] and pool._live == 0
    finally:
        pool.close()


def test_a_plane_larger_than_the_heap_ends_the_worker_not_the_pool(
    worker: WorkerPool, tmp_path: Path
) -> None:
    # Last in this module: it restarts the module's worker.
    big = _fake(tmp_path, "big&sizeX=12000&sizeY=12000&pixelType=uint16.fake")  # 275 MiB plane
    _open(worker, big)
    (pid,) = worker.pids()
    # A session of its own: a terminal's Ctrl-C reaches the server, which ends its workers.
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid
    # Its input and output are nobody's: the JVM's "Terminating due to
    # java.lang.OutOfMemoryError" below is not written into the server's log.
    assert [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)] == ["/dev/null"] * 3
    with pytest.raises(LimitExceededError) as info:
        _read(worker, big, region=[0, 0, 12000, 12000])
    assert str(info.value) == (
        f"{big.name}: reading it exhausted the Bio-Formats worker's heap (128 MiB); "
        "the worker was restarted"
    )
    assert info.value.path == big
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert len(_read(worker, big, region=[0, 0, 256, 128])) == 256 * 128 * 2
