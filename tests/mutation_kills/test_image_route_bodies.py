"""The bodies of the image routes (service/routes/images.py), over HTTP on a users-mode app.

Found by mutation testing once the runner mutated decorated functions: the route tests
check an upload's 201 and a download's bytes, not the upload's headers (Location,
X-Duplicate-Of only for a duplicate), its message, audit event and log line, the
record's owner name (the labels ``GET /{id}`` looks up), the list's filter, paging and
count, the metadata route's scene check and its message, nor a download's ETag,
cache and disposition headers on a 304, its 416's Content-Range and detail, or its
audit event. One app for the session; each test uploads bytes of its own.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.service_db import _template
from tests.service.authworld import FAST_PASSWORDS
from tests.service.conftest import _testclient_class, until_done, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.service.auth.audit import AuditEvent
from zstack_analyzer.service.config import AccountSettings
from zstack_analyzer.service.routes.images import default_thumbnail_spec

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

LOGGER = "zstack_analyzer.service.routes.images"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A users-mode app (kept by the mutation runner) and its admin's auth header."""
    from zstack_analyzer.service.app import create_app
    from zstack_analyzer.service.auth import accounts

    data = tmp_path_factory.mktemp("image-routes") / "data"
    data.mkdir()
    shutil.copyfile(_template(), data / "zstack.db")
    settings = make_settings(data, accounts=AccountSettings(**FAST_PASSWORDS), auth="users")
    settings.render.thumbnail_on_upload = False
    with _testclient_class()(create_app(settings)) as client:
        with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
            accounts.create_user(session, "root", admin=True)
            token = accounts.create_token(session, "root", name="t")[1]
        yield client, {"Authorization": f"Bearer {token}"}


def _upload(server: tuple[TestClient, dict[str, str]], path: Path, name: str | None = None) -> Any:
    client, auth = server
    with path.open("rb") as fh:
        return client.post(
            "/api/images/upload", files={"file": (name or path.name, fh)}, headers=auth
        )


def _stack(folder: Path) -> Path:
    """An OME-TIFF whose bytes no other test uploads."""
    return write_ome_tiff(folder / "cells.ome.tif", seed=uuid.uuid4().int % 1000 + 20)


def _audit(client: TestClient, action: str) -> list[tuple[str | None, dict[str, Any]]]:
    app: Any = client.app
    app.state.audit.flush()
    with app.state.database.sessions() as session:
        rows = session.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id)
        return [(row.target, dict(row.details)) for row in rows]


