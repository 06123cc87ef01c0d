"""Every endpoint through HTTP on a real database (SQLite; PostgreSQL under its marker)."""

from __future__ import annotations

import io
import uuid
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from tests.service.conftest import upload, write_ome_tiff

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"] and body["detail"] and body["type"]
    assert "Traceback" not in response.text
    return body


def test_upload_returns_the_published_record(client: TestClient, tiff_file: Path) -> None:
    response = upload(client, tiff_file)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message"] == "File uploaded successfully"
    stack = body["image_stack"]
    assert stack["id"] == body["id"]
    assert response.headers["location"] == f"/api/images/{body['id']}"
    assert "x-duplicate-of" not in response.headers
    expected = {
        "filename": "cells.ome.tif",
        "width": 32,
        "height": 24,
        "depth": 5,
        "channels": 2,
        "bit_depth": 16,
        "pixel_size_x": 0.5,
        "pixel_size_y": 0.5,
        "pixel_size_z": 2.0,
        "format": "OME-TIFF",
        "size_bytes": tiff_file.stat().st_size,
        "timepoints": 1,
        "samples_per_pixel": 1,
        "dtype": "uint16",
    }
    assert {k: stack[k] for k in expected} == expected
    import hashlib

    assert stack["sha256"] == hashlib.sha256(tiff_file.read_bytes()).hexdigest()
    assert stack["metadata"]["size_z"] == 5
    assert stack["metadata"]["file_format"] == "OME-TIFF"
    assert stack["metadata"]["filename"] == "cells.ome.tif"
    assert [s["size_c"] for s in stack["scenes"]] == [2]
    assert stack["created_at"].endswith(("Z", "+00:00"))
    # The stored file is named by uuid, never by the user's name.
    stored = list((client.app.state.settings.images_dir).iterdir())
    assert len(stored) == 1
    assert stored[0].name != "cells.ome.tif"
    assert stored[0].name.endswith(".ome.tif")
    assert stored[0].read_bytes() == tiff_file.read_bytes()


def test_get_list_filter_and_metadata(client: TestClient, tmp_path: Path) -> None:
    ids = [
        upload(client, write_ome_tiff(tmp_path / f"{name}.ome.tif", seed=i)).json()["id"]
        for i, name in enumerate(["alpha", "beta", "Gamma"])
    ]
    one = client.get(f"/api/images/{ids[0]}")
    assert one.status_code == 200
    assert one.json()["filename"] == "alpha.ome.tif"

    page = client.get("/api/images/", params={"skip": 0, "limit": 2}).json()
    assert page["count"] == 3
    assert len(page["data"]) == 2
    rest = client.get("/api/images/", params={"skip": 2, "limit": 2}).json()
    assert {i["id"] for i in page["data"] + rest["data"]} == set(ids)

    assert client.get("/api/images", follow_redirects=False).json()["count"] == 3
    found = client.get("/api/images/", params={"q": "GAM"}).json()
    assert found["count"] == 1
    assert found["data"][0]["id"] == ids[2]

    assert_problem(client.get("/api/images/", params={"limit": 1001}), 422, "validation_error")
    assert_problem(client.get("/api/images/", params={"limit": 0}), 422, "validation_error")

    metadata = client.get(f"/api/images/{ids[1]}/metadata")
    assert metadata.status_code == 200
    md = metadata.json()
    assert md["physical_size"] == {"x_um": 0.5, "y_um": 0.5, "z_um": 2.0}
    assert "provenance" in md and "warnings" in md and "vendor_metadata" in md
    assert_problem(
        client.get(f"/api/images/{ids[1]}/metadata", params={"scene": 3}), 422, "out_of_range"
    )


def test_unknown_ids_are_404(client: TestClient) -> None:
    for path in ("", "/metadata", "/thumbnail", "/mip", "/slice/0", "/orthogonal", "/download"):
        assert_problem(client.get(f"/api/images/{uuid.uuid4()}{path}"), 404, "image_not_found")
    assert_problem(client.get("/api/images/not-a-uuid"), 404, "image_not_found")
    assert_problem(client.delete(f"/api/images/{uuid.uuid4()}"), 404, "image_not_found")
    assert_problem(client.get("/api/nothing-here"), 404, "not_found")


