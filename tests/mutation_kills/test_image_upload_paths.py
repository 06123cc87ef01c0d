"""The upload and download paths of service/routes/images.py that only some servers take.

Found by mutation testing of the route bodies (helper mut-imgs, eighth round): every
configured test ran on local storage with a peer address, so nothing saw an object-storage
upload stream to its key (the key's suffix, the mirror's name), a download streamed from the
bucket (one range, or the whole file for several), the per-client upload slots keyed by the
peer's address, an upload from a peer without an address (a Unix socket), nor the
configured multipart limits reaching the parser. One app per kind for the session (the
mutation runner keeps them); each test uploads bytes of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import uuid
import zipfile
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from tests.service.conftest import _testclient_class, until_done, write_ome_tiff
from tests.service.live import make_settings
from tests.service.test_s3_service import s3_settings
from tests.synthetic_tiff import write_ome_multifile

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from tests.s3server import S3Server
    from zstack_analyzer.storage.s3 import S3Storage

#: Parts per upload body and uploads in flight per client on the local app.
MAX_PARTS, PER_CLIENT = 3, 2


@pytest.fixture(scope="session")
def bucket_app(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """An app whose originals live in a bucket of the real S3 server."""
    from zstack_analyzer.service.app import create_app

    settings = s3_settings(s3_server, tmp_path_factory.mktemp("s3-images") / "data")
    settings.render.thumbnail_on_upload = False
    with _testclient_class()(create_app(settings)) as client:
        yield client
    bucket = str(settings.storage_url).removeprefix("s3://").split("/", 1)[0]
    httpx.delete(f"{s3_server.endpoint}/{bucket}", timeout=30)


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local app's import root (originals registered in place)."""
    return tmp_path_factory.mktemp("archive")


@pytest.fixture(scope="session")
def local_app(tmp_path_factory: pytest.TempPathFactory, roots: Path) -> Iterator[TestClient]:
    """A local-storage app with small, non-default upload limits and an import root."""
    from zstack_analyzer.service.app import create_app

    settings = make_settings(
        tmp_path_factory.mktemp("local-images") / "data",
        uploads={"max_parts": MAX_PARTS, "max_concurrent_per_client": PER_CLIENT},
        import_roots=[roots],
    )
    settings.render.thumbnail_on_upload = False
    # A failing request answers its 500 here instead of raising in the test.
    with _testclient_class()(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _stack(folder: Path) -> Path:
    """An OME-TIFF whose bytes no other test uploads."""
    return write_ome_tiff(folder / "cells.ome.tif", seed=uuid.uuid4().int % 1000 + 20)


def _post(client: TestClient, path: Path, name: str, **extra: Any) -> httpx.Response:
    with path.open("rb") as fh:
        return client.post("/api/images/upload", files={"file": (name, fh)}, **extra)


def _keys(client: TestClient) -> set[str]:
    storage: S3Storage = client.app.state.storage  # type: ignore[attr-defined]
    return {name for name, _ in storage.stored_objects()}


# --- object storage ---------------------------------------------------------------------------
def test_a_bucket_uploads_own_job_is_done_in_the_server(
    bucket_app: TestClient, tmp_path: Path
) -> None:
    """The local copy of a bucket object may be evicted before a child starts: no child."""
    app: Any = bucket_app.app
    processes = app.state.pool.processes
    starts = processes.starts
    app.state.settings.render.thumbnail_on_upload = True
    try:
        response = _post(bucket_app, _stack(tmp_path), "cells.ome.tif")
    finally:
        app.state.settings.render.thumbnail_on_upload = False
    assert response.status_code == 201, response.text
    url = f"/api/images/{response.json()['id']}"
    until_done(
        "never marked ready", lambda: bucket_app.get(url).json()["thumbnail_ready"], bucket_app
    )
    until_done(
        "quality never stored",
        lambda: bucket_app.get(f"{url}/quality").json()["status"] != "pending",
        bucket_app,
    )
    assert bucket_app.get(f"{url}/quality").json()["status"] == "ready"
    assert processes.starts == starts


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("cells.ome.tiff", ".ome.tiff"),  # a suffix some reader claims: kept
        ("cells.php", ""),  # no reader claims it: the key has none
    ],
)
def test_an_upload_streams_to_a_key_named_by_the_claimed_suffix(
    bucket_app: TestClient, tmp_path: Path, name: str, suffix: str
) -> None:
    """The bytes go to one new object, ``<32 hex><suffix>``; they download unchanged."""
    path = _stack(tmp_path)
    raw = path.read_bytes()
    staging = bucket_app.app.state.storage.temp_path("x").parent  # type: ignore[attr-defined]
    before, staged = _keys(bucket_app), set(staging.iterdir())
    response = _post(bucket_app, path, name)
    assert response.status_code == 201, response.text
    image_id = response.json()["id"]
    new = _keys(bucket_app) - before
    assert len(new) == 1, new
    (key,) = new
    assert re.fullmatch(r"[0-9a-f]{32}" + re.escape(suffix), key), key
    assert set(staging.iterdir()) <= staged  # no staging or temp file of this upload stays
    with bucket_app.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        from zstack_analyzer.service.db.models import Image

        assert session.get(Image, uuid.UUID(image_id)).stored_name == key
    assert bucket_app.get(f"/api/images/{image_id}/download").content == raw


