"""The bodies of the picture and histogram routes (service/routes/render.py), over HTTP.

Found by mutation testing once the runner mutated decorated functions: the route tests
check that each picture route answers a PNG, not which picture it asked for (the kind,
the size, the Z plane, the section's plane and index, the seed API's ``channel``), nor
which index each route checks, nor the histogram's ETag, its 304, the messages of its
index checks and of a damaged file's read error (which named our storage file, not the
user's: fixed). The ETag of a picture is its ``RenderSpec``'s cache key, so comparing it
names every field the route put in the spec. One app for the session: each request is
independent of the others, and a picture that must be rendered (not read from the cache)
gets a size no earlier request asked for.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.service.conftest import _testclient_class, upload, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.render.spec import RenderSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

# C, Z, Y, X of the uploaded stack.
SHAPE = (2, 5, 24, 32)
# Picture widths no earlier request of this process asked for: a render, not a cache read.
# (The app and its cache live as long as the session; widths may be 1 to 4096.)
_FRESH = itertools.count(17)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    """A started app with one uploaded 2-channel stack: (client, image id, its sha256)."""
    from zstack_analyzer.service.app import create_app

    folder = tmp_path_factory.mktemp("render-routes")
    (folder / "archive").mkdir()
    settings = make_settings(folder / "data", import_roots=[folder / "archive"])
    settings.render.thumbnail_on_upload = False
    with _testclient_class()(create_app(settings)) as client:
        record = upload(client, write_ome_tiff(folder / "cells.ome.tif", SHAPE)).json()
        yield client, record["id"], record["image_stack"]["sha256"]


@pytest.fixture(scope="session")
def damaged(
    tmp_path_factory: pytest.TempPathFactory, stack: tuple[TestClient, str, str]
) -> tuple[str, str]:
    """An upload named ``precious.ome.tif`` whose stored file was truncated: (id, stored name)."""
    client = stack[0]
    source = write_ome_tiff(tmp_path_factory.mktemp("damaged") / "a.ome.tif", seed=7)
    image_id = upload(client, source, name="precious.ome.tif").json()["id"]
    images_dir = client.app.state.settings.images_dir  # type: ignore[attr-defined]
    stored = next(p for p in images_dir.iterdir() if p.read_bytes() == source.read_bytes())
    stored.write_bytes(source.read_bytes()[:2000])
    return image_id, stored.name


def _etag(sha256: str, **fields: Any) -> str:
    return f'"{RenderSpec(**fields).cache_key(sha256)}"'


@pytest.mark.parametrize(
    ("path", "params", "fields"),
    [
        ("thumbnail", {}, {"kind": "thumbnail"}),
        (
            "thumbnail",
            {"z_slice": 3, "width": 40, "height": 30},
            {"kind": "thumbnail", "z": 3, "width": 40, "height": 30},
        ),
        ("mip", {}, {"kind": "mip", "width": 512, "height": 512}),
        (
            "mip",
            {"axis": 2, "width": 50, "height": 60},
            {"kind": "mip", "axis": 2, "width": 50, "height": 60},
        ),
        ("slice/4", {}, {"kind": "slice", "z": 4, "width": 1024, "height": 1024}),
        (
            "slice/1",
            {"width": 20, "height": 10},
            {"kind": "slice", "z": 1, "width": 20, "height": 10},
        ),
        (
            "section/yz/31",
            {"width": 70, "height": 80},
            {"kind": "section", "plane": "yz", "index": 31, "width": 70, "height": 80},
        ),
        (
            "section/xz/2",
            {},
            {"kind": "section", "plane": "xz", "index": 2, "width": 512, "height": 512},
        ),
        ("orthogonal", {}, {"kind": "orthogonal", "width": 768, "height": 256}),
        (
            "orthogonal",
            {"width": 90, "height": 30},
            {"kind": "orthogonal", "width": 90, "height": 30},
        ),
    ],
)
def test_each_picture_route_asks_for_its_picture(
    stack: tuple[TestClient, str, str], path: str, params: dict[str, Any], fields: dict[str, Any]
) -> None:
    client, image_id, sha256 = stack
    response = client.get(f"/api/images/{image_id}/{path}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == _etag(sha256, **fields)
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


def test_the_slice_routes_channel_is_the_seed_apis_channels(
    stack: tuple[TestClient, str, str],
) -> None:
    """``channel`` stands for ``channels`` only when ``channels`` is not given."""
    client, image_id, sha256 = stack
    base = f"/api/images/{image_id}/slice/0"
    one = client.get(base, params={"channel": 1})
    assert one.headers["etag"] == _etag(
        sha256, kind="slice", z=0, width=1024, height=1024, channels=(1,)
    )
    both = client.get(base, params={"channel": 1, "channels": "0"})
    assert both.headers["etag"] == _etag(
        sha256, kind="slice", z=0, width=1024, height=1024, channels=(0,)
    )
    assert client.get(base, params={"channel": 2}).status_code == 422


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("thumbnail", {"z_slice": 5}, "z"),
        ("slice/5", {}, "z"),
        ("section/xz/24", {}, "y"),
        ("section/yz/32", {}, "x"),
    ],
)
def test_each_route_checks_its_own_index(
    stack: tuple[TestClient, str, str], path: str, params: dict[str, Any], named: str
) -> None:
    client, image_id, _ = stack
    response = client.get(f"/api/images/{image_id}/{path}", params=params)
    assert response.status_code == 422, response.text
    assert f"{named} " in response.json()["detail"] or f"{named}=" in response.json()["detail"]


def test_the_sections_index_is_y_for_xz_and_x_for_yz(stack: tuple[TestClient, str, str]) -> None:
    """Y has 24 rows and X 32 columns: 31 is a column, not a row."""
    client, image_id, _ = stack
    assert client.get(f"/api/images/{image_id}/section/yz/31").status_code == 200
    assert client.get(f"/api/images/{image_id}/section/xz/31").status_code == 422
    assert client.get(f"/api/images/{image_id}/section/xz/23").status_code == 200


def _histogram_etag(sha256: str, z: int | None) -> str:
    source = json.dumps({"h": 1, "id": sha256, "scene": 0, "t": 0, "z": z})
    return f'"{hashlib.sha256(source.encode()).hexdigest()[:32]}"'


@pytest.mark.parametrize("z", [None, 2])
def test_histogram_etag_body_and_304(stack: tuple[TestClient, str, str], z: int | None) -> None:
    client, image_id, sha256 = stack
    url = f"/api/images/{image_id}/histogram"
    params = {} if z is None else {"z": z}
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    etag = _histogram_etag(sha256, z)
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "private, max-age=3600"
    channels = response.json()["channels"]
    assert len(channels) == SHAPE[0]
    again = client.get(url, params=params, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
    assert again.content == b""


def test_histogram_of_one_plane_differs_from_the_stacks(
    stack: tuple[TestClient, str, str],
) -> None:
    client, image_id, _ = stack
    url = f"/api/images/{image_id}/histogram"
    whole = client.get(url).json()["channels"]
    plane = client.get(url, params={"z": 0}).json()["channels"]
    assert whole != plane
    refused = client.get(url, params={"z": 5})
    assert refused.status_code == 422
    assert "z" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        (
            {"channels": "1,0", "colors": "00ff00,ff00ff", "windows": "10:3000,5:200"},
            {
                "channels": (1, 0),
                "colors": ("00ff00", "ff00ff"),
                "windows": ((10.0, 3000.0), (5.0, 200.0)),
            },
        ),
        ({"gamma": 0.5, "format": "jpeg"}, {"gamma": 0.5, "image_format": "jpeg"}),
        ({"scene": 0, "t": 0}, {}),
    ],
)
def test_the_common_parameters_reach_the_spec(
    stack: tuple[TestClient, str, str], params: dict[str, Any], fields: dict[str, Any]
) -> None:
    client, image_id, sha256 = stack
    response = client.get(f"/api/images/{image_id}/mip", params=params)
    assert response.status_code == 200, response.text
    expected = {"kind": "mip", "width": 512, "height": 512, **fields}
    assert response.headers["etag"] == _etag(sha256, **expected)
    assert response.headers["content-type"] == f"image/{expected.get('image_format', 'png')}"


def test_a_picture_answers_304_with_its_headers(stack: tuple[TestClient, str, str]) -> None:
    client, image_id, sha256 = stack
    etag = _etag(sha256, kind="orthogonal", width=768, height=256)
    url = f"/api/images/{image_id}/orthogonal"
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "private, max-age=3600"
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_a_fresh_picture_is_rendered_cached_and_sent(stack: tuple[TestClient, str, str]) -> None:
    client, image_id, sha256 = stack
    width = next(_FRESH)
    response = client.get(f"/api/images/{image_id}/slice/2", params={"width": width})
    assert response.status_code == 200, response.text
    key = RenderSpec(kind="slice", z=2, width=width, height=1024).cache_key(sha256)
    assert response.headers["etag"] == f'"{key}"'
    cache: Any = client.app.state.cache  # type: ignore[attr-defined]
    assert cache.get(sha256, key) == response.content
    assert response.content.startswith(b"\x89PNG")
    # The same request again is answered from the cache, byte for byte.
    assert client.get(f"/api/images/{image_id}/slice/2", params={"width": width}).content == (
        response.content
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"scene": 1}, "scene 1 is out of range (0..0)"),
        ({"t": 1}, "timepoint t 1 is out of range (0..0)"),
        ({"z": 5}, "z 5 is out of range (0..4)"),
    ],
)
def test_histogram_checks_its_indices_before_reading(
    stack: tuple[TestClient, str, str], params: dict[str, Any], message: str
) -> None:
    """The route's own check (the file's name as uploaded), not the reader's error."""
    client, image_id, _ = stack
    refused = client.get(f"/api/images/{image_id}/histogram", params=params)
    assert refused.status_code == 422
    assert refused.json()["detail"] == f"cells.ome.tif: {message}"


