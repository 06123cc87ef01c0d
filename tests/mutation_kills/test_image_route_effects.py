"""What the image routes leave behind (service/routes/images.py), through one started app.

Found by mutation testing: the route tests check a delete's 204 and the files it
removes, but not that deleting one of two uploads of the same bytes keeps their
shared renders, that a render folder shared by two files stays, the audit event
and the log line of a delete, a delete during an object-storage outage, that the
descriptor of an in-place original is closed after a download (whole, ranged or
refused with 416), nor the metadata of a scene other than the first (whose read
errors named the stored file, not the user's: fixed); the upload's
background job (thumbnail into the cache, quality into the database, in a child
process only for a file that stays put) was only seen through its effects on the
next thumbnail request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from tests.service.conftest import (
    _testclient_class,
    pool_idle,
    until_done,
    upload,
    write_ome_tiff,
)
from tests.service.live import make_settings
from zstack_analyzer.cache import RenderCache
from zstack_analyzer.service.auth.audit import AuditEvent
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.routes.images import (
    default_thumbnail_spec,
    render_and_measure_in_child,
    schedule_default_thumbnail,
)
from zstack_analyzer.storage.base import StorageUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

LOGGER = "zstack_analyzer.service.routes.images"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archive")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, roots: Path) -> Iterator[TestClient]:
    """One app for the module: in-place registration under ``roots``, no upload renders."""
    from zstack_analyzer.service.app import create_app

    settings = make_settings(tmp_path_factory.mktemp("data"), import_roots=[roots])
    settings.render.thumbnail_on_upload = False
    # The background children stop soon after a job: a test sees whether a job started them.
    settings.render.background_idle_seconds = 2.0
    with _testclient_class()(create_app(settings)) as test_client:
        yield test_client


def _identity_dir(client: TestClient, sha256: str) -> Path:
    return client.app.state.cache.path_for(sha256, "x").parent  # type: ignore[attr-defined]


def _audit(client: TestClient, action: str) -> list[tuple[str | None, dict[str, Any]]]:
    app: Any = client.app
    app.state.audit.flush()
    with app.state.database.sessions() as session:
        rows = session.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id)
        return [(row.target, dict(row.details)) for row in rows]


def test_deleting_one_of_two_copies_keeps_their_renders(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_ome_tiff(tmp_path / "dup.ome.tif", seed=11)
    first = upload(client, source).json()["id"]
    second = upload(client, source, name="again.ome.tif").json()
    sha = second["image_stack"]["sha256"]
    assert client.get(f"/api/images/{second['id']}/thumbnail").status_code == 200
    renders = _identity_dir(client, sha)
    kept = sorted(p.name for p in renders.iterdir())
    assert kept

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert client.delete(f"/api/images/{first}").status_code == 204
    assert f"deleted image {first} (dup.ome.tif)" in [
        r.getMessage() for r in caplog.records if r.name == LOGGER
    ]
    assert (first, {"image_id": first, "via": "none"}) in _audit(client, "delete")
    assert sorted(p.name for p in renders.iterdir()) == kept  # the other copy's renders stay
    assert client.get(f"/api/images/{first}").status_code == 404

    fan_out = renders.parent
    others = [p for p in fan_out.iterdir() if p.name != sha]
    assert client.delete(f"/api/images/{second['id']}").status_code == 204
    assert not renders.exists()
    assert fan_out.exists() == bool(others)


def _two_files_sharing_a_render_folder(tmp_path: Path) -> tuple[Path, Path]:
    """Two different OME-TIFFs whose sha256 start alike (the cache's fan-out folder)."""
    seen: dict[str, Path] = {}
    for seed in range(2000):
        path = write_ome_tiff(tmp_path / f"s{seed}.ome.tif", (1, 1, 8, 8), seed=seed)
        prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:2]
        if prefix in seen:
            return seen[prefix], path
        seen[prefix] = path
    raise AssertionError("no two files share a prefix")  # pragma: no cover