def test_upload_answers_headers_record_event_and_log(
    server: tuple[TestClient, dict[str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = server
    source = _stack(tmp_path)
    name = f"u{uuid.uuid4().hex[:6]}.ome.tif"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        first = _upload(server, source, name)
    assert first.status_code == 201, first.text
    body = first.json()
    image_id = body["id"]
    assert body["message"] == "File uploaded successfully"
    assert first.headers["location"] == f"/api/images/{image_id}"
    assert "x-duplicate-of" not in first.headers
    stack = body["image_stack"]
    assert stack["id"] == image_id
    assert stack["filename"] == name
    assert stack["size_bytes"] == source.stat().st_size
    assert stack["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert stack["format"] == "OME-TIFF"
    event = {"image_id": image_id, "group": "default", "via": "api-token"}
    assert (image_id, event) in _audit(client, "upload")
    size = source.stat().st_size
    line = f"stored {name} as {image_id} (OME-TIFF, {size} bytes)"
    assert line in [r.getMessage() for r in caplog.records if r.name == LOGGER]

    second = _upload(server, source, "again.ome.tif")
    assert second.status_code == 201
    assert second.headers["x-duplicate-of"] == image_id
    assert second.json()["id"] != image_id
    stored = client.app.state.settings.images_dir  # type: ignore[attr-defined]
    assert not list(stored.rglob("*.upload"))  # the staging file was renamed


def test_a_refused_upload_names_the_users_file_and_leaves_nothing(
    server: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, _ = server
    bad = tmp_path / "broken.ome.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 60)
    settings: Any = client.app.state.settings  # type: ignore[attr-defined]
    before = sorted(p.name for p in settings.images_dir.rglob("*") if p.is_file())
    response = _upload(server, bad, "mine.ome.tif")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "mine.ome.tif" in detail
    assert ".upload" not in detail
    # The staging file's whole path is replaced, not only its name inside the path.
    assert str(client.app.state.storage.tmp_dir) not in detail  # type: ignore[attr-defined]
    assert str(settings.data_dir) not in detail
    after = sorted(p.name for p in settings.images_dir.rglob("*") if p.is_file())
    assert after == before


def test_get_names_the_owner_and_list_filters_pages_and_counts(
    server: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, auth = server
    tag = uuid.uuid4().hex[:8]
    ids = []
    for i in range(3):
        source = write_ome_tiff(tmp_path / f"{i}.ome.tif", seed=uuid.uuid4().int % 1000 + 20)
        ids.append(_upload(server, source, f"{tag}-{i}.ome.tif").json()["id"])
    record = client.get(f"/api/images/{ids[0]}", headers=auth).json()
    assert record["owner"] == "root"
    assert record["group"] == "default"
    assert record["filename"] == f"{tag}-0.ome.tif"
    assert client.get(f"/api/images/{uuid.uuid4()}", headers=auth).status_code == 404

    for path in ("/api/images/", "/api/images"):
        page = client.get(path, params={"q": tag, "limit": 2, "skip": 0}, headers=auth).json()
        assert page["count"] == 3
        assert [d["id"] for d in page["data"]] == [ids[2], ids[1]]  # newest first
        assert page["data"][0]["owner"] == "root"
        rest = client.get(path, params={"q": tag, "limit": 2, "skip": 2}, headers=auth).json()
        assert [d["id"] for d in rest["data"]] == [ids[0]]
        assert rest["count"] == 3
    mine = client.get("/api/images/", params={"q": tag, "group": "default"}, headers=auth)
    assert mine.json()["count"] == 3
    nobody = client.get("/api/images/", params={"q": tag, "group": "none-such"}, headers=auth)
    assert nobody.json()["count"] == 0


def test_metadata_scene_zero_and_the_scene_check(
    server: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, auth = server
    name = f"m{uuid.uuid4().hex[:6]}.ome.tif"
    image_id = _upload(server, _stack(tmp_path), name).json()["id"]
    url = f"/api/images/{image_id}/metadata"
    zero = client.get(url, headers=auth)
    assert zero.status_code == 200
    assert zero.json()["file_format"] == "OME-TIFF"
    assert zero.json()["scenes"][0]["size_z"] == 5
    for scene in (1, -1):
        refused = client.get(url, params={"scene": scene}, headers=auth)
        assert refused.status_code == 422
        assert refused.json()["detail"] == f"{name}: scene {scene} is out of range (0..0)"


def test_download_headers_304_416_and_event(
    server: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, auth = server
    source = _stack(tmp_path)
    body = _upload(server, source, "d;l.ome.tif").json()
    image_id, sha = body["id"], body["image_stack"]["sha256"]
    url = f"/api/images/{image_id}/download"
    size = source.stat().st_size
    disposition = "attachment; filename=\"d_l.ome.tif\"; filename*=UTF-8''d%3Bl.ome.tif"
    whole = client.get(url, headers=auth)
    assert whole.status_code == 200
    assert whole.content == source.read_bytes()
    assert whole.headers["etag"] == f'"{sha}"'
    assert whole.headers["cache-control"] == "private, max-age=3600"
    assert whole.headers["content-disposition"] == disposition
    assert whole.headers["content-type"] == "application/octet-stream"
    assert (image_id, {"image_id": image_id, "via": "api-token"}) in _audit(client, "download")

    cached = client.get(url, headers={**auth, "If-None-Match": f'"{sha}"'})
    assert cached.status_code == 304
    assert cached.headers["etag"] == f'"{sha}"'
    assert cached.headers["cache-control"] == "private, max-age=3600"
    assert cached.headers["content-disposition"] == disposition

    part = client.get(url, headers={**auth, "Range": "bytes=2-9"})
    assert part.status_code == 206
    assert part.content == source.read_bytes()[2:10]

    refused = client.get(url, headers={**auth, "Range": f"bytes={size}-"})
    assert refused.status_code == 416
    assert refused.headers["content-range"] == f"bytes */{size}"
    assert refused.json()["detail"] == (
        f"d;l.ome.tif has {size:,} bytes; no requested range starts inside it"
    )


def test_delete_answers_204_and_the_record_is_gone(
    server: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, auth = server
    image_id = _upload(server, _stack(tmp_path)).json()["id"]
    deleted = client.delete(f"/api/images/{image_id}", headers=auth)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"/api/images/{image_id}", headers=auth).status_code == 404
    assert client.delete(f"/api/images/{image_id}", headers=auth).status_code == 404
    app: Any = client.app
    app.state.audit.flush()
    with app.state.database.sessions() as session:
        rows = session.query(AuditEvent).filter_by(action="delete", target=image_id).all()
        # Who deleted it, from where: the route's principal and request reach the event.
        assert [(r.username, r.client, r.details) for r in rows] == [
            ("root", "testclient", {"image_id": image_id, "via": "api-token"})
        ]


def test_a_second_delete_of_a_row_already_gone_is_a_404_naming_the_id(
    server: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    """Two deletes of one image at once: the one that finds no row left answers 404."""
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.errors import ImageNotFoundError
    from zstack_analyzer.service.routes.images import remove_image

    client, auth = server
    app: Any = client.app
    image_id = _upload(server, _stack(tmp_path)).json()["id"]
    with app.state.database.sessions() as session:
        image = session.get(Image, uuid.UUID(image_id))
        assert image is not None
        session.expunge(image)
    assert client.delete(f"/api/images/{image_id}", headers=auth).status_code == 204
    state = app.state

    async def again() -> None:
        await remove_image(
            image, state.database, state.storage, state.pool, state.cache, state.records, None, None
        )

    with pytest.raises(ImageNotFoundError) as raised:
        client.portal.call(again)  # type: ignore[union-attr]
    assert raised.value.message == f"no image with id {image_id!r}"


def test_an_upload_schedules_its_thumbnail_and_quality(
    server: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    """With ``thumbnail_on_upload`` the route schedules the default thumbnail after the 201."""
    client, auth = server
    settings: Any = client.app.state.settings  # type: ignore[attr-defined]
    settings.render.thumbnail_on_upload = True
    try:
        body = _upload(server, _stack(tmp_path)).json()
    finally:
        settings.render.thumbnail_on_upload = False
    url = f"/api/images/{body['id']}"
    until_done(
        "never marked ready",
        lambda: client.get(url, headers=auth).json()["thumbnail_ready"],
        client,
    )
    quality = f"{url}/quality"
    until_done(
        "quality never stored",
        lambda: client.get(quality, headers=auth).json()["status"] != "pending",
        client,
    )
    assert client.get(quality, headers=auth).json()["status"] == "ready"
    sha = body["image_stack"]["sha256"]
    cache: Any = client.app.state.cache  # type: ignore[attr-defined]
    cached = cache.get(sha, default_thumbnail_spec().cache_key(sha))
    assert cached is not None
    assert cached.startswith(b"\x89PNG")
