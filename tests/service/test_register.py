"""POST /api/images/register: in-place records, the import roots, and reads of changed originals."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pytest

from tests.service.conftest import upload, write_ome_tiff

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    return root


@pytest.fixture
def in_place_client(
    settings: Settings, roots: Path, make_client: Callable[..., TestClient]
) -> TestClient:
    return make_client(settings.model_copy(update={"import_roots": [roots]}))


def _problem(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["code"] == code
    return body


def test_register_then_again_is_present(in_place_client: TestClient, roots: Path) -> None:
    (roots / "a").mkdir()
    source = write_ome_tiff(roots / "a" / "cells.ome.tif")
    first = in_place_client.post("/api/images/register", json={"path": str(source)})
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) == {"message", "id", "image_stack"}  # the same body as an upload
    stack = body["image_stack"]
    assert stack["stored_in_place"] is True
    assert stack["source_path"] == str(source)
    assert (stack["depth"], stack["channels"], stack["format"]) == (5, 2, "OME-TIFF")
    assert stack["size_bytes"] == source.stat().st_size
    again = in_place_client.post("/api/images/register", json={"path": str(source)})
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert in_place_client.get("/api/images/").json()["count"] == 1
    download = in_place_client.get(f"/api/images/{body['id']}/download")
    assert download.content == source.read_bytes()
    assert in_place_client.get(f"/api/images/{body['id']}/slice/2").status_code == 200
    assert in_place_client.get(f"/api/images/{body['id']}/histogram").status_code == 200


def test_register_refusals(in_place_client: TestClient, roots: Path, tmp_path: Path) -> None:
    outside = write_ome_tiff(tmp_path / "outside.ome.tif")
    _problem(
        in_place_client.post("/api/images/register", json={"path": str(outside)}),
        403,
        "outside_import_roots",
    )
    # .. and symlinks are resolved before the roots are checked.
    dotted = roots / ".." / "outside.ome.tif"
    _problem(
        in_place_client.post("/api/images/register", json={"path": str(dotted)}),
        403,
        "outside_import_roots",
    )
    link = roots / "link.ome.tif"
    os.symlink(outside, link)
    _problem(
        in_place_client.post("/api/images/register", json={"path": str(link)}),
        403,
        "outside_import_roots",
    )
    _problem(
        in_place_client.post("/api/images/register", json={"path": "relative/x.tif"}),
        403,
        "outside_import_roots",
    )
    # Missing inside the roots: 404 (outside, 403 first: nothing is revealed there).
    _problem(
        in_place_client.post("/api/images/register", json={"path": str(roots / "no.tif")}),
        404,
        "path_not_found",
    )
    _problem(
        in_place_client.post(
            "/api/images/register", json={"path": str(tmp_path / "nowhere" / "no.tif")}
        ),
        403,
        "outside_import_roots",
    )
    text = roots / "notes.txt"
    text.write_text("hello")
    _problem(
        in_place_client.post("/api/images/register", json={"path": str(text)}),
        400,
        "unsupported_format",
    )
    cut = roots / "cut.ome.tif"
    cut.write_bytes(write_ome_tiff(tmp_path / "whole.ome.tif").read_bytes()[:2000])
    body = _problem(
        in_place_client.post("/api/images/register", json={"path": str(cut)}),
        422,
        "corrupt_file",
    )
    assert "cut.ome.tif" in str(body["detail"])
    folder = roots / "plain-folder"
    folder.mkdir()
    _problem(
        in_place_client.post("/api/images/register", json={"path": str(folder)}),
        400,
        "unsupported_format",
    )
    assert in_place_client.post("/api/images/register", json={}).status_code == 422
    assert in_place_client.get("/api/images/").json()["count"] == 0


def test_in_place_import_is_off_without_roots(client: TestClient, tiff_file: Path) -> None:
    body = _problem(
        client.post("/api/images/register", json={"path": str(tiff_file)}),
        403,
        "outside_import_roots",
    )
    assert "ZSTACK_IMPORT_ROOTS" in str(body["detail"])


def test_changed_missing_refreshed_and_deleted(in_place_client: TestClient, roots: Path) -> None:
    source = write_ome_tiff(roots / "cells.ome.tif")
    image = in_place_client.post("/api/images/register", json={"path": str(source)}).json()
    url = f"/api/images/{image['id']}"
    first = in_place_client.get(f"{url}/thumbnail")
    assert first.status_code == 200
    etag = first.headers["etag"]
    # Changed (new pixels, new size): 409 everywhere the file is read, also for a cached
    # picture and a conditional request, naming the file.
    write_ome_tiff(source, (2, 4, 24, 32), seed=5)
    for request in (
        lambda: in_place_client.get(f"{url}/thumbnail"),
        lambda: in_place_client.get(f"{url}/thumbnail", headers={"If-None-Match": etag}),
        lambda: in_place_client.get(f"{url}/download"),
        lambda: in_place_client.get(f"{url}/histogram"),
        lambda: in_place_client.get(f"{url}/orthogonal"),
    ):
        body = _problem(request(), 409, "original_changed")
        assert str(source) in str(body["detail"])
    # Same size, new mtime: also a change.
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    _problem(in_place_client.get(f"{url}/thumbnail"), 409, "original_changed")
    # Registering it again refreshes the record (200, same id, the new pixels).
    refreshed = in_place_client.post("/api/images/register", json={"path": str(source)})
    assert refreshed.status_code == 200
    assert refreshed.json()["id"] == image["id"]
    assert refreshed.json()["image_stack"]["depth"] == 4
    new = in_place_client.get(f"{url}/thumbnail")
    assert new.status_code == 200
    assert new.headers["etag"] != etag
    # Gone: 410.
    hidden = source.with_name("hidden")
    source.rename(hidden)
    _problem(in_place_client.get(f"{url}/thumbnail"), 410, "original_missing")
    _problem(in_place_client.get(f"{url}/download"), 410, "original_missing")
    hidden.rename(source)
    # Delete: record and renders go, the original stays.
    assert in_place_client.delete(url).status_code == 204
    assert in_place_client.get(url).status_code == 404
    assert source.is_file()
    assert source.read_bytes()[:2] in (b"II", b"MM")


def test_upload_and_register_share_the_thumbnail_pipeline(
    in_place_client: TestClient, roots: Path
) -> None:
    source = write_ome_tiff(roots / "cells.ome.tif")
    registered = in_place_client.post("/api/images/register", json={"path": str(source)}).json()
    uploaded = upload(in_place_client, source).json()
    assert registered["image_stack"]["sha256"] == uploaded["image_stack"]["sha256"]
    deadline = time.monotonic() + 60
    while not in_place_client.get(f"/api/images/{registered['id']}").json()["thumbnail_ready"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    found = in_place_client.get(
        "/api/images/lookup", params={"sha256": registered["image_stack"]["sha256"]}
    ).json()
    assert {item["id"] for item in found["data"]} == {registered["id"], uploaded["id"]}
    assert in_place_client.get("/api/images/lookup", params={"sha256": "x"}).status_code == 422