def test_a_render_folder_shared_with_another_file_stays(client: TestClient, tmp_path: Path) -> None:
    one, two = _two_files_sharing_a_render_folder(tmp_path)
    ids = [upload(client, path).json()["id"] for path in (one, two)]
    for image_id in ids:
        assert client.get(f"/api/images/{image_id}/thumbnail").status_code == 200
    sha_two = hashlib.sha256(two.read_bytes()).hexdigest()
    assert client.delete(f"/api/images/{ids[0]}").status_code == 204
    assert any(_identity_dir(client, sha_two).iterdir())
    assert client.get(f"/api/images/{ids[1]}").status_code == 200
    assert client.delete(f"/api/images/{ids[1]}").status_code == 204


def test_a_delete_during_an_outage_is_done_and_says_so(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    source = write_ome_tiff(tmp_path / "outage.ome.tif", seed=12)
    body = upload(client, source).json()
    image_id, stored = body["id"], body["image_stack"]
    storage: Any = client.app.state.storage  # type: ignore[attr-defined]
    images_dir = client.app.state.settings.images_dir  # type: ignore[attr-defined]
    path = next(p for p in images_dir.iterdir() if p.read_bytes() == source.read_bytes())

    def down(_name: str) -> bool:
        raise StorageUnavailableError("remove to object storage failed: bucket down")

    monkeypatch.setattr(storage, "remove", down)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert client.delete(f"/api/images/{image_id}").status_code == 204
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert (
        f"deleted image {image_id}, but its object stays for the sweep: "
        "remove to object storage failed: bucket down"
    ) in messages
    assert f"deleted image {image_id} ({stored['filename']})" in messages
    assert client.get(f"/api/images/{image_id}").status_code == 404
    assert path.is_file()  # for the sweep


def _descriptors_on(path: Path) -> list[int]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(int(fd))
        except OSError:
            continue
    return found


def test_in_place_downloads_close_the_original_and_delete_keeps_it(
    client: TestClient, roots: Path
) -> None:
    source = write_ome_tiff(roots / "kept.ome.tif", seed=13)
    data = source.read_bytes()
    created = client.post("/api/images/register", json={"path": str(source)})
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]

    assert client.get(f"/api/images/{image_id}/download").content == data
    part = client.get(f"/api/images/{image_id}/download", headers={"Range": "bytes=4-9"})
    assert (part.status_code, part.content) == (206, data[4:10])
    refused = client.get(
        f"/api/images/{image_id}/download", headers={"Range": f"bytes={len(data)}-"}
    )
    assert refused.status_code == 416
    assert _descriptors_on(source) == []

    assert client.delete(f"/api/images/{image_id}").status_code == 204
    assert source.read_bytes() == data
    assert client.get(f"/api/images/{image_id}").status_code == 404


