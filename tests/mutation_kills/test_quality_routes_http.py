"""The quality routes over HTTP: the admin's backfill reads with the server's limits.

(Before the fix in ``quality_backfill.measure_and_store`` the stored error named the
stored file, ``a74c4f...ome.tiff: declares an axis ...``, not the upload's name.)

Why: the backfill reads every image without quality on the server; a file over the
server's read limits must be refused as every other read is (and the refusal stored as the
image's quality, ``failed`` with the reason), not read with the library's defaults. A real
OME-TIFF of the shared corpus (24 x 18 planes), uploaded without measuring, then a server
whose limits refuse 24-pixel axes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.mutation_kills.test_zarr_store_routes import _start
from tests.service.conftest import upload
from zstack_analyzer.service.config import LimitsSettings

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient

STACK = "ome-tiff/18x24y5z5t2c8b-text.ome.tiff"


def _finished(client: TestClient) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status = client.get("/api/admin/quality/backfill")
        assert status.status_code == 200, status.text
        body: dict[str, Any] = status.json()
        if not body["running"]:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_backfill_reads_with_the_servers_limits(tmp_path: Path, testdata: Path) -> None:
    data = tmp_path / "data"
    with _start(data) as client:  # thumbnail_on_upload off: nothing measured
        answer = upload(client, testdata / STACK, "cells.ome.tiff")
        assert answer.status_code == 201, answer.text
        image_id = answer.json()["id"]
        assert client.get(f"/api/images/{image_id}/quality").json()["status"] == "pending"
    with _start(data, limits=LimitsSettings(max_dimension=20)) as client:
        assert _finished(client)["remaining"] == 1
        started = client.post("/api/admin/quality/backfill")
        assert started.status_code == 202, started.text
        assert started.json()["started"] is True
        done = _finished(client)
        assert (done["measured"], done["failed"]) == (0, 1), done
        assert "over the limit of 20" in str(done["last_error"])
        quality = client.get(f"/api/images/{image_id}/quality").json()
        assert quality["status"] == "failed"
        assert "over the limit of 20" in quality["error"]
        # Both name the uploaded file, never the stored one (a content hash).
        for error in (str(done["last_error"]), quality["error"]):
            assert error.startswith("cells.ome.tiff: declares an axis of 24 pixels"), error
        assert client.get(f"/api/images/{image_id}/quality", params={"scene": 1}).status_code == 422