def test_a_refused_upload_leaves_no_object(bucket_app: TestClient, tmp_path: Path) -> None:
    """A body no reader can open: 4xx naming the user's file, and its streamed object removed."""
    junk = tmp_path / "notes.tif"
    junk.write_bytes(uuid.uuid4().bytes * 70_000)  # ~1 MB of noise
    before = _keys(bucket_app)
    response = _post(bucket_app, junk, "notes.tif")
    assert response.status_code in (400, 415, 422), response.text
    assert _keys(bucket_app) == before


def test_a_download_from_the_bucket_sends_one_range_or_the_whole_file(
    bucket_app: TestClient, tmp_path: Path
) -> None:
    """One range: 206 with its Content-Range; several: the whole file (200); past the end: 416."""
    path = _stack(tmp_path)
    raw = path.read_bytes()
    size = len(raw)
    image_id = _post(bucket_app, path, "cells.ome.tif").json()["id"]
    url = f"/api/images/{image_id}/download"

    whole = bucket_app.get(url)
    assert whole.status_code == 200
    assert whole.content == raw
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(size)
    assert whole.headers["etag"] == f'"{hashlib.sha256(raw).hexdigest()}"'
    assert whole.headers["cache-control"] == "private, max-age=3600"
    assert whole.headers["content-disposition"].startswith('attachment; filename="cells.ome.tif"')
    assert "content-range" not in whole.headers

    part = bucket_app.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == raw[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{size}"

    # A range running past the end is clipped to the last byte.
    tail = bucket_app.get(url, headers={"Range": f"bytes={size - 4}-{size + 100}"})
    assert tail.status_code == 206
    assert tail.content == raw[-4:]
    assert tail.headers["content-range"] == f"bytes {size - 4}-{size - 1}/{size}"

    several = bucket_app.get(url, headers={"Range": "bytes=0-9, 20-29"})
    assert several.status_code == 200
    assert several.content == raw

    outside = bucket_app.get(url, headers={"Range": f"bytes={size}-"})
    assert outside.status_code == 416
    assert outside.json()["code"] == "range_not_satisfiable"
    assert outside.headers["content-range"] == f"bytes */{size}"

    assert bucket_app.delete(f"/api/images/{image_id}").status_code == 204
    assert bucket_app.get(url).status_code == 404


# --- local storage: per-client slots, peers without an address, part limits --------------------


def test_upload_slots_are_counted_per_peer_address(local_app: TestClient, tmp_path: Path) -> None:
    """A client with every slot in use gets 429; another address's uploads do not count."""
    slots: Any = local_app.app.state.upload_slots  # type: ignore[attr-defined]
    path = _stack(tmp_path)
    with _holding(slots, "testclient", PER_CLIENT):
        busy = _post(local_app, path, "cells.ome.tif")
        assert busy.status_code == 429, busy.text
        assert f"at most {PER_CLIENT}" in busy.json()["detail"]
        assert busy.headers["Retry-After"]
    with _holding(slots, "10.20.30.40", PER_CLIENT):
        assert _post(local_app, path, "cells.ome.tif").status_code == 201
    assert slots.total == 0


def test_an_upload_from_a_peer_without_an_address(local_app: TestClient, tmp_path: Path) -> None:
    """A Unix-socket peer (ASGI ``client`` None) can upload; its slots are one shared key."""
    transport: Any = local_app._transport  # its `client` is the ASGI scope's peer
    saved = transport.client
    transport.client = None
    try:
        response = _post(local_app, _stack(tmp_path), "cells.ome.tif")
    finally:
        transport.client = saved
    assert response.status_code == 201, response.text


def test_the_configured_part_limit_applies(local_app: TestClient, tmp_path: Path) -> None:
    """More multipart parts than ``uploads.max_parts``: 400, whatever the default allows."""
    path = _stack(tmp_path)
    fields = {f"note{i}": str(i) for i in range(MAX_PARTS)}  # + the file: one part too many
    refused = _post(local_app, path, "cells.ome.tif", data=fields)
    assert refused.status_code == 400, refused.text
    fits = {f"note{i}": str(i) for i in range(MAX_PARTS - 1)}
    assert _post(local_app, path, "cells.ome.tif", data=fits).status_code == 201


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("cells.ome.tiff", ".ome.tiff"),  # the detected format claims the client's suffix
        ("cells.tif", ".ome.tif"),  # it does not (plain TIFF's): the format's own
        ("cells.php", ".ome.tif"),  # no reader claims it
    ],
)
def test_a_local_upload_is_stored_under_the_detected_formats_suffix(
    local_app: TestClient, tmp_path: Path, name: str, suffix: str
) -> None:
    """The stored file's suffix is the client's only when the detected format claims it."""
    from zstack_analyzer.service.db.models import Image

    response = _post(local_app, _stack(tmp_path), name)
    assert response.status_code == 201, response.text
    with local_app.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        stored = session.get(Image, uuid.UUID(response.json()["id"])).stored_name
    assert re.fullmatch(r"[0-9a-f]{32}" + re.escape(suffix), stored), stored