def test_metadata_of_a_later_scene_is_read_from_the_file(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(np.zeros((3, 16, 20), np.uint16), metadata={"axes": "ZYX"})
        tif.write(np.ones((2, 6, 10), np.uint8), metadata={"axes": "ZYX", "PhysicalSizeX": 0.25})
    image_id = upload(client, path, name="pair.ome.tif").json()["id"]
    first = client.get(f"/api/images/{image_id}/metadata").json()
    later = client.get(f"/api/images/{image_id}/metadata", params={"scene": 1})
    assert later.status_code == 200, later.text
    body = later.json()
    assert body["filename"] == "pair.ome.tif"
    assert (body["size_z"], body["size_y"], body["size_x"]) == (2, 6, 10)
    assert (first["size_z"], first["size_y"], first["size_x"]) == (3, 16, 20)
    assert body["dtype"] == "uint8"
    assert body["physical_size"]["x_um"] == 0.25
    assert isinstance(body["provenance"], dict)
    missing = client.get(f"/api/images/{uuid.uuid4()}/metadata", params={"scene": 1})
    assert missing.status_code == 404
    # The file is read under the app's limits (here smaller than the file), not the defaults.
    monkeypatch.setattr(client.app.state.settings.limits, "max_dimension", 8)  # type: ignore[attr-defined]
    refused = client.get(f"/api/images/{image_id}/metadata", params={"scene": 1})
    assert (refused.status_code, refused.json()["code"]) == (422, "limit_exceeded")
    # ... and the message names the user's file, never the stored one (a defect, fixed).
    stored, _sha = _stored(client, image_id)
    assert refused.json()["detail"].startswith("pair.ome.tif: ")
    assert stored.name not in refused.json()["detail"]


def _stored(client: TestClient, image_id: str) -> tuple[Path, str]:
    app: Any = client.app
    with app.state.database.sessions() as session:
        row = session.get(Image, uuid.UUID(image_id))
        assert row is not None
        return app.state.storage.path(row.stored_name), row.sha256


def _until(what: str, ready: Any) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _background_job(client: TestClient, tmp_path: Path, seed: int, **options: Any) -> int:
    """Upload, schedule the default thumbnail job, wait for it; how often children started."""
    app: Any = client.app
    processes = app.state.pool.processes
    image_id = upload(client, write_ome_tiff(tmp_path / "bg.ome.tif", seed=seed)).json()["id"]
    path, sha = _stored(client, image_id)
    _until("the children never stopped", lambda: not processes.running)
    starts = processes.starts

    async def schedule() -> None:
        schedule_default_thumbnail(
            app.state.pool,
            app.state.database,
            app.state.cache,
            app.state.settings.limits.read_limits(),
            uuid.UUID(image_id),
            path,
            sha,
            **options,
        )

    client.portal.call(schedule)  # type: ignore[union-attr]
    url = f"/api/images/{image_id}"
    until_done("never marked ready", lambda: client.get(url).json()["thumbnail_ready"], client)
    until_done(
        "quality never stored",
        lambda: client.get(f"{url}/quality").json()["status"] != "pending",
        client,
    )
    quality = client.get(f"{url}/quality").json()
    assert quality["status"] == "ready", quality
    assert quality["scene"] == 0
    spec = default_thumbnail_spec()
    cached = app.state.cache.get(sha, spec.cache_key(sha))
    assert cached is not None and cached.startswith(b"\x89PNG")
    thumbnail = client.get(f"{url}/thumbnail")
    assert thumbnail.content == cached
    return int(processes.starts - starts)


def test_a_file_that_may_go_away_is_measured_in_the_server(
    client: TestClient, tmp_path: Path
) -> None:
    assert _background_job(client, tmp_path, 22, stays_put=False) == 0


def test_the_upload_job_renders_and_measures_in_a_child(client: TestClient, tmp_path: Path) -> None:
    assert _background_job(client, tmp_path, 21) == 1


def test_the_child_job_returns_the_cached_picture_and_the_measures(
    client: TestClient, tmp_path: Path
) -> None:
    app: Any = client.app
    image_id = upload(client, write_ome_tiff(tmp_path / "c.ome.tif", seed=23)).json()["id"]
    path, sha = _stored(client, image_id)
    spec = default_thumbnail_spec()
    limits = app.state.settings.limits.read_limits()
    measured: list[Any] = []
    result = render_and_measure_in_child(
        app.state.pool.processes, measured, path, spec, limits, app.state.cache, sha
    )
    assert result.data == app.state.cache.get(sha, spec.cache_key(sha))
    assert result.data.startswith(b"\x89PNG")
    assert (result.media_type, result.etag, result.from_cache) == (
        "image/png",
        spec.cache_key(sha),
        False,
    )
    assert len(measured) == 1
    assert [q.scene for q in measured[0]] == [0]

    # A cache that keeps nothing: the picture is rendered here instead.
    nothing = RenderCache(tmp_path / "zero", max_bytes=0)
    again: list[Any] = []
    fallback = render_and_measure_in_child(
        app.state.pool.processes, again, path, spec, limits, nothing, sha
    )
    assert fallback.data == result.data
    assert (fallback.media_type, fallback.etag, fallback.from_cache) == (
        "image/png",
        spec.cache_key(sha),
        False,
    )
    assert [q.scene for q in again[0]] == [0]


def test_the_file_response_sees_our_range_and_the_clients_other_headers(
    client: TestClient, tmp_path: Path
) -> None:
    source = write_ome_tiff(tmp_path / "ranged.ome.tif", seed=31)
    data = source.read_bytes()
    url = f"/api/images/{upload(client, source).json()['id']}/download"
    etag = client.get(url).headers["etag"]
    invalid = client.get(url, headers={"Range": "bytes=9-3"})  # ignored: the whole file
    assert (invalid.status_code, invalid.content) == (200, data)
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert (stale.status_code, stale.content) == (200, data)
    fresh = client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert (fresh.status_code, fresh.content) == (206, data[:10])


def test_a_delete_is_seen_at_once_by_another_server_process(
    client: TestClient, tmp_path: Path
) -> None:
    """Another app on the same data dir stops serving a deleted image within its memo's TTL."""
    from zstack_analyzer.service.app import create_app

    app: Any = client.app
    image_id = upload(client, write_ome_tiff(tmp_path / "seen.ome.tif", seed=41)).json()["id"]
    with _testclient_class()(create_app(app.state.settings)) as other:
        url = f"/api/images/{image_id}/thumbnail"
        first = other.get(url)  # its memo now holds the row
        assert first.status_code == 200
        assert client.delete(f"/api/images/{image_id}").status_code == 204
        again = other.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 404, "another process served a deleted image"


def test_deleting_a_copy_waits_for_the_job_the_other_copy_shares(
    client: TestClient, tmp_path: Path
) -> None:
    """Two uploads of the same bytes share one thumbnail job, which reads the first's file.

    Deleting the first while that job runs must not remove the file under it: the copy
    that stays would never get its thumbnail.
    """
    app: Any = client.app
    source = write_ome_tiff(tmp_path / "shared.ome.tif", seed=42)
    app.state.settings.render.thumbnail_on_upload = True
    try:
        first = upload(client, source).json()["id"]
        kept = upload(client, source, name="kept.ome.tif").json()
    finally:
        app.state.settings.render.thumbnail_on_upload = False
    assert client.delete(f"/api/images/{first}").status_code == 204
    url = f"/api/images/{kept['id']}"
    until_done(
        "the copy never got its thumbnail",
        lambda: client.get(url).json()["thumbnail_ready"],
        client,
    )
    sha = kept["image_stack"]["sha256"]
    cached = app.state.cache.get(sha, default_thumbnail_spec().cache_key(sha))
    assert cached is not None and cached.startswith(b"\x89PNG")
    assert client.delete(url).status_code == 204


def test_an_uploads_own_job_renders_and_measures_in_a_child(
    client: TestClient, tmp_path: Path
) -> None:
    """The route schedules its job for a file that stays put (local storage): in a child."""
    app: Any = client.app
    processes = app.state.pool.processes
    _until("the children never stopped", lambda: not processes.running)
    starts = processes.starts
    app.state.settings.render.thumbnail_on_upload = True
    try:
        body = upload(client, write_ome_tiff(tmp_path / "own.ome.tif", seed=43)).json()
    finally:
        app.state.settings.render.thumbnail_on_upload = False
    url = f"/api/images/{body['id']}"
    until_done("never marked ready", lambda: client.get(url).json()["thumbnail_ready"], client)
    until_done(
        "quality never stored",
        lambda: client.get(f"{url}/quality").json()["status"] != "pending",
        client,
    )
    assert client.get(f"{url}/quality").json()["status"] == "ready"
    assert processes.starts - starts == 1


def _second_scene_undecodable(path: Path) -> Path:
    """Two scenes; the second's compressed planes are garbage (its metadata is intact)."""
    rng = np.random.default_rng(44)
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(rng.integers(0, 4000, (2, 16, 20)).astype(np.uint16), metadata={"axes": "ZYX"})
        tif.write(
            rng.integers(0, 4000, (2, 16, 20)).astype(np.uint16),
            metadata={"axes": "ZYX"},
            compression="zlib",
        )
    with tifffile.TiffFile(path) as tif:
        strips = [
            (offset, count)
            for page in tif.series[1].pages
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)
        ]
    raw = bytearray(path.read_bytes())
    for offset, count in strips:
        raw[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(raw))
    return path


