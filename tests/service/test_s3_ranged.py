"""The service reading originals in place from a real S3 server (ranged GETs, no local copy).

Each server here runs with ``object_cache_max_bytes=0`` and the upload's cached
copy is removed, as a busy server evicts it or another machine never had it.
A reference server with local storage renders the same pictures, which must
be byte-identical.
"""

from __future__ import annotations

import importlib.util
import zipfile
from typing import TYPE_CHECKING, Any

import pytest

from tests.needs import unavailable
from tests.service.conftest import upload
from tests.service.live import make_settings
from tests.service.test_s3_service import bucket_of, s3_settings
from tests.synthetic_tiff import write_tiled_noise_ome_tiff
from zstack_analyzer.storage.remote import ranged_totals

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient

    from tests.s3server import S3Server


@pytest.fixture
def ranged_client(
    s3_server: S3Server, tmp_path: Path, make_client: Callable[..., TestClient]
) -> TestClient:
    settings = s3_settings(s3_server, tmp_path / "data", storage={"object_cache_max_bytes": 0})
    return make_client(settings)


@pytest.fixture
def local_client(tmp_path: Path, make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(make_settings(tmp_path / "local"))


def _evict(client: TestClient) -> None:
    """Drop the upload's cached copy (the commit keeps it until the next fill evicts it)."""
    for copy in bucket_of(client).cache_dir.iterdir():
        copy.unlink()


def _no_local_copy(client: TestClient) -> None:
    storage = bucket_of(client)
    assert not [p for p in storage.cache_dir.iterdir() if p.is_file()]
    assert not [p for p in storage.tmp_dir.iterdir() if p.name.endswith(".fetch")]


def _get(client: TestClient, url: str, **params: Any) -> bytes:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.content


def test_tiff_renders_from_the_bucket_by_ranges(
    ranged_client: TestClient, local_client: TestClient, tmp_path: Path
) -> None:
    path = tmp_path / "cells.ome.tif"
    write_tiled_noise_ome_tiff(path, (2, 12, 512, 480))
    size = path.stat().st_size
    remote_id = upload(ranged_client, path).json()["id"]
    local_id = upload(local_client, path).json()["id"]
    _evict(ranged_client)

    before = ranged_totals()
    thumb = _get(ranged_client, f"/api/images/{remote_id}/thumbnail", z_slice=7, width=96)
    after = ranged_totals()
    assert thumb == _get(local_client, f"/api/images/{local_id}/thumbnail", z_slice=7, width=96)
    requests, fetched = after[0] - before[0], after[1] - before[1]
    # open (header, 24 IFDs, OME-XML) + one plane of 24: far less than the object
    assert fetched < size / 4, (fetched, size)
    assert requests <= 24 + 10, requests

    before = ranged_totals()
    plane = _get(ranged_client, f"/api/images/{remote_id}/slice/3", channels="1")
    assert plane == _get(local_client, f"/api/images/{local_id}/slice/3", channels="1")
    assert ranged_totals()[1] - before[1] < size / 4
    _no_local_copy(ranged_client)

    # metadata of a scene, histogram and the virtual OME-Zarr, all by ranges
    histogram = ranged_client.get(f"/api/images/{remote_id}/histogram", params={"z": 2})
    assert histogram.status_code == 200
    assert (
        histogram.json()
        == local_client.get(f"/api/images/{local_id}/histogram", params={"z": 2}).json()
    )
    attrs = ranged_client.get(f"/api/images/{remote_id}/zarr/.zattrs")
    assert attrs.status_code == 200 and "multiscales" in attrs.json()
    chunk = _get(ranged_client, f"/api/images/{remote_id}/zarr/0/0/0/1/4/0/0")
    assert chunk == _get(local_client, f"/api/images/{local_id}/zarr/0/0/0/1/4/0/0")
    meta = ranged_client.get(f"/api/images/{remote_id}/metadata")
    assert meta.status_code == 200 and meta.json()["size_z"] == 12
    _no_local_copy(ranged_client)
    # downloads still stream the object
    assert _get(ranged_client, f"/api/images/{remote_id}/download") == path.read_bytes()


def zipped_ome_zarr(folder: Path) -> Path:
    """``cells.ome.zarr.zip``: a 2 x 6 x 256 x 256 OME-Zarr (NGFF 0.5) zipped as uploaded."""
    from zstack_analyzer.zarr.writer import convert

    source = folder / "src.ome.tif"
    write_tiled_noise_ome_tiff(source, (2, 6, 256, 256))
    zarr_dir = folder / "cells.ome.zarr"
    convert(source, zarr_dir, ngff="0.5")
    archive = folder / "cells.ome.zarr.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for item in sorted(zarr_dir.rglob("*")):
            if item.is_file():
                zf.write(item, f"cells.ome.zarr/{item.relative_to(zarr_dir).as_posix()}")
    return archive


def test_zipped_ome_zarr_renders_from_the_bucket_by_ranges(
    ranged_client: TestClient, local_client: TestClient, tmp_path: Path
) -> None:
    archive = zipped_ome_zarr(tmp_path)
    size = archive.stat().st_size
    response = upload(ranged_client, archive)
    assert response.status_code == 201, response.text
    assert response.json()["image_stack"]["format"] == "OME-Zarr"
    remote_id = response.json()["id"]
    local_id = upload(local_client, archive).json()["id"]
    _evict(ranged_client)

    before = ranged_totals()
    thumb = _get(ranged_client, f"/api/images/{remote_id}/thumbnail", z_slice=4, width=64)
    assert ranged_totals()[1] - before[1] < size / 3, (ranged_totals()[1] - before[1], size)
    assert thumb == _get(local_client, f"/api/images/{local_id}/thumbnail", z_slice=4, width=64)
    plane = _get(ranged_client, f"/api/images/{remote_id}/slice/2", channels="0")
    assert plane == _get(local_client, f"/api/images/{local_id}/slice/2", channels="0")
    chunk = _get(ranged_client, f"/api/images/{remote_id}/zarr/0/0/0/1/5/0/0")
    assert chunk == _get(local_client, f"/api/images/{local_id}/zarr/0/0/0/1/5/0/0")
    _no_local_copy(ranged_client)


def test_a_czi_still_reads_through_the_local_cache(
    s3_server: S3Server, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    if importlib.util.find_spec("pylibCZIrw") is None:
        unavailable("pylibCZIrw (the czi extra) is not installed")
    from tests.synthetic_czi import write_czi_stack

    client = make_client(s3_settings(s3_server, tmp_path / "data"))
    path = tmp_path / "cells.czi"
    write_czi_stack(path, c=2, z=3)
    image_id = upload(client, path).json()["id"]
    storage = bucket_of(client)
    for copy in storage.cache_dir.iterdir():
        copy.unlink()
    before = ranged_totals()
    _get(client, f"/api/images/{image_id}/slice/1", channels="1")
    assert ranged_totals() == before  # no ranged reads: a local copy
    assert [p.suffix for p in storage.cache_dir.iterdir()] == [".czi"]


def test_a_tiff_in_the_cache_is_read_locally(
    s3_server: S3Server, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(s3_settings(s3_server, tmp_path / "data"))
    path = tmp_path / "cells.ome.tif"
    write_tiled_noise_ome_tiff(path, (1, 3, 128, 128))
    image_id = upload(client, path).json()["id"]
    before = ranged_totals()
    _get(client, f"/api/images/{image_id}/slice/1")
    assert ranged_totals() == before  # the upload's copy is in the cache: no GET


def test_a_corrupt_object_is_a_422_not_a_500(ranged_client: TestClient, tmp_path: Path) -> None:
    import obstore

    path = tmp_path / "cells.ome.tif"
    write_tiled_noise_ome_tiff(path, (1, 4, 256, 256))
    raw = path.read_bytes()
    image_id = upload(ranged_client, path).json()["id"]
    _evict(ranged_client)
    storage = bucket_of(ranged_client)
    (name, _), *_ = storage.stored_objects()
    # the object cut short behind the record's back (a bad copy, a bucket restore)
    obstore.put(storage.store, storage.key(name), raw[: len(raw) // 2])
    response = ranged_client.get(f"/api/images/{image_id}/slice/3")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert name not in response.text  # the user's filename, never our storage name
    assert "cells.ome.tif" in response.json()["detail"]


def test_concurrent_reads_of_one_remote_tiff_match_local(
    ranged_client: TestClient, local_client: TestClient, tmp_path: Path
) -> None:
    """Chunks and slices of one object asked for at once share its open reader safely."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "cells.ome.tif"
    write_tiled_noise_ome_tiff(path, (2, 6, 256, 256))
    remote_id = upload(ranged_client, path).json()["id"]
    local_id = upload(local_client, path).json()["id"]
    _evict(ranged_client)
    urls = [f"zarr/0/0/0/{c}/{z}/0/0" for c in range(2) for z in range(6)]
    urls += [f"slice/{z}?channels={c}" for c in range(2) for z in range(6)]

    def fetch(client: TestClient, image_id: str, url: str) -> bytes:
        response = client.get(f"/api/images/{image_id}/{url}")
        assert response.status_code == 200, (url, response.text)
        return response.content

    with ThreadPoolExecutor(8) as pool:
        remote = list(pool.map(lambda url: fetch(ranged_client, remote_id, url), urls * 2))
    local = [fetch(local_client, local_id, url) for url in urls * 2]
    assert remote == local
    _no_local_copy(ranged_client)
