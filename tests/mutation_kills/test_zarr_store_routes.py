"""The virtual OME-Zarr over HTTP (``service/routes/zarr_store.py``), key by key.

What napari, vizarr and zarr rely on: each key's bytes and media type (JSON documents, the
OME-XML of a collection, raw chunks), a missing key answered 404 ``no_such_key`` (zarr
probes for optional keys), one ETag per key and view that a conditional request answers
with 304, the settings' Cache-Control, an in-place original that changed refused before any
ETag answer, the server's read limits applied to the file and the uploaded name (never the
stored one) in errors and scene titles. The open-file LRU is checked directly: one open file
per content, kept between requests, the oldest closed.

Real files of the shared corpus: a 5 t x 2 c x 5 z stack of 24 x 18 (one level) and an
unnamed 731 x 805 RGB TIFF (two levels, the lower one made into the render cache).
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.mutation_kills.service_db import _template
from tests.service.conftest import _testclient_class, upload
from tests.service.live import make_settings
from zstack_analyzer import open_image
from zstack_analyzer.cache import RenderCache
from zstack_analyzer.errors import LimitExceededError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.service.config import LimitsSettings, RenderSettings
from zstack_analyzer.service.routes.zarr_store import OpenStores

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

STACK = "ome-tiff/18x24y5z5t2c8b-text.ome.tiff"
RGB = "tiff/NikonTIF.tif"
SWATCH = "ome-tiff/6x4y1z1t1c8b-swatch-1s1p4w2ws.ome.tiff"
MAX_AGE = 123


def _start(data: Path, **overrides: Any) -> TestClient:
    """A started app on a copy of the migrated database (or on ``data`` as it is)."""
    from zstack_analyzer.service.app import create_app

    if not (data / "zstack.db").exists():
        data.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template(), data / "zstack.db")
    values: dict[str, Any] = {
        "render": RenderSettings(thumbnail_on_upload=False, max_age_seconds=MAX_AGE),
    }
    values.update(overrides)
    return _testclient_class()(create_app(make_settings(data, **values)))


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    return root


@pytest.fixture
def client(tmp_path: Path, roots: Path) -> Iterator[TestClient]:
    with _start(tmp_path / "data", import_roots=[roots]) as started:
        yield started


def _upload(client: TestClient, path: Path, name: str | None = None) -> dict[str, Any]:
    answer = upload(client, path, name)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _problem(answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["code"] == code, body
    return str(body["detail"])


def _plane(path: Path, t: int, c: int, z: int) -> bytes:
    with open_image(path) as reader:
        return np.asarray(reader.to_dask(0)[t, c, z].compute()).astype("<u1").tobytes()


def _etag(answer: Any) -> str:
    etag = str(answer.headers["etag"])
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, etag
    return etag


def test_scene_zero_keys_media_types_and_pixels(client: TestClient, testdata: Path) -> None:
    source = testdata / STACK
    image_id = _upload(client, source)["id"]
    url = f"/api/images/{image_id}/zarr"

    attrs = client.get(f"{url}/.zattrs")
    assert attrs.status_code == 200, attrs.text
    assert attrs.headers["content-type"] == "application/json"
    assert attrs.headers["cache-control"] == f"private, max-age={MAX_AGE}"
    multiscale = attrs.json()["multiscales"][0]
    assert [d["path"] for d in multiscale["datasets"]] == ["0/0"]
    assert "bioformats2raw.layout" not in attrs.json()  # scene 0, not the collection

    array = client.get(f"{url}/0/0/.zarray")
    assert array.headers["content-type"] == "application/json"
    assert array.json()["shape"] == [5, 2, 5, 24, 18]

    chunk = client.get(f"{url}/0/0/1/1/2/0/0")
    assert chunk.status_code == 200, chunk.text
    assert chunk.headers["content-type"] == "application/octet-stream"
    assert chunk.content == _plane(source, 1, 1, 2)
    assert chunk.headers["cache-control"] == f"private, max-age={MAX_AGE}"
    assert client.get(f"{url}/0/0/0/1/2/0/0").content == _plane(source, 0, 1, 2)

    # Slashes around a key are not part of it: the same document, the same ETag.
    again = client.get(f"{url}/0/0/.zarray/")
    assert again.status_code == 200, again.text
    assert again.content == array.content
    assert _etag(again) == _etag(array)
    # The collection's documents are not at zarr/ (that is scene 0 alone).
    _problem(client.get(f"{url}/OME/METADATA.ome.xml"), 404, "no_such_key")


def test_missing_keys_and_unknown_images(client: TestClient, testdata: Path) -> None:
    image_id = _upload(client, testdata / STACK, "cells.ome.tiff")["id"]
    detail = _problem(client.get(f"/api/images/{image_id}/zarr/0/9/.zarray"), 404, "no_such_key")
    assert detail == "cells.ome.tiff: the OME-Zarr has no key '0/9/.zarray'"
    # Only slashes around a key are dropped: a near miss is still no key.
    detail = _problem(client.get(f"/api/images/{image_id}/zarr/0/0/.zarrayX"), 404, "no_such_key")
    assert detail == "cells.ome.tiff: the OME-Zarr has no key '0/0/.zarrayX'"
    detail = _problem(client.get(f"/api/images/{image_id}.ome.zarr/7/.zattrs"), 404, "no_such_key")
    assert detail == "cells.ome.tiff: the OME-Zarr has no key '7/.zattrs'"
    for url in (
        f"/api/images/{uuid.uuid4()}/zarr/.zattrs",
        f"/api/images/{uuid.uuid4()}.ome.zarr/.zattrs",
    ):
        _problem(client.get(url), 404, "image_not_found")


def test_collection_keys(client: TestClient, testdata: Path) -> None:
    source = testdata / STACK
    image_id = _upload(client, source)["id"]
    url = f"/api/images/{image_id}.ome.zarr"

    root = client.get(f"{url}/.zattrs")
    assert root.headers["content-type"] == "application/json"
    assert root.json() == {"bioformats2raw.layout": 3}
    xml = client.get(f"{url}/OME/METADATA.ome.xml")
    assert xml.status_code == 200, xml.text
    assert xml.headers["content-type"] == "application/xml"
    assert xml.content.startswith(b"<?xml") and b"<OME" in xml.content
    assert xml.headers["cache-control"] == f"private, max-age={MAX_AGE}"
    scene = client.get(f"{url}/0/.zattrs")
    assert scene.headers["content-type"] == "application/json"
    assert scene.json()["multiscales"][0]["datasets"][0]["path"] == "0"
    array = client.get(f"{url}/0/0/.zarray")
    assert array.headers["content-type"] == "application/json"
    assert array.json()["shape"] == [5, 2, 5, 24, 18]
    chunk = client.get(f"{url}/0/0/1/1/2/0/0")
    assert chunk.headers["content-type"] == "application/octet-stream"
    assert chunk.content == _plane(source, 1, 1, 2)

    # The same key in the two views is two documents, so two ETags.
    plain = client.get(f"/api/images/{image_id}/zarr/.zattrs")
    assert plain.content != root.content
    assert _etag(plain) != _etag(root)
    assert _etag(client.get(f"/api/images/{image_id}/zarr/0/0/1/1/2/0/0")) != _etag(chunk)


def test_etags_and_conditional_requests(client: TestClient, testdata: Path) -> None:
    first = _upload(client, testdata / STACK)["id"]
    again = _upload(client, testdata / STACK, "copy.ome.tiff")["id"]
    other = _upload(client, testdata / SWATCH)["id"]
    keys = (".zattrs", "0/0/.zarray", "0/0/0/0/0/0/0")
    etags = {key: _etag(client.get(f"/api/images/{first}/zarr/{key}")) for key in keys}
    assert len(set(etags.values())) == len(keys)  # one per key
    # The same bytes under another record: the same documents, the same ETags; other
    # content: others.
    for key in keys:
        assert _etag(client.get(f"/api/images/{again}/zarr/{key}")) == etags[key]
    assert _etag(client.get(f"/api/images/{other}/zarr/.zattrs")) != etags[".zattrs"]

    for view in ("zarr", ".ome.zarr"):
        url = (
            f"/api/images/{first}/zarr/0/0/.zarray"
            if view == "zarr"
            else f"/api/images/{first}.ome.zarr/0/0/.zarray"
        )
        etag = _etag(client.get(url))
        cached = client.get(url, headers={"If-None-Match": etag})
        assert cached.status_code == 304
        assert cached.content == b""
        assert cached.headers["etag"] == etag
        assert cached.headers["cache-control"] == f"private, max-age={MAX_AGE}"
        stale = client.get(url, headers={"If-None-Match": '"0123456789abcdef0123456789abcdef"'})
        assert stale.status_code == 200
        assert stale.json()["shape"] == [5, 2, 5, 24, 18]


def test_an_unnamed_scene_is_called_by_the_uploaded_name(
    client: TestClient, testdata: Path
) -> None:
    image = _upload(client, testdata / RGB, "nikon cells.tif")
    assert image["id"]
    url = f"/api/images/{image['id']}"
    cache = client.app.state.cache  # type: ignore[attr-defined]
    before = cache.total_bytes()  # no thumbnail on upload: nothing of it yet
    attrs = client.get(f"{url}/zarr/.zattrs").json()
    assert attrs["multiscales"][0]["name"] == "nikon cells.tif"
    assert [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0/0", "0/1"]
    xml = client.get(f"{url}.ome.zarr/OME/METADATA.ome.xml").text
    assert 'Name="nikon cells.tif"' in xml
    assert client.get(f"{url}.ome.zarr/0/.zattrs").json()["multiscales"][0]["name"] == (
        "nikon cells.tif"
    )
    # The lower level, made from the file once, into the render cache.
    level = client.get(f"{url}/zarr/0/1/.zarray").json()
    chunk = client.get(f"{url}/zarr/0/1/0/0/0/0/0")
    assert chunk.status_code == 200, chunk.text
    assert len(chunk.content) == int(np.prod(level["chunks"])) * np.dtype(level["dtype"]).itemsize
    assert cache.total_bytes() >= before + len(chunk.content)


def test_open_files_are_kept_between_requests(client: TestClient, testdata: Path) -> None:
    image_id = _upload(client, testdata / STACK)["id"]
    assert client.get(f"/api/images/{image_id}/zarr/.zattrs").status_code == 200
    stores = client.app.state.zarr_stores  # type: ignore[attr-defined]
    assert isinstance(stores, OpenStores)
    assert client.get(f"/api/images/{image_id}/zarr/0/0/0/0/0/0/0").status_code == 200
    assert client.get(f"/api/images/{image_id}.ome.zarr/.zattrs").status_code == 200
    assert client.app.state.zarr_stores is stores  # type: ignore[attr-defined]


def test_a_changed_in_place_original_is_refused_before_any_etag(
    client: TestClient, roots: Path, testdata: Path
) -> None:
    source = roots / "stack.ome.tiff"
    shutil.copyfile(testdata / STACK, source)
    answer = client.post("/api/images/register", json={"path": str(source)})
    assert answer.status_code == 201, answer.text
    image_id = answer.json()["id"]
    urls = (
        f"/api/images/{image_id}/zarr/0/0/.zarray",
        f"/api/images/{image_id}.ome.zarr/0/0/.zarray",
        f"/api/images/{image_id}/tile/0/0/0",
    )
    etags = {}
    for url in urls:
        served = client.get(url)
        assert served.status_code == 200, served.text
        etags[url] = _etag(served)
        assert client.get(url, headers={"If-None-Match": etags[url]}).status_code == 304
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    for url in urls:
        detail = _problem(
            client.get(url, headers={"If-None-Match": etags[url]}), 409, "original_changed"
        )
        assert str(source) in detail


def test_the_servers_read_limits_apply_and_errors_name_the_upload(
    tmp_path: Path, testdata: Path
) -> None:
    data = tmp_path / "data"
    with _start(data) as client:
        image = _upload(client, testdata / STACK, "my cells.ome.tiff")
    stored = image["image_stack"].get("stored_name")
    # The same records under a server whose limits refuse 24-pixel axes.
    with _start(data, limits=LimitsSettings(max_dimension=20)) as client:
        url = f"/api/images/{image['id']}"
        for key in (f"{url}/zarr/0/0/0/0/0/0/0", f"{url}.ome.zarr/0/.zattrs", f"{url}/tile/0/0/0"):
            detail = _problem(client.get(key), 422, "limit_exceeded")
            assert detail.startswith("my cells.ome.tiff: "), detail
            assert "over the limit of 20" in detail
            if stored:
                assert stored not in detail


def _chunk(store: Any) -> bytes:
    data: bytes = store.get("0/0/0/0/0/0/0")
    return data


def test_open_stores_lru(tmp_path: Path, testdata: Path) -> None:
    cache = RenderCache(tmp_path / "cache")
    limits = ReadLimits()
    files = {}
    for name in ("a", "b", "c"):
        files[name] = tmp_path / f"{name}.ome.tiff"
        shutil.copyfile(testdata / STACK, files[name])
    stores = OpenStores(size=2)
    a = stores.get(files["a"], "a", cache, limits)
    assert a.cache is cache
    assert a.identity == "a"
    # Kept open: the file is not opened again (it may even be gone by now).
    files["a"].unlink()
    assert stores.get(files["a"], "a", cache, limits) is a
    b = stores.get(files["b"], "b", cache, limits)
    assert stores.get(files["a"], "a", cache, limits) is a  # a is now the newest
    c = stores.get(files["c"], "c", cache, limits)  # over the size: b, the oldest, goes
    assert b.reader.closed
    assert not a.reader.closed and not c.reader.closed
    assert _chunk(c) == _chunk(a) == _plane(testdata / STACK, 0, 0, 0)
    assert stores.get(files["b"], "b", cache, limits) is not b
    stores.close()
    assert a.reader.closed and c.reader.closed


def test_open_stores_of_one_apply_the_limits(tmp_path: Path, testdata: Path) -> None:
    stores = OpenStores(size=1)
    with pytest.raises(LimitExceededError, match="over the limit of 20"):
        stores.get(testdata / STACK, "x", RenderCache(tmp_path / "c"), ReadLimits(max_dimension=20))
    one = stores.get(testdata / STACK, "x", RenderCache(tmp_path / "c"), ReadLimits())
    assert not one.reader.closed
    assert _chunk(one) == _plane(testdata / STACK, 0, 0, 0)


def _stored_path(client: TestClient, image_id: str) -> Path:
    """Where local storage keeps the upload (``stored_name`` is never in an answer)."""
    from zstack_analyzer.service.db.models import Image

    app = client.app
    stored = app.state.database.call(  # type: ignore[attr-defined]
        lambda session: session.get(Image, uuid.UUID(image_id)).stored_name
    )
    path: Path = app.state.storage.path(stored)  # type: ignore[attr-defined]
    return path


def test_a_rendered_tile_is_served_from_the_render_cache_after_a_restart(
    tmp_path: Path, testdata: Path
) -> None:
    """Rendered once, a tile comes from the render cache: no file is opened for it again."""
    data = tmp_path / "data"
    params = {"t": 1, "z": 2, "channels": "1"}
    with _start(data) as client:
        image_id = _upload(client, testdata / STACK)["id"]
        url = f"/api/images/{image_id}/tile/0/0/0"
        first = client.get(url, params=params)
        assert first.status_code == 200, first.text
        original = _stored_path(client, image_id)
    original.unlink()  # a new process: no open store; only the cache can answer
    with _start(data) as client:
        again = client.get(url, params=params)
        assert again.status_code == 200, again.text
        assert again.content == first.content
        assert again.headers["etag"] == first.headers["etag"]
        # A tile never rendered needs the file, which is gone.
        assert client.get(url, params={**params, "t": 2}).status_code >= 400


def test_a_lower_levels_tile_makes_that_level_once_into_the_render_cache(
    client: TestClient, testdata: Path
) -> None:
    """As for zarr chunks: the pixels of a level the file lacks are kept, not only the PNG."""
    image_id = _upload(client, testdata / RGB)["id"]
    cache = client.app.state.cache  # type: ignore[attr-defined]
    before = cache.total_bytes()
    tile = client.get(f"/api/images/{image_id}/tile/1/0/0")
    assert tile.status_code == 200, tile.text
    # Level 1 of the 731 x 805 RGB file: its top-left 256 x 256 of three samples at least.
    assert cache.total_bytes() >= before + len(tile.content) + 3 * 256 * 256