def test_an_uploads_failed_quality_is_stored_naming_the_users_file(
    client: TestClient, tmp_path: Path
) -> None:
    """The thumbnail (scene 0) is made; the measures fail on scene 1: stored as failed, why."""
    app: Any = client.app
    source = _second_scene_undecodable(tmp_path / "bad.ome.tif")
    app.state.settings.render.thumbnail_on_upload = True
    try:
        image_id = upload(client, source, name="pair.ome.tif").json()["id"]
    finally:
        app.state.settings.render.thumbnail_on_upload = False
    url = f"/api/images/{image_id}"
    until_done("never marked ready", lambda: client.get(url).json()["thumbnail_ready"], client)
    until_done(
        "no quality stored",
        lambda: client.get(f"{url}/quality").json()["status"] != "pending",
        client,
    )
    quality = client.get(f"{url}/quality").json()
    assert quality["status"] == "failed", quality
    assert quality["error"].startswith("pair.ome.tif: cannot decode plane"), quality
    stored, _sha = _stored(client, image_id)
    assert stored.name not in quality["error"]  # our storage name is never shown


def _schedule(client: TestClient, image_id: str, limits: Any, **options: Any) -> None:
    app: Any = client.app
    path, sha = _stored(client, image_id)

    async def schedule() -> None:
        schedule_default_thumbnail(
            app.state.pool,
            app.state.database,
            app.state.cache,
            limits,
            uuid.UUID(image_id),
            path,
            sha,
            **options,
        )

    client.portal.call(schedule)  # type: ignore[union-attr]