def _png(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_render_endpoints(client: TestClient, tiff_file: Path) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    base = f"/api/images/{image_id}"
    assert max(_png(client.get(f"{base}/thumbnail")).size) <= 256
    assert max(_png(client.get(f"{base}/thumbnail", params={"z_slice": 4})).size) <= 256
    thumb = _png(client.get(f"{base}/thumbnail", params={"width": 64, "height": 64}))
    assert thumb.size[0] <= 64 and thumb.size[1] <= 64
    for axis in (0, 1, 2):
        _png(client.get(f"{base}/mip", params={"axis": axis, "width": 100, "height": 100}))
    _png(client.get(f"{base}/slice/2", params={"channel": 1}))
    _png(client.get(f"{base}/slice/0", params={"channels": "0,1", "colors": "00ff00,ff00ff"}))
    _png(client.get(f"{base}/slice/0", params={"channels": "1", "windows": "10:3000"}))
    _png(client.get(f"{base}/orthogonal"))
    _png(client.get(f"{base}/section/xz/3"))
    _png(client.get(f"{base}/section/yz/31", params={"gamma": 0.5}))
    jpeg = client.get(f"{base}/mip", params={"format": "jpeg"})
    assert jpeg.status_code == 200
    assert jpeg.headers["content-type"] == "image/jpeg"


def test_render_etag_and_304(client: TestClient, tiff_file: Path) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    url = f"/api/images/{image_id}/mip"
    first = client.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"') and len(etag) > 10
    assert first.headers["cache-control"] == "private, max-age=3600"
    again = client.get(url)
    assert again.headers["etag"] == etag
    assert again.content == first.content
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    weak_list = client.get(url, headers={"If-None-Match": f'"nope", W/{etag}'})
    assert weak_list.status_code == 304
    other = client.get(url, params={"axis": 1})
    assert other.headers["etag"] != etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("slice/5", {}),
        ("slice/-1", {}),
        ("thumbnail", {"z_slice": 9}),
        ("thumbnail", {"t": 1}),
        ("thumbnail", {"scene": 1}),
        ("thumbnail", {"channels": "0,2"}),
        ("slice/0", {"channel": 2}),
        ("section/xz/24", {}),
        ("section/yz/32", {}),
        ("orthogonal", {"t": -1}),
    ],
)
def test_out_of_range_is_422(client: TestClient, tiff_file: Path, path: str, params: dict) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    body = assert_problem(
        client.get(f"/api/images/{image_id}/{path}", params=params), 422, "out_of_range"
    )
    assert "out of range" in body["detail"]


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("thumbnail", {"width": 0}, "validation_error"),
        ("thumbnail", {"width": 5000}, "validation_error"),
        ("thumbnail", {"gamma": 0}, "validation_error"),
        ("thumbnail", {"format": "gif"}, "validation_error"),
        # Formats stated in the OpenAPI document (pattern/enum) fail FastAPI's validation.
        ("thumbnail", {"channels": "a,b"}, "validation_error"),
        ("thumbnail", {"channels": "0", "colors": "zzzzzz"}, "validation_error"),
        ("thumbnail", {"channels": "0", "windows": "1:inf"}, "validation_error"),
        ("mip", {"axis": 3}, "validation_error"),
        ("mip", {"axis": -1}, "validation_error"),
        # What a pattern cannot say (one per channel, low < high) is checked in code.
        ("thumbnail", {"channels": "0", "colors": "00ff00,ff0000"}, "invalid_parameter"),
        ("thumbnail", {"channels": "0", "windows": "5:1"}, "invalid_parameter"),
        ("section/xy/1", {}, "validation_error"),
    ],
)
def test_bad_parameters_are_422(
    client: TestClient, tiff_file: Path, path: str, params: dict, code: str
) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    assert_problem(client.get(f"/api/images/{image_id}/{path}", params=params), 422, code)


