"""The bucket goes away under a running server: 503 with Retry-After, never a 500 or a hang.

A real SeaweedFS is started for this test alone and stopped half-way, as an
S3 endpoint that is restarted or unreachable would be. What must hold then:
reads of stored originals answer 503 ``storage_unavailable`` (problem+json,
``Retry-After``) within the client's bounded retries; an upload is refused
the same way and leaves neither a record nor a temp file; routes that only
need the database keep answering, and a delete removes the record (its object
is left to the start-up sweep).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from tests.service.conftest import upload, write_ome_tiff
from tests.service.test_s3_ranged import zipped_ome_zarr
from tests.service.test_s3_service import bucket_of, s3_settings

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import httpx
    from fastapi.testclient import TestClient


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "storage_unavailable"
    assert "Traceback" not in response.text
    assert int(response.headers["retry-after"]) > 0


def test_reads_and_uploads_answer_503_while_the_bucket_is_down(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    from tests.needs import unavailable
    from tests.s3server import running_s3_server

    stack = contextlib.ExitStack()
    try:
        server = stack.enter_context(running_s3_server(tmp_path / "s3"))
    except RuntimeError as exc:
        unavailable(f"no S3 server: {exc}")
    with stack:
        settings = s3_settings(server, tmp_path / "data", storage={"object_cache_max_bytes": 0})
        client = make_client(settings)
        tiff = write_ome_tiff(tmp_path / "cells.ome.tif", shape=(2, 4, 40, 56))
        response = upload(client, tiff)
        assert response.status_code == 201, response.text
        image_id = response.json()["id"]
        zipped = upload(client, zipped_ome_zarr(tmp_path))
        assert zipped.status_code == 201, zipped.text
        zarr_id = zipped.json()["id"]
        storage = bucket_of(client)
        for copy in storage.cache_dir.iterdir():  # as if evicted: reads go to the bucket
            copy.unlink()
        assert client.get(f"/api/images/{image_id}/thumbnail").status_code == 200
        stack.close()  # the S3 server stops

        _assert_unavailable(client.get(f"/api/images/{image_id}/slice/1", params={"channels": "0"}))
        _assert_unavailable(client.get(f"/api/images/{image_id}/download"))
        # a failed read is the storage's fault, never reported as a corrupt file (422)
        _assert_unavailable(client.get(f"/api/images/{zarr_id}/slice/2", params={"channels": "0"}))
        refused = upload(client, write_ome_tiff(tmp_path / "more.ome.tif", seed=4))
        _assert_unavailable(refused)
        assert not list(storage.tmp_dir.iterdir())  # no half-written upload left behind
        listing = client.get("/api/images/").json()
        assert sorted(item["id"] for item in listing["data"]) == sorted([image_id, zarr_id])
        assert client.get(f"/api/images/{image_id}").status_code == 200
        # A delete removes the record (what every client sees); the object stays for the sweep.
        assert client.delete(f"/api/images/{image_id}").status_code == 204
        assert client.get(f"/api/images/{image_id}").status_code == 404


def test_a_bucket_down_at_start_up_starts_the_server_degraded(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    """Issue #21: a restart during an outage used to fail ("Application startup failed").

    Now the server starts, says so in /api/health (200, degraded, storage
    unavailable), keeps listing, metadata and cached pictures, answers 503
    ``storage_unavailable`` where an original is needed, and retries the
    start-up sweep in the background.
    """
    from tests.needs import unavailable
    from tests.s3server import running_s3_server

    stack = contextlib.ExitStack()
    try:
        server = stack.enter_context(running_s3_server(tmp_path / "s3"))
    except RuntimeError as exc:
        unavailable(f"no S3 server: {exc}")
    with stack:
        settings = s3_settings(
            server,
            tmp_path / "data",
            storage={"object_cache_max_bytes": 0, "sweep_retry_seconds": 0.5},
        )
        first = make_client(settings)
        response = upload(first, write_ome_tiff(tmp_path / "cells.ome.tif", shape=(2, 4, 40, 56)))
        assert response.status_code == 201, response.text
        image_id = response.json()["id"]
        assert first.get(f"/api/images/{image_id}/thumbnail").status_code == 200  # cached now
        assert first.get("/api/health").json()["storage"] == "ok"
        first.__exit__(None, None, None)  # the server stops...
        for copy in bucket_of(first).cache_dir.iterdir():
            copy.unlink()
        stack.close()  # ...and the bucket goes down before it restarts

    restarted = make_client(settings)  # before: startup failed here
    health = restarted.get("/api/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["storage"] == "unavailable"
    listing = restarted.get("/api/images/").json()
    assert [item["id"] for item in listing["data"]] == [image_id]
    assert restarted.get(f"/api/images/{image_id}").status_code == 200
    assert restarted.get(f"/api/images/{image_id}/thumbnail").status_code == 200
    _assert_unavailable(restarted.get(f"/api/images/{image_id}/download"))
    # The sweep is retried in the background; it keeps failing quietly while the bucket is down.
    assert restarted.get("/api/health").json()["storage"] == "unavailable"
