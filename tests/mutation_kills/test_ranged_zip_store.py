"""A zipped OME-Zarr in a real S3 bucket (SeaweedFS), read by ``RangedZipStore`` (``zarr/ranged_zip.py``).

Why these: dask ships a remote OME-Zarr's arrays to its workers by pickling them, store
and all; the store must travel as its :class:`~zstack_analyzer.storage.remote.RemoteObject`
(its open ranged file cannot be pickled) and reopen the object by ranges where it lands.
The test on a LocalCluster of worker *processes* is that path end to end; the others pin
the store's own opening and closing.
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
from zstack_analyzer.storage.remote import RemoteObject, S3Location, store_for
from zstack_analyzer.zarr.ranged_zip import RangedZipStore

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.s3server import S3Server


@pytest.fixture(scope="module")
def zipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, np.ndarray]:
    """The bytes of a stored-zip OME-Zarr (NGFF 0.5) of C=2, Z=3 noise planes, and its pixels."""
    from zstack_analyzer.zarr.writer import convert

    tmp = tmp_path_factory.mktemp("zip")
    data = write_tiled_noise_ome_tiff(tmp / "src.ome.tif", shape=(2, 3, 128, 96))
    folder = tmp / "cells.ome.zarr"
    convert(tmp / "src.ome.tif", folder, ngff="0.5")
    archive = tmp / "cells.ome.zarr.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for item in sorted(folder.rglob("*")):
            if item.is_file():
                zf.write(item, item.relative_to(folder).as_posix())
    return archive.read_bytes(), data


@pytest.fixture
def stored(s3_server: S3Server, zipped: tuple[bytes, np.ndarray]) -> Iterator[RemoteObject]:
    """The zip as ``images/ab.zip`` in a fresh bucket (given back afterwards)."""
    import httpx
    import obstore

    name = s3_server.create_bucket()
    location, options = S3Location(name, "lab"), s3_server.options()
    obstore.put(store_for(location, options), "images/ab.zip", zipped[0])
    yield RemoteObject(location, options, "images/ab.zip", "ab.zip")
    httpx.delete(f"{s3_server.endpoint}/{name}", timeout=30)


def test_a_remote_zarr_computes_on_worker_processes(
    stored: RemoteObject, zipped: tuple[bytes, np.ndarray]
) -> None:
    """The dask graph (zarr arrays over this store) is pickled to a worker process and read there."""
    from distributed import Client, LocalCluster

    data = zipped[1]
    with (
        open_image(stored) as image,
        LocalCluster(
            processes=True,
            n_workers=1,
            threads_per_worker=1,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        here = client.compute(image.to_dask(0)[0, 1]).result(timeout=120)
        np.testing.assert_array_equal(here, data[1])
        workers = client.run(os.getpid)
        assert os.getpid() not in workers.values()  # the graph crossed to another process


def test_a_pickled_store_reopens_the_object_by_its_own_ranges(
    stored: RemoteObject, zipped: tuple[bytes, np.ndarray]
) -> None:
    raw = zipped[0]
    store = RangedZipStore(stored)
    store._sync_open()
    try:
        first = store._ranged
        assert first is not None
        names = store._zf.namelist()
        clone = pickle.loads(pickle.dumps(store))
        try:
            assert clone.source == stored
            assert clone._ranged is not None
            assert clone._ranged is not first
            assert clone._ranged.requests >= 1  # it read the directory itself, by ranges
            assert clone._zf.namelist() == names
            # a member's bytes through the clone are the zip's own
            info = clone._zf.getinfo(names[-1])
            with zipfile.ZipFile(io.BytesIO(raw)) as local:
                assert clone._zf.read(info) == local.read(names[-1])
        finally:
            clone.close()
        assert not first.closed  # the original's file is its own
    finally:
        store.close()
    assert first.closed


def test_a_store_opens_once_and_closes_its_ranged_file(stored: RemoteObject) -> None:
    never_opened = RangedZipStore(stored)
    never_opened.close()  # nothing was opened: nothing to close, no error
    store = RangedZipStore(stored)
    assert store.path.name == "ab.zip"
    assert not store._is_open
    store._sync_open()
    assert store._is_open is True
    with pytest.raises(ValueError, match=r"^store is already open$"):
        store._sync_open()
    ranged = store._ranged
    assert ranged is not None
    store.close()
    assert ranged.closed
    assert not store._is_open