def test_an_upload_whose_row_cannot_be_written_leaves_no_file(
    local_app: TestClient, tmp_path: Path
) -> None:
    """The database refuses the insert: 500, and the file already stored is removed again."""
    from sqlalchemy import text

    app: Any = local_app.app
    images_dir = app.state.storage.images_dir
    name = f"refused-{uuid.uuid4().hex[:8]}.ome.tif"
    trigger = f"refuse_{uuid.uuid4().hex[:8]}"
    with app.state.database.engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE TRIGGER {trigger} BEFORE INSERT ON images WHEN NEW.filename = '{name}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        )
    before, staged = set(images_dir.iterdir()), set(app.state.storage.tmp_dir.iterdir())
    try:
        refused = _post(local_app, _stack(tmp_path), name)
    finally:
        with app.state.database.engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {trigger}"))
    assert refused.status_code == 500
    assert set(images_dir.iterdir()) == before
    assert set(app.state.storage.tmp_dir.iterdir()) <= staged


def test_an_upload_is_inspected_under_the_configured_read_limits(
    local_app: TestClient, tmp_path: Path
) -> None:
    """A file over the server's ``max_planes`` is refused at upload, whatever the defaults allow."""
    limits: Any = local_app.app.state.settings.limits  # type: ignore[attr-defined]
    saved = limits.max_planes
    limits.max_planes = 3  # the stack has 2 x 5 planes
    try:
        refused = _post(local_app, _stack(tmp_path), "cells.ome.tif")
    finally:
        limits.max_planes = saved
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "limit_exceeded"
    assert refused.json()["detail"] == "cells.ome.tif: declares 10 planes, over the limit of 3"