def test_section_checks_y_with_the_routes_message(stack: tuple[TestClient, str, str]) -> None:
    client, image_id, _ = stack
    refused = client.get(f"/api/images/{image_id}/section/xz/24")
    assert refused.json()["detail"] == "cells.ome.tif: y 24 is out of range (0..23)"


@pytest.mark.parametrize("route", ["histogram", "mip"])
def test_a_damaged_files_error_names_the_upload(
    stack: tuple[TestClient, str, str], damaged: tuple[str, str], route: str
) -> None:
    """The histogram's read error named our storage file (a uuid name), not the user's."""
    client = stack[0]
    image_id, stored_name = damaged
    response = client.get(f"/api/images/{image_id}/{route}", params={"width": next(_FRESH)})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("precious.ome.tif: ")
    assert stored_name not in detail


@pytest.mark.parametrize("route", ["histogram", "mip"])
def test_an_in_place_original_is_checked_before_any_answer(
    stack: tuple[TestClient, str, str], route: str
) -> None:
    """A registered original that changed answers 409, and one that is gone 410."""
    client = stack[0]
    settings: Any = client.app.state.settings  # type: ignore[attr-defined]
    source = settings.import_roots[0] / f"{uuid.uuid4().hex}.ome.tif"
    write_ome_tiff(source, seed=3)
    created = client.post("/api/images/register", json={"path": str(source)})
    assert created.status_code == 201, created.text
    url = f"/api/images/{created.json()['id']}/{route}"
    assert client.get(url).status_code == 200
    write_ome_tiff(source, seed=4)  # another picture, same size
    assert client.get(url).status_code == 409
    source.unlink()
    assert client.get(url).status_code == 410
