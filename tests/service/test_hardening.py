"""Issue #15, service half: hostile or odd requests get documented answers, never a 500.

Each test names the defect it keeps fixed. All run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.service.conftest import upload, write_ome_tiff
from tests.service.test_api import assert_problem

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

BIG = 9223372036854775808  # 2**63: overflowed SQLite and PostgreSQL bigint (500 before)


# ----------------------------------------------------------------- item 6: int ranges
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("", {"skip": BIG}),
        ("", {"skip": 2**31}),
        ("{id}/metadata", {"scene": BIG}),
        ("{id}/thumbnail", {"scene": BIG}),
        ("{id}/thumbnail", {"t": -BIG}),
        ("{id}/thumbnail", {"z_slice": BIG}),
        (f"{{id}}/slice/{BIG}", {}),
        ("{id}/slice/0", {"channel": BIG}),
        (f"{{id}}/section/xz/{BIG}", {}),
        ("{id}/histogram", {"z": BIG}),
        ("{id}/mip", {"axis": BIG}),
    ],
)
def test_huge_integers_are_422(
    client: TestClient, tiff_file: Path, path: str, params: dict[str, int]
) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    url = f"/api/images/{path.format(id=image_id)}"
    assert_problem(client.get(url, params=params), 422, "validation_error")


# ------------------------------------------------------ item 7: q is text, not a pattern
def test_q_is_a_literal_substring(client: TestClient, tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "s.ome.tif")
    for name in ("a_b.ome.tif", "axb.ome.tif", "100%.ome.tif", "plain.ome.tif"):
        assert upload(client, source, name=name).status_code == 201

    def names(q: str) -> list[str]:
        response = client.get("/api/images/", params={"q": q})
        assert response.status_code == 200, response.text
        return sorted(item["filename"] for item in response.json()["data"])

    assert names("_") == ["a_b.ome.tif"]
    assert names("a_b") == ["a_b.ome.tif"]
    assert names("%") == ["100%.ome.tif"]
    assert names("\\") == []
    # NUL cannot be stored in PostgreSQL text: it is dropped from the query (was a 500).
    assert names("\x00") == sorted(["a_b.ome.tif", "axb.ome.tif", "100%.ome.tif", "plain.ome.tif"])
    assert names("pla\x00in") == ["plain.ome.tif"]


# --------------------------------------------------- item 8 and item 2: multipart limits
def _multipart(boundary: str, parts: list[tuple[dict[str, str], bytes]]) -> bytes:
    out = io.BytesIO()
    for headers, body in parts:
        out.write(f"--{boundary}\r\n".encode())
        for key, value in headers.items():
            out.write(f"{key}: {value}\r\n".encode())
        out.write(b"\r\n" + body + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def _post_multipart(client: TestClient, boundary: str, body: bytes) -> Any:
    return client.post(
        "/api/images/upload",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def test_multipart_limits_are_400(client: TestClient, tiff_file: Path) -> None:
    settings: Settings = client.app.state.settings
    data = tiff_file.read_bytes()
    file_part = ({"Content-Disposition": 'form-data; name="file"; filename="a.ome.tif"'}, data)
    # A boundary of 1000 characters raised FormParserError out of the route (500).
    long_boundary = "b" * 1000
    body = assert_problem(
        _post_multipart(client, long_boundary, _multipart(long_boundary, [file_part])),
        400,
        "bad_upload",
    )
    assert "boundary" in body["detail"]
    # Too many parts before the file (each part costs parser state and callbacks).
    filler = [({"Content-Disposition": f'form-data; name="f{i}"'}, b"x") for i in range(40)]
    assert_problem(
        _post_multipart(client, "bnd", _multipart("bnd", [*filler, file_part])), 400, "bad_upload"
    )
    # Too many part headers, and one over-long part header line.
    many = {f"X-H{i}": "1" for i in range(30)} | file_part[0]
    assert_problem(
        _post_multipart(client, "bnd", _multipart("bnd", [(many, data)])), 400, "bad_upload"
    )
    long_header = {"X-Long": "y" * 100_000} | file_part[0]
    assert_problem(
        _post_multipart(client, "bnd", _multipart("bnd", [(long_header, data)])), 400, "bad_upload"
    )
    # Within the limits it still works, and nothing is left behind by the refusals.
    ok = _post_multipart(client, "bnd", _multipart("bnd", [*filler[:3], file_part]))
    assert ok.status_code == 201, ok.text
    assert list(settings.tmp_dir.iterdir()) == []
    assert len(list(settings.images_dir.iterdir())) == 1


def test_too_many_request_headers_is_431(settings: Settings, make_client: Callable) -> None:
    client = make_client(settings.model_copy(update={"api_token": "s3cret"}))
    headers = {f"X-Filler-{i}": "1" for i in range(150)}
    body = assert_problem(client.get("/api/images/", headers=headers), 431, "headers_too_large")
    assert "100" in body["detail"]
    # Under the cap the request reaches auth as usual.
    assert client.get("/api/images/").status_code == 401


# ------------------------------------------------------------ item 10: delete vs renders
def test_renders_queued_behind_a_delete_answer_404(client: TestClient, tiff_file: Path) -> None:
    """Renders waiting for a worker when their image is deleted: 404, not a 500.

    The worker slots are held by the test (the pool's own limiter), so the eight
    renders are provably queued when the delete removes row and file.
    """
    settings: Settings = client.app.state.settings
    record = upload(client, tiff_file).json()
    image_id = record["id"]
    portal = client.portal
    assert portal is not None
    # The post-upload thumbnail finishes first: it is not one of the queued renders.
    portal.call(client.app.state.pool.settle, record["image_stack"]["sha256"])
    limiter = client.app.state.pool.limiter
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        portal.call(limiter.acquire_on_behalf_of_nowait, holder)
    statuses: list[int] = []
    bodies: list[dict[str, Any]] = []

    def render(width: int) -> None:
        response = client.get(f"/api/images/{image_id}/mip", params={"width": width})
        statuses.append(response.status_code)
        bodies.append(response.json() if response.status_code != 200 else {})

    threads = [threading.Thread(target=render, args=(40 + i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(client.app.state.pool._jobs) < 8:
        assert time.monotonic() < deadline, "the renders never queued"
        time.sleep(0.01)
    deleter = threading.Thread(
        target=lambda: statuses.append(client.delete(f"/api/images/{image_id}").status_code)
    )
    deleter.start()
    while any(settings.images_dir.iterdir()):
        assert time.monotonic() < deadline, "the delete never removed the file"
        time.sleep(0.01)
    for holder in holders:
        portal.call(limiter.release_on_behalf_of, holder)
    for thread in [*threads, deleter]:
        thread.join(60)
    assert sorted(statuses) == [204] + [404] * 8, bodies
    assert all(body["code"] == "image_not_found" for body in bodies)
    assert list(settings.cache_dir.rglob("*.png")) == []


# ------------------------------------------------------------------ smaller items
def test_display_name_loses_bidi_controls(client: TestClient, tiff_file: Path) -> None:
    name = "photo\u202egpj\u202c\u2066x\u2069\u200f.ome.tif"
    record = upload(client, tiff_file, name=name).json()["image_stack"]
    assert record["filename"] == "photogpjx.ome.tif"


@pytest.mark.parametrize("name", ["shell.php", "setup.exe", "x.ome.tif.php", "cells.tif"])
def test_stored_suffix_is_the_detected_formats(
    client: TestClient, tiff_file: Path, name: str
) -> None:
    settings: Settings = client.app.state.settings
    response = upload(client, tiff_file, name=name)
    assert response.status_code == 201, response.text
    assert response.json()["image_stack"]["format"] == "OME-TIFF"
    [stored] = list(settings.images_dir.iterdir())
    assert stored.name.endswith(".ome.tif"), stored.name
    assert response.json()["image_stack"]["filename"] == name  # the display name is kept


def test_download_is_octet_stream_as_documented(client: TestClient, tiff_file: Path) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    response = client.get(f"/api/images/{image_id}/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    documented = client.get("/openapi.json").json()["paths"]["/api/images/{image_id}/download"]
    # A multi-file image downloads as a zip of its files; one file as itself.
    assert set(documented["get"]["responses"]["200"]["content"]) == {
        "application/octet-stream",
        "application/zip",
    }


def test_created_at_always_has_a_zone(client: TestClient, tiff_file: Path) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    for value in (
        client.get(f"/api/images/{image_id}").json()["created_at"],
        client.get("/api/images/").json()["data"][0]["created_at"],
    ):
        assert value.endswith(("Z", "+00:00")), value


def test_405_lists_the_allowed_methods(client: TestClient, tiff_file: Path) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    cases = [
        ("PUT", f"/api/images/{image_id}", "DELETE, GET, HEAD, PATCH"),  # PATCH: move (issue 23)
        ("POST", "/api/health", "GET, HEAD"),
        ("DELETE", "/api/images/", "GET, HEAD"),
        ("PATCH", f"/api/images/{image_id}/thumbnail", "GET, HEAD"),
    ]
    for method, url, allow in cases:
        response = client.request(method, url)
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allow, (method, url)
    # A path no route has is a 404, whatever the method.
    assert_problem(client.post("/api/no-such-thing"), 404, "not_found")


def test_head_is_get_without_body_and_needs_auth(
    settings: Settings, make_client: Callable, tiff_file: Path
) -> None:
    client = make_client(settings.model_copy(update={"api_token": "s3cret"}))
    auth = {"Authorization": "Bearer s3cret"}
    for url in ("/api/health", "/api/images/", "/api/images/formats/supported"):
        refused = client.head(url)
        assert refused.status_code == 401, url
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.content == b""
    image_id = upload(client, tiff_file, headers=auth).json()["id"]
    for path in ("", "/download", "/thumbnail"):
        get = client.get(f"/api/images/{image_id}{path}", headers=auth)
        head = client.head(f"/api/images/{image_id}{path}", headers=auth)
        assert head.status_code == get.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers.get("etag") == get.headers.get("etag")
    assert (
        client.head(f"/api/images/{image_id}")
        .headers["content-type"]
        .startswith("application/problem+json")
    )


def test_range_follows_rfc_9110(client: TestClient, tiff_file: Path) -> None:
    data = tiff_file.read_bytes()
    size = len(data)
    url = f"/api/images/{upload(client, tiff_file).json()['id']}/download"

    def get(range_header: str) -> Any:
        return client.get(url, headers={"Range": range_header})

    # Malformed or unknown units: ignored, the whole file (was a text/plain 400).
    for header in ("bytes=abc", "bytes=5-3", "bytes", "items=0-5", "bytes=--1", "bytes=1-2-3"):
        response = get(header)
        assert response.status_code == 200, header
        assert response.content == data, header
    # Some ranges satisfiable: those are served (was 416 for the whole request).
    partly = get(f"bytes=0-3, {size + 10}-")
    assert partly.status_code == 206
    assert partly.content == data[:4]
    assert partly.headers["content-range"] == f"bytes 0-3/{size}"
    # None satisfiable: 416 as problem+json with the size.
    for header in (f"bytes={size}-", "bytes=-0", f"bytes={size}-{size + 5}"):
        response = get(header)
        assert_problem(response, 416, "range_not_satisfiable")
        assert response.headers["content-range"] == f"bytes */{size}"
    # An end past the file is clipped.
    tail = get(f"bytes={size - 4}-{size + 100}")
    assert tail.status_code == 206
    assert tail.content == data[-4:]


def test_openapi_states_the_enforced_formats(client: TestClient) -> None:
    import re

    paths = client.get("/openapi.json").json()["paths"]
    params = {
        p["name"]: p["schema"] for p in paths["/api/images/{image_id}/mip"]["get"]["parameters"]
    }

    def pattern(name: str) -> str:
        return next(s["pattern"] for s in params[name]["anyOf"] if "pattern" in s)

    assert re.fullmatch(pattern("colors"), "00ff00,FF00FF")
    assert not re.fullmatch(pattern("colors"), "00ff0g")
    assert re.fullmatch(pattern("windows"), "100:4000,0.5:1e3")
    assert not re.fullmatch(pattern("windows"), "100-4000")
    assert re.fullmatch(pattern("channels"), "0,2")
    assert not re.fullmatch(pattern("channels"), "0;2")
    assert (params["axis"]["minimum"], params["axis"]["maximum"]) == (0, 2)
    listing = {p["name"]: p["schema"] for p in paths["/api/images/"]["get"]["parameters"]}
    assert listing["skip"]["maximum"] == 2**31 - 1
    assert listing["limit"]["maximum"] == 1000


# ------------------------------------------------------------- item 4: bounded strings
def _ome_with_long_names(path: Path, name_chars: int) -> Path:
    """An OME-TIFF whose image name and channel names are ``name_chars`` long."""
    data = np.zeros((2, 2, 16, 16), np.uint16)
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "CZYX",
            "Name": "N" * name_chars,
            "Channel": {"Name": ["A" * name_chars, "B" * name_chars]},
        },
    )
    return path


def test_long_names_from_a_file_are_capped(client: TestClient, tmp_path: Path) -> None:
    from zstack_analyzer.metadata import MAX_TEXT_CHARS

    source = _ome_with_long_names(tmp_path / "long.ome.tif", 2_000_000)
    response = upload(client, source)
    assert response.status_code == 201, response.text
    assert len(response.content) < 64 * 1024
    image_id = response.json()["id"]
    metadata = client.get(f"/api/images/{image_id}/metadata").json()
    assert len(metadata["scene_name"]) <= MAX_TEXT_CHARS
    assert metadata["scene_name"].startswith("NNN")
    assert all(len(c["name"]) <= MAX_TEXT_CHARS for c in metadata["channels"])
    assert any("truncated" in w for w in metadata["warnings"])
    for _ in range(4):
        upload(client, source)
    listing = client.get("/api/images/", params={"limit": 5})
    assert listing.status_code == 200
    assert len(listing.content) < 5 * 2048  # summaries only: no metadata, no scene list
    item = listing.json()["data"][0]
    assert "metadata" not in item and "scenes" not in item
    assert item["scene_count"] == 1
    record = client.get(f"/api/images/{image_id}").json()
    assert len(record["metadata"]["scenes"]) == 1  # the full record keeps the scene list
    assert record["metadata"]["scenes"] == record["scenes"]


# ---------------------------------------------- API pictures match the file's planes
def _assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal up to one grey level (rounding); planes and channels differ by hundreds."""
    assert got.shape == want.shape, (what, got.shape, want.shape)
    worst = int(np.abs(got.astype(np.int16) - want.astype(np.int16)).max())
    assert worst <= 1, f"{what}: off by up to {worst} grey levels"


def _picture(client: TestClient, url: str, **params: Any) -> np.ndarray:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as image:
        return np.asarray(image.convert("RGB"))


def test_slice_and_mip_routes_draw_the_asked_plane_and_channel(
    client: TestClient, tmp_path: Path
) -> None:
    """The pixels of each route against the file's own planes, not only status and size.

    Every plane and channel of the synthetic stack differs from the others, so
    a route that draws plane z+1, channel 0 instead of 1, or projects along the
    wrong axis, fails the exact comparison.
    """
    shape = (2, 5, 24, 32)
    source = write_ome_tiff(tmp_path / "s.ome.tif", shape, pixel_um=(1.0, 1.0, 1.0))
    stack = tifffile.imread(source).reshape(shape)
    image_id = upload(client, source).json()["id"]
    base = f"/api/images/{image_id}"
    lo, hi = 0.0, 4000.0
    grey = {"colors": "ffffff", "windows": f"{lo:g}:{hi:g}", "width": 32, "height": 24}

    def expected(values: np.ndarray) -> np.ndarray:
        norm = np.clip((values.astype(np.float64) - lo) / (hi - lo), 0, 1)
        return np.repeat(np.rint(norm * 255)[..., None], 3, axis=-1).astype(np.uint8)

    for c in range(2):
        for z in (0, 3):
            got = _picture(client, f"{base}/slice/{z}", channel=c, **grey)
            _assert_close(got, expected(stack[c, z]), f"slice z={z} c={c}")
            got = _picture(client, f"{base}/thumbnail", z_slice=z, channels=str(c), **grey)
            _assert_close(got, expected(stack[c, z]), f"thumbnail z={z} c={c}")
        mips = {
            0: stack[c].max(axis=0),  # Y, X
            1: stack[c].max(axis=1),  # Z, X
            2: stack[c].max(axis=2).T,  # Y, Z
        }
        for axis, reference in mips.items():
            size = {"width": reference.shape[1], "height": reference.shape[0]}
            got = _picture(client, f"{base}/mip", axis=axis, channels=str(c), **grey | size)
            _assert_close(got, expected(reference), f"mip axis={axis} c={c}")


def test_every_render_parameter_changes_the_etag(client: TestClient, tmp_path: Path) -> None:
    """The ETag is the cache key: a parameter it ignored would serve a stale picture.

    Checked against the pictures themselves: equal ETags must mean equal bytes,
    different parameters must give different ETags, and the same parameters on
    a file with other content must too.
    """
    source = write_ome_tiff(tmp_path / "a.ome.tif", seed=1)
    first = upload(client, source).json()["id"]
    other = upload(client, write_ome_tiff(tmp_path / "b.ome.tif", seed=2)).json()["id"]
    same = upload(client, source, name="copy.ome.tif").json()["id"]
    variants: list[dict[str, Any]] = [
        {},
        {"z_slice": 1},
        {"z_slice": 2},
        {"width": 40},
        {"height": 40},
        {"channels": "1"},
        {"channels": "0"},
        {"channels": "0", "colors": "ff0000"},
        {"channels": "0", "windows": "0:100"},
        {"gamma": 0.5},
        {"format": "jpeg"},
        {"t": 0, "scene": 0, "z_slice": 3},
    ]
    etags: dict[str, bytes] = {}
    for params in variants:
        response = client.get(f"/api/images/{first}/thumbnail", params=params)
        assert response.status_code == 200, response.text
        etag = response.headers["etag"]
        assert etag not in etags, f"{params} has the ETag of another picture"
        etags[etag] = response.content
        twin = client.get(f"/api/images/{same}/thumbnail", params=params)
        assert twin.headers["etag"] == etag  # same bytes uploaded: same key, same picture
        assert twin.content == response.content
        changed = client.get(f"/api/images/{other}/thumbnail", params=params)
        assert changed.headers["etag"] != etag
        assert changed.headers["etag"] not in etags
    # Across routes too: a slice and a thumbnail of one plane are different pictures.
    sliced = client.get(f"/api/images/{first}/slice/1", params={"width": 256, "height": 256})
    assert sliced.headers["etag"] not in etags
