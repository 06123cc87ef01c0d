"""Readers on objects in a real S3 server, read in place by ranged GETs (no local copy).

The counts come from :func:`~zstack_analyzer.storage.remote.ranged_totals` and
each :class:`~zstack_analyzer.storage.remote.RangedFile`'s own counters: every
byte that crossed the wire from SeaweedFS, nothing simulated.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.synthetic_tiff import write_tiled_noise_ome_tiff
from zstack_analyzer import open_image
from zstack_analyzer.errors import CorruptFileError, UnsupportedFormatError
from zstack_analyzer.storage.remote import (
    RemoteObject,
    S3Location,
    S3Options,
    ranged_totals,
    store_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.s3server import S3Server

MiB = 1024 * 1024


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[tuple[S3Location, S3Options]]:
    import httpx

    name = s3_server.create_bucket()
    yield S3Location(name, "lab"), s3_server.options()
    # SeaweedFS gives each bucket 7 of its 1,000 volumes: a server shared by many tests (a
    # mutation run's, see tests/conftest.py) runs out unless they are given back.
    httpx.delete(f"{s3_server.endpoint}/{name}", timeout=30)


def put(bucket: tuple[S3Location, S3Options], name: str, data: bytes) -> RemoteObject:
    """Store ``data`` as ``images/<name>`` and describe it."""
    import obstore

    location, options = bucket
    obstore.put(store_for(location, options), f"images/{name}", data)
    return RemoteObject(location, options, f"images/{name}", name)


def test_ranged_file_reads_like_the_bytes(bucket: tuple[S3Location, S3Options]) -> None:
    data = os.urandom(3 * MiB + 123)
    obj = put(bucket, "blob.bin", data)
    rng = np.random.default_rng(1)
    with obj.open() as fh:
        assert fh.name == "blob.bin"  # what tifffile's and our messages name
        assert fh.size == len(data)
        assert fh.seek(0, io.SEEK_END) == len(data)
        for _ in range(40):
            start = int(rng.integers(0, len(data)))
            count = int(rng.choice([1, 17, 4096, 70_000, 300_000, MiB]))
            fh.seek(start)
            assert fh.read(count) == data[start : start + count]
        for _ in range(20):  # readinto, large (straight into the buffer) and small
            start = int(rng.integers(0, len(data)))
            into = bytearray(int(rng.choice([100, 300_000, 2 * MiB])))
            fh.seek(start)
            got = fh.readinto(into)
            assert got == min(len(into), len(data) - start)
            assert bytes(into[:got]) == data[start : start + got]
            assert fh.tell() == start + got
        fh.seek(len(data) - 5)
        buffer = bytearray(10)
        assert fh.readinto(buffer) == 5
        assert bytes(buffer[:5]) == data[-5:]
        assert fh.read() == b""
        # a prefetch of scattered ranges: one call, then those reads cost nothing
        ranges = [(i * 400_000, i * 400_000 + 50_000) for i in range(1, 7)]
        fh.prefetch(ranges)
        before = fh.requests
        for start, end in ranges:
            fh.seek(start)
            assert fh.read(end - start) == data[start:end]
        assert fh.requests == before
    assert "secret" not in repr(obj) and str(obj).startswith("s3://")


def test_missing_and_empty_objects(bucket: tuple[S3Location, S3Options]) -> None:
    location, options = bucket
    with pytest.raises(FileNotFoundError):
        open_image(RemoteObject(location, options, "images/none.tif", "none.tif"))
    with pytest.raises(CorruptFileError, match="empty"):
        open_image(put(bucket, "empty.tif", b""))


def test_open_image_on_a_remote_tiff_reads_only_what_it_needs(
    bucket: tuple[S3Location, S3Options], tmp_path: Path
) -> None:
    local = tmp_path / "stack.ome.tif"
    data = write_tiled_noise_ome_tiff(local)
    raw = local.read_bytes()
    obj = put(bucket, "ab12.ome.tif", raw)
    requests0, bytes0 = ranged_totals()
    with open_image(obj) as remote, open_image(local) as here:
        opened = ranged_totals()
        assert remote.format_name == here.format_name == "OME-TIFF"
        assert remote.path.name == "ab12.ome.tif"
        assert remote.scenes() == here.scenes()
        assert remote.metadata(0).physical_size == here.metadata(0).physical_size
        plane = remote.read_plane(0, 0, 1, 5)
        after = ranged_totals()
        np.testing.assert_array_equal(plane, data[1, 5])
        np.testing.assert_array_equal(plane, here.read_plane(0, 0, 1, 5))
        plane_bytes = after[1] - opened[1]
        plane_requests = after[0] - opened[0]
        # one plane is 1/16 of the stack: it costs about its own compressed bytes, in few GETs
        assert plane_bytes < len(raw) / 8, (plane_bytes, len(raw))
        assert plane_requests <= 3, plane_requests
        assert after[1] - bytes0 < len(raw) / 2, (after[1] - bytes0, len(raw))
        # a region touching two tiles of one plane
        region = remote.read_region(0, 0, 0, 2, (100, 200), (0, 480))
        np.testing.assert_array_equal(region, data[0, 2, 100:200])
        # pickling (dask) reopens from the descriptor, not from a local path
        clone = pickle.loads(pickle.dumps(remote))
        try:
            np.testing.assert_array_equal(clone.read_plane(0, 0, 0, 7), data[0, 7])
        finally:
            clone.close()
        np.testing.assert_array_equal(remote.to_dask(0)[0, 1].compute(), data[1])
    assert requests0 < ranged_totals()[0]


def test_truncated_remote_tiff_is_refused_as_corrupt(
    bucket: tuple[S3Location, S3Options], tmp_path: Path
) -> None:
    local = tmp_path / "cut.ome.tif"
    write_tiled_noise_ome_tiff(local, shape=(1, 4, 256, 256))
    raw = local.read_bytes()
    obj = put(bucket, "cut.ome.tif", raw[: len(raw) * 2 // 3])
    with pytest.raises(CorruptFileError):
        open_image(obj)


def test_a_remote_zipped_ome_zarr_reads_by_ranges(
    bucket: tuple[S3Location, S3Options], tmp_path: Path
) -> None:
    from zstack_analyzer.zarr.writer import convert

    local = tmp_path / "src.ome.tif"
    data = write_tiled_noise_ome_tiff(local, shape=(2, 4, 256, 256))
    folder = tmp_path / "cells.ome.zarr"
    convert(local, folder, ngff="0.5")
    archive = tmp_path / "cells.ome.zarr.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for item in sorted(folder.rglob("*")):
            if item.is_file():
                zf.write(item, item.relative_to(folder).as_posix())
    raw = archive.read_bytes()
    obj = put(bucket, "cd34.zip", raw)
    with open_image(obj) as remote:
        assert remote.format_name == "OME-Zarr"
        before = ranged_totals()
        np.testing.assert_array_equal(remote.read_plane(0, 0, 1, 3), data[1, 3])
        after = ranged_totals()
        # one plane is 1/8 of the zip: its chunk and the directory, in a few GETs
        assert after[1] - before[1] < len(raw) / 3, (after[1] - before[1], len(raw))
        assert after[0] - before[0] <= 6
        clone = pickle.loads(pickle.dumps(remote))
        try:
            np.testing.assert_array_equal(clone.read_plane(0, 0, 0, 0), data[0, 0])
        finally:
            clone.close()


def test_formats_that_need_a_local_file_are_named_not_misread(
    bucket: tuple[S3Location, S3Options],
) -> None:
    dicom_like = b"\0" * 128 + b"DICM" + os.urandom(2000)
    with pytest.raises(UnsupportedFormatError, match="local copy"):
        open_image(put(bucket, "x.dcm", dicom_like))
