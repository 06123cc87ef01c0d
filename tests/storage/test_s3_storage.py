"""The S3 backend against a real S3 server: multipart, ranges, cache, delete, sweep."""

from __future__ import annotations

import hashlib
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from zstack_analyzer.storage.s3 import S3Location, S3Storage

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.s3server import S3Server

MiB = 1024 * 1024


@pytest.fixture
def storage(s3_server: S3Server, tmp_path: Path) -> Iterator[S3Storage]:
    import httpx

    bucket = s3_server.create_bucket()
    options = s3_server.options(part_bytes=5 * MiB, max_concurrency=2)
    store = S3Storage(
        S3Location(bucket, "lab/originals"),
        options,
        tmp_dir=tmp_path / "tmp",
        cache_dir=tmp_path / "objects",
        cache_max_bytes=8 * MiB,
    )
    store.ensure_dirs()
    yield store
    # SeaweedFS gives each bucket 7 of its 1,000 volumes: a server shared by many tests (a
    # mutation run's, see tests/conftest.py) runs out unless they are given back.
    httpx.delete(f"{s3_server.endpoint}/{bucket}", timeout=30)


def _object_bytes(storage: S3Storage, name: str) -> bytes:
    size = storage.size(name)
    assert size is not None
    return b"".join(storage.iter_range(name, 0, size))


def test_mirror_is_a_multipart_upload_and_abort_leaves_nothing(storage: S3Storage) -> None:
    import obstore

    data = os.urandom(12 * MiB + 17)  # three parts of 5 MiB
    mirror = storage.open_mirror("a.ome.tif")
    for start in range(0, len(data), MiB):
        mirror.write(data[start : start + MiB])
    mirror.close()
    meta = obstore.head(storage.store, storage.key("a.ome.tif"))
    assert str(meta["e_tag"]).strip('"').endswith("-3")  # S3's multipart ETag: <md5>-<parts>
    assert (
        hashlib.sha256(_object_bytes(storage, "a.ome.tif")).digest()
        == hashlib.sha256(data).digest()
    )
    aborted = storage.open_mirror("b.tif")
    aborted.write(data)
    aborted.abort()
    assert storage.size("b.tif") is None
    assert [name for name, _ in storage.stored_objects()] == ["a.ome.tif"]


def test_ranges_and_a_seekable_ranged_file(storage: S3Storage, tmp_path: Path) -> None:
    import tifffile

    stack = (np.arange(6 * 64 * 80, dtype=np.uint32).reshape(6, 64, 80) * 13 % 65521).astype(
        np.uint16
    )
    local = tmp_path / "stack.tif"
    tifffile.imwrite(local, stack)
    temp = storage.temp_path("s.tif")
    temp.write_bytes(local.read_bytes())
    storage.commit(temp, "s.tif")
    raw = local.read_bytes()
    assert b"".join(storage.iter_range("s.tif", 100, 5000)) == raw[100:5000]
    assert b"".join(storage.iter_range("s.tif", len(raw) - 3, len(raw))) == raw[-3:]
    # tifffile on the ranged file object: plane 4 without fetching the whole object
    with storage.remote_object("s.tif").open() as fh, tifffile.TiffFile(fh) as tif:
        np.testing.assert_array_equal(tif.pages[4].asarray(), stack[4])


def test_readers_get_a_cached_local_copy_within_the_bound(storage: S3Storage) -> None:
    blobs = {f"{i}.tif": os.urandom(3 * MiB) for i in range(4)}
    for name, data in blobs.items():
        temp = storage.temp_path(name)
        temp.write_bytes(data)
        storage.commit(temp, name)
    cached = sorted(p.name for p in storage.cache_dir.iterdir())
    assert sum((storage.cache_dir / n).stat().st_size for n in cached) <= 8 * MiB
    assert "3.tif" in cached  # the newest stays
    evicted = next(name for name in blobs if name not in cached)
    path = storage.path(evicted)  # fetched again from the bucket
    assert path.read_bytes() == blobs[evicted]
    assert path.parent == storage.cache_dir
    assert not list(storage.tmp_dir.iterdir())  # no partial fetch left


def test_remove_deletes_object_and_copy(storage: S3Storage) -> None:
    temp = storage.temp_path("gone.czi")
    temp.write_bytes(b"x" * 1000)
    storage.commit(temp, "gone.czi")
    assert storage.path("gone.czi").is_file()
    assert storage.remove("gone.czi") is True
    assert storage.size("gone.czi") is None
    assert not (storage.cache_dir / "gone.czi").exists()
    assert storage.remove("gone.czi") is False


def test_remove_from_a_missing_bucket_is_storage_unavailable(
    s3_server: S3Server, storage: S3Storage
) -> None:
    """A delete whose bucket is gone (renamed, deleted, wrong config) is an outage, not a 500.

    S3 answers a delete of a missing key with success, so the 404 obstore raises
    as ``FileNotFoundError`` here means the bucket itself is missing; the delete
    route keeps the record's deletion and leaves the object to the sweep only
    for :class:`StorageUnavailableError`.
    """
    import httpx

    from zstack_analyzer.storage.base import StorageUnavailableError

    missing = S3Storage(
        S3Location(f"{storage.location.bucket}-gone", "lab/originals"),
        s3_server.options(),
        tmp_dir=storage.tmp_dir,
        cache_dir=storage.cache_dir,
        cache_max_bytes=MiB,
    )
    assert (
        httpx.head(f"{s3_server.endpoint}/{missing.location.bucket}", timeout=30).status_code == 404
    )
    with pytest.raises(StorageUnavailableError, match="object storage"):
        missing.remove("any.czi")


def test_sweep_removes_objects_without_a_row(storage: S3Storage) -> None:
    for name in ("kept.tif", "orphan.tif"):
        temp = storage.temp_path(name)
        temp.write_bytes(b"y" * 100)
        storage.commit(temp, name)
    (storage.tmp_dir / "half.upload").write_bytes(b"z")
    young = storage.sweep({"kept.tif"}, grace_seconds=3600)
    assert young.orphan_files == [] and young.temp_files == []
    time.sleep(1.1)  # S3 timestamps have one-second resolution
    report = storage.sweep({"kept.tif"})
    assert report.orphan_files == ["orphan.tif"]
    assert report.temp_files == ["half.upload"]
    assert [name for name, _ in storage.stored_objects()] == ["kept.tif"]
    assert storage.size("kept.tif") == 100