def test_without_measures_the_job_only_renders(client: TestClient, tmp_path: Path) -> None:
    app: Any = client.app
    image_id = upload(client, write_ome_tiff(tmp_path / "r.ome.tif", seed=45)).json()["id"]
    _schedule(client, image_id, app.state.settings.limits.read_limits(), measure_quality=False)
    url = f"/api/images/{image_id}"
    until_done("never marked ready", lambda: client.get(url).json()["thumbnail_ready"], client)
    pool_idle(client)  # the follow-up is over: it stored no measures
    assert client.get(f"{url}/quality").json()["status"] == "pending"
    _path, sha = _stored(client, image_id)
    assert app.state.cache.get(sha, default_thumbnail_spec().cache_key(sha)) is not None


def test_the_job_reads_under_the_limits_it_is_given(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Limits tighter than the file (the server's, changed since): the job refuses it."""
    from zstack_analyzer.limits import ReadLimits

    image_id = upload(client, write_ome_tiff(tmp_path / "l.ome.tif", seed=46)).json()["id"]
    url = f"/api/images/{image_id}"
    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.service.workers"):
        _schedule(client, image_id, ReadLimits(max_dimension=8), stays_put=False)
        pool_idle(client)
    assert not client.get(url).json()["thumbnail_ready"]
    assert client.get(f"{url}/quality").json()["status"] == "pending"
    failed = [r.getMessage() for r in caplog.records if "background job" in r.getMessage()]
    assert any("over the limit of 8" in m for m in failed), failed


def test_two_images_jobs_at_once_each_render_their_own(client: TestClient, tmp_path: Path) -> None:
    """Jobs are shared by render key: two different files' jobs never share one."""
    app: Any = client.app
    ids = [
        upload(client, write_ome_tiff(tmp_path / f"{seed}.ome.tif", seed=seed)).json()["id"]
        for seed in (47, 48)
    ]
    limits = app.state.settings.limits.read_limits()
    stored = [(uuid.UUID(image_id), *_stored(client, image_id)) for image_id in ids]

    async def schedule_both() -> None:
        for image_id, path, sha in stored:
            schedule_default_thumbnail(
                app.state.pool, app.state.database, app.state.cache, limits, image_id, path, sha
            )

    client.portal.call(schedule_both)  # type: ignore[union-attr]
    pool_idle(client)
    spec = default_thumbnail_spec()
    for image_id, _path, sha in stored:
        url = f"/api/images/{image_id}"
        assert client.get(url).json()["thumbnail_ready"]
        assert client.get(f"{url}/quality").json()["status"] == "ready"
        assert app.state.cache.get(sha, spec.cache_key(sha)) is not None


def test_a_delete_during_the_job_leaves_no_render_behind(
    client: TestClient, tmp_path: Path
) -> None:
    """The last copy deleted while its job renders: the render is evicted after the job ends."""
    app: Any = client.app
    source = write_ome_tiff(tmp_path / "big.ome.tif", (1, 20, 512, 512), seed=49)
    image_id = upload(client, source).json()["id"]
    _path, sha = _stored(client, image_id)
    _schedule(client, image_id, app.state.settings.limits.read_limits(), stays_put=False)
    assert client.delete(f"/api/images/{image_id}").status_code == 204
    pool_idle(client)
    assert app.state.cache.get(sha, default_thumbnail_spec().cache_key(sha)) is None
    assert not _identity_dir(client, sha).exists()