def test_a_download_whose_stored_file_went_away_says_so(
    local_app: TestClient, tmp_path: Path
) -> None:
    """The record stays but its stored copy is gone: 404 naming the user's file and why."""
    from zstack_analyzer.service.db.models import Image

    image_id = _post(local_app, _stack(tmp_path), "lost.ome.tif").json()["id"]
    app: Any = local_app.app
    with app.state.database.sessions() as session:
        stored = session.get(Image, uuid.UUID(image_id)).stored_name
    app.state.storage.path(stored).unlink()
    got = local_app.get(f"/api/images/{image_id}/download")
    assert got.status_code == 404
    assert got.json()["detail"] == "lost.ome.tif: the stored file is missing"


def test_an_in_place_original_downloads_with_the_documented_headers(
    local_app: TestClient, roots: Path
) -> None:
    """Sent from its descriptor: octet-stream, the content ETag, the display name, its length."""
    source = write_ome_tiff(roots / f"{uuid.uuid4().hex[:8]}.ome.tif", seed=77)
    data = source.read_bytes()
    image_id = local_app.post("/api/images/register", json={"path": str(source)}).json()["id"]
    got = local_app.get(f"/api/images/{image_id}/download")
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert got.headers["cache-control"] == "private, max-age=3600"
    assert got.headers["content-disposition"].startswith(f'attachment; filename="{source.name}"')
    assert got.headers["content-length"] == str(len(data))


def test_a_multi_file_original_downloads_as_one_zip(local_app: TestClient, roots: Path) -> None:
    """An in-place multi-file OME-TIFF: every file of the set in one zip named after the image."""
    folder = roots / uuid.uuid4().hex
    folder.mkdir()
    stack = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(1, 1, 3, 8, 8)
    members, companion = write_ome_multifile(folder, stack)
    created = local_app.post("/api/images/register", json={"path": str(members[0])})
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    filename = local_app.get(f"/api/images/{image_id}").json()["filename"]

    got = local_app.get(f"/api/images/{image_id}/download")
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    assert got.headers.get_list("content-disposition") == [
        f"attachment; filename=\"{filename}.zip\"; filename*=UTF-8''{filename}.zip"
    ]
    assert got.headers["etag"].startswith('"') and got.headers["cache-control"]
    with zipfile.ZipFile(io.BytesIO(got.content)) as archive:
        names = set(archive.namelist())
        assert {p.name for p in [*members, companion]} <= {n.rsplit("/", 1)[-1] for n in names}
        for member in members:
            (inside,) = [n for n in names if n.endswith(member.name)]
            assert archive.read(inside) == member.read_bytes()

    # Not modified: the 304 carries the zip's headers too (one Content-Disposition).
    same = local_app.get(
        f"/api/images/{image_id}/download", headers={"If-None-Match": got.headers["etag"]}
    )
    assert same.status_code == 304


def test_a_folder_original_cannot_be_downloaded_as_one_file(
    local_app: TestClient, roots: Path
) -> None:
    """An in-place OME-Zarr folder: 404 saying why, not a listing or a server error."""
    from tests.service.test_confinement import write_ome_zarr

    folder = roots / f"{uuid.uuid4().hex}.ome.zarr"
    write_ome_zarr(folder)
    created = local_app.post("/api/images/register", json={"path": str(folder)})
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    filename = local_app.get(f"/api/images/{image_id}").json()["filename"]
    got = local_app.get(f"/api/images/{image_id}/download")
    assert got.status_code == 404
    assert got.json()["detail"] == f"{filename}: is a folder; it cannot be downloaded as one file"


@contextlib.contextmanager
def _holding(slots: Any, client: str, count: int) -> Iterator[None]:
    """Hold ``count`` upload slots of ``client``, as uploads in flight would."""
    with contextlib.ExitStack() as stack:
        for _ in range(count):
            stack.enter_context(slots.hold(client))
        yield