def test_download_full_range_and_disposition(client: TestClient, tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "x.ome.tif")
    data = source.read_bytes()
    name = "Zellkern ß/1 neu;ß.ome.tif"
    image_id = upload(client, source, name=name).json()["id"]
    record = client.get(f"/api/images/{image_id}").json()
    assert record["filename"] == "1 neu;ß.ome.tif"  # the path part is stripped

    full = client.get(f"/api/images/{image_id}/download")
    assert full.status_code == 200
    assert full.content == data
    disposition = full.headers["content-disposition"]
    assert disposition.startswith("attachment; ")
    assert "filename*=UTF-8''1%20neu%3B%C3%9F.ome.tif" in disposition
    assert 'filename="1 neu_ß.ome.tif"'.replace("ß", "_") in disposition
    assert full.headers["accept-ranges"] == "bytes"

    part = client.get(f"/api/images/{image_id}/download", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == data[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"
    tail = client.get(f"/api/images/{image_id}/download", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206
    assert tail.content == data[-16:]
    beyond = client.get(
        f"/api/images/{image_id}/download", headers={"Range": f"bytes={len(data) + 5}-"}
    )
    body = assert_problem(beyond, 416, "range_not_satisfiable")
    assert "x.ome.tif" not in body["detail"]
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    several = client.get(f"/api/images/{image_id}/download", headers={"Range": "bytes=0-3, 8-11"})
    assert several.status_code == 206
    assert several.headers["content-type"].startswith("multipart/byteranges")
    etag = full.headers["etag"]
    cached = client.get(f"/api/images/{image_id}/download", headers={"If-None-Match": etag})
    assert cached.status_code == 304


def test_unicode_filename_round_trips(client: TestClient, tiff_file: Path) -> None:
    decomposed = "Zelle\u0301 µm.ome.tif"  # e + combining acute: stored NFC
    image_id = upload(client, tiff_file, name=decomposed).json()["id"]
    record = client.get(f"/api/images/{image_id}").json()
    assert record["filename"] == "Zell\u00e9 µm.ome.tif"
    disposition = client.get(f"/api/images/{image_id}/download").headers["content-disposition"]
    assert "filename*=UTF-8''Zell%C3%A9%20%C2%B5m.ome.tif" in disposition


def test_delete_removes_row_file_and_cache(client: TestClient, tiff_file: Path) -> None:
    settings: Settings = client.app.state.settings
    image_id = upload(client, tiff_file).json()["id"]
    assert client.get(f"/api/images/{image_id}/thumbnail").status_code == 200
    assert client.get(f"/api/images/{image_id}/orthogonal").status_code == 200
    assert any(p.is_file() for p in settings.cache_dir.rglob("*"))

    response = client.delete(f"/api/images/{image_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(f"/api/images/{image_id}"), 404, "image_not_found")
    assert client.get("/api/images/").json()["count"] == 0
    assert list(settings.images_dir.iterdir()) == []
    assert list(settings.tmp_dir.iterdir()) == []
    assert list(settings.cache_dir.rglob("*")) == []
    assert_problem(client.delete(f"/api/images/{image_id}"), 404, "image_not_found")


def test_duplicate_upload_is_a_new_record(client: TestClient, tiff_file: Path) -> None:
    settings: Settings = client.app.state.settings
    first = upload(client, tiff_file)
    second = upload(client, tiff_file, name="again.ome.tif")
    assert second.status_code == 201
    assert second.headers["x-duplicate-of"] == first.json()["id"]
    assert second.json()["id"] != first.json()["id"]
    assert second.json()["image_stack"]["sha256"] == first.json()["image_stack"]["sha256"]
    assert len(list(settings.images_dir.iterdir())) == 2
    # Deleting one leaves the other whole, renders included.
    assert client.delete(f"/api/images/{first.json()['id']}").status_code == 204
    assert (
        client.get(f"/api/images/{second.json()['id']}/download").content == tiff_file.read_bytes()
    )
    assert client.get(f"/api/images/{second.json()['id']}/thumbnail").status_code == 200


def test_upload_errors(client: TestClient, tmp_path: Path) -> None:
    settings: Settings = client.app.state.settings
    text = tmp_path / "notes.txt"
    text.write_text("not an image at all\n" * 10)
    body = assert_problem(upload(client, text), 400, "unsupported_format")
    assert "notes.txt" in body["detail"]

    valid = write_ome_tiff(tmp_path / "whole.ome.tif").read_bytes()
    truncated = tmp_path / "broken.ome.tif"
    truncated.write_bytes(valid[: len(valid) // 3])
    response = upload(client, truncated)
    assert response.status_code in (422,), response.text
    body = response.json()
    assert body["code"] in {"corrupt_file", "metadata_error", "limit_exceeded", "image_load_error"}
    assert "broken.ome.tif" in body["detail"]
    assert "/" not in body["detail"].split(":")[0]  # names the upload, not a server path

    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    assert_problem(upload(client, empty), 422, "corrupt_file")

    missing = client.post("/api/images/upload", files={"other": ("a.tif", b"123")})
    assert_problem(missing, 422, "validation_error")
    not_multipart = client.post(
        "/api/images/upload", content=b"raw", headers={"content-type": "application/octet-stream"}
    )
    assert_problem(not_multipart, 400, "bad_upload")

    assert client.get("/api/images/").json()["count"] == 0
    assert list(settings.images_dir.iterdir()) == []
    assert list(settings.tmp_dir.iterdir()) == []


def test_upload_size_limit_is_413(settings: Settings, make_client, tmp_path: Path) -> None:
    limited = settings.model_copy(
        update={"limits": settings.limits.model_copy(update={"max_upload_bytes": 4096})}
    )
    client = make_client(limited)
    big = write_ome_tiff(tmp_path / "big.ome.tif", (1, 4, 64, 64))
    assert big.stat().st_size > 4096
    body = assert_problem(upload(client, big), 413, "upload_too_large")
    assert "4,096" in body["detail"]
    huge = write_ome_tiff(tmp_path / "huge.ome.tif", (1, 2, 256, 256))
    assert huge.stat().st_size > 4096 + 64 * 1024  # refused from Content-Length, unread
    assert_problem(upload(client, huge), 413, "upload_too_large")
    small = write_ome_tiff(tmp_path / "small.ome.tif", (1, 1, 8, 8), pixel_um=None)
    assert small.stat().st_size < 4096
    assert upload(client, small).status_code == 201
    assert list(limited.tmp_dir.iterdir()) == []


def test_missing_calibration_is_null(client: TestClient, tmp_path: Path) -> None:
    plain = write_ome_tiff(tmp_path / "nocal.ome.tif", pixel_um=None)
    stack = upload(client, plain).json()["image_stack"]
    assert stack["pixel_size_x"] is None
    assert stack["pixel_size_z"] is None


def test_formats_and_health(client: TestClient) -> None:
    formats = client.get("/api/images/formats/supported")
    assert formats.status_code == 200
    body = formats.json()
    assert body["formats"][".tif"] == {
        "name": "TIFF",
        "available": True,
        "required_package": "tifffile",
        "reader": "TiffReader",
    }
    assert body["formats"][".czi"]["name"] == "CZI"
    assert body["formats"][".nd2"]["required_package"] == "nd2"
    assert {".lif", ".ome.tif", ".stk"} <= set(body["formats"])
    assert isinstance(body["message"], str)
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["database"] == "ok"
    assert health.json()["version"]


def test_viewer_is_served_without_auth(settings: Settings, make_client) -> None:
    client = make_client(settings.model_copy(update={"api_token": "s3cret"}))
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert client.get("/api/health").status_code == 401


def test_unexpected_error_is_500_with_request_id(
    settings: Settings, make_client, tiff_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(settings, raise_server_exceptions=False)
    image_id = upload(client, tiff_file).json()["id"]
    client.app.state.pool  # noqa: B018
    for stored in settings.images_dir.iterdir():
        stored.unlink()  # lost behind the service's back: a server fault, not the client's
    client.app.state.cache.clear()
    response = client.get(f"/api/images/{image_id}/mip", params={"axis": 1})
    body = assert_problem(response, 500, "internal_error")
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"] in body["detail"]
    assert any(body["request_id"] in r.getMessage() and r.exc_info for r in caplog.records)


def test_error_table() -> None:
    from zstack_analyzer import errors
    from zstack_analyzer.service.errors import (
        ImageNotFoundError,
        RoiNotFoundError,
        UploadTooLargeError,
        status_for,
    )

    assert status_for(errors.UnsupportedFormatError("x")) == 400
    assert status_for(errors.CorruptFileError("x")) == 422
    assert status_for(errors.MetadataError("x")) == 422
    assert status_for(errors.LimitExceededError("x")) == 422
    assert status_for(errors.SceneNotFoundError("x")) == 422
    assert status_for(errors.MissingDependencyError("x", package="nd2")) == 500
    assert status_for(ImageNotFoundError("x")) == 404
    assert status_for(UploadTooLargeError("x")) == 413
    assert status_for(errors.InvalidRoiError("x")) == 422
    assert status_for(RoiNotFoundError("x")) == 404


def test_histogram(client: TestClient, tiff_file: Path) -> None:
    image_id = upload(client, tiff_file).json()["id"]
    response = client.get(f"/api/images/{image_id}/histogram")
    assert response.status_code == 200, response.text
    channels = response.json()["channels"]
    assert [c["index"] for c in channels] == [0, 1]
    for channel in channels:
        assert len(channel["bins"]) == 256
        assert channel["min"] <= channel["p_low"] <= channel["p_high"] <= channel["max"]
        assert channel["bin_edges_lo"] <= channel["bin_edges_hi"]
    etag = response.headers["etag"]
    assert (
        client.get(f"/api/images/{image_id}/histogram", headers={"If-None-Match": etag}).status_code
        == 304
    )
    plane = client.get(f"/api/images/{image_id}/histogram", params={"z": 4})
    assert plane.status_code == 200
    assert plane.headers["etag"] != etag
    assert_problem(
        client.get(f"/api/images/{image_id}/histogram", params={"z": 5}), 422, "out_of_range"
    )
    assert_problem(
        client.get(f"/api/images/{image_id}/histogram", params={"scene": 1}), 422, "out_of_range"
    )


def test_missing_dependency_is_500_naming_the_install() -> None:
    """The real handler table on a route raising what a reader raises without its package."""
    from fastapi import FastAPI

    from tests.service.conftest import _testclient_class
    from zstack_analyzer.errors import MissingDependencyError
    from zstack_analyzer.service.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise")
    def _raise() -> None:
        msg = "cells.nd2: is a ND2 file, but its reader needs the package 'nd2': pip install nd2"
        raise MissingDependencyError(msg, package="nd2")

    with _testclient_class()(app) as client:
        body = assert_problem(client.get("/raise"), 500, "missing_dependency")
    assert "pip install nd2" in body["detail"]
    assert body["install"] == "pip install nd2"
    assert "request_id" not in body


def test_upload_without_extension_is_detected_by_content(
    client: TestClient, tiff_file: Path
) -> None:
    response = upload(client, tiff_file, name="stack-without-extension")
    assert response.status_code == 201, response.text
    assert response.json()["image_stack"]["format"] == "OME-TIFF"
    settings: Settings = client.app.state.settings
    # Stored under the detected format's own suffix.
    assert [p.name[32:] for p in settings.images_dir.iterdir()] == [".ome.tif"]


def test_render_error_names_the_upload_not_the_storage(
    settings: Settings, make_client, tmp_path: Path
) -> None:
    client = make_client(settings)
    source = write_ome_tiff(tmp_path / "a.ome.tif")
    image_id = upload(client, source, name="precious.ome.tif").json()["id"]
    [stored] = list(settings.images_dir.iterdir())
    stored.write_bytes(source.read_bytes()[:2000])  # damaged on disk after the upload
    client.app.state.cache.clear()
    response = client.get(f"/api/images/{image_id}/mip", params={"axis": 2})
    assert response.status_code in (400, 422), response.text
    detail = response.json()["detail"]
    assert stored.name not in detail
    assert str(settings.data_dir) not in detail


def test_json_safe() -> None:
    from zstack_analyzer.service.images_service import json_safe

    value = {"a\x00": ["x\x00y", float("nan"), float("inf"), 1.5, 2, None, True]}
    assert json_safe(value) == {"a": ["xy", None, None, 1.5, 2, None, True]}
