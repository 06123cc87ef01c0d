"""Quality measured after an upload, stored (image_quality) and served per scene."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from tests.service.conftest import upload
from tests.synthetic_tiff import write_ome_tiff

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient


def _wait_ready(client: TestClient, image_id: str, **params: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 120  # a bound for a loaded machine: it ends when ready
    while True:
        response = client.get(f"/api/images/{image_id}/quality", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "pending":
            return body
        assert time.monotonic() < deadline, "quality never became ready"
        time.sleep(0.05)


def test_upload_measures_and_serves_quality(client: TestClient, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    stack = rng.integers(100, 200, size=(1, 2, 5, 16, 20)).astype(np.uint16)
    stack[0, 0, 0] = rng.integers(0, 60000, size=(16, 20))  # sharpest plane at Z=0: an edge
    stack[0, 1, 2, :4] = 65535  # channel 1 at Z=2: a quarter saturated
    path = write_ome_tiff(tmp_path / "q.ome.tif", [stack])
    created = upload(client, path)
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    body = _wait_ready(client, image_id)
    assert body["status"] == "ready", body
    assert body["scene"] == 0
    first, second = body["channels"]
    assert first["channel"] == 0
    assert first["best_focus_z"] == 0
    assert first["focus_edge"] is True
    assert len(first["focus"]) == 5
    assert second["saturated_fraction"] == 0.25
    assert body["max_saturated_fraction"] == 0.25
    assert body["focus_edge"] is True
    assert client.get(f"/api/images/{image_id}/quality", params={"scene": 3}).status_code == 422
    missing = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/api/images/{missing}/quality").status_code == 404
    assert client.delete(f"/api/images/{image_id}").status_code in (200, 204)


def test_search_by_quality(client: TestClient, tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    base = rng.integers(100, 4000, size=(1, 1, 5, 16, 20)).astype(np.uint16)
    good = base.copy()
    good[0, 0, 2] = rng.integers(0, 60000, size=(16, 20))  # sharp in the middle
    bad = base.copy()
    bad[0, 0, 0] = rng.integers(0, 60000, size=(16, 20))  # sharp at the edge
    bad[0, 0, 0, :8] = 65535  # half of the edge plane saturated
    ids = {}
    for name, stack in (("good", good), ("bad", bad)):
        created = upload(client, write_ome_tiff(tmp_path / f"{name}.ome.tif", [stack]))
        ids[name] = created.json()["id"]
        _wait_ready(client, ids[name])

    def found(**params: Any) -> set[str]:
        response = client.get("/api/images/search", params=params)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["data"]}

    assert found(saturated_min=0.4) == {ids["bad"]}
    assert found(saturated_min=0.0) == {ids["good"], ids["bad"]}
    assert found(focus_edge="true") == {ids["bad"]}
    assert found(focus_edge="false") == {ids["good"]}
    assert found(snr_max=1e9) == {ids["good"], ids["bad"]}
    assert found(snr_max=0) == set()
    assert client.get("/api/images/search", params={"saturated_min": 2}).status_code == 422


def test_list_and_search_carry_the_quality_badge(client: TestClient, tmp_path: Path) -> None:
    stack = np.full((1, 1, 3, 10, 10), 50, np.uint16)
    stack[0, 0, 1, :5] = 65535
    created = upload(client, write_ome_tiff(tmp_path / "sat.ome.tif", [stack]))
    image_id = created.json()["id"]
    _wait_ready(client, image_id)
    (item,) = client.get("/api/images/").json()["data"]
    assert item["id"] == image_id
    assert "saturated" in item["quality_flags"]
    (found,) = client.get("/api/images/search", params={"saturated_min": 0.5}).json()["data"]
    assert "saturated" in found["quality_flags"]


def test_float_data_with_nan_is_stored(client: TestClient, tmp_path: Path) -> None:
    stack = np.ones((1, 1, 3, 8, 8), np.float32)
    stack[0, 0, 1, 0, 0] = np.nan
    created = upload(client, write_ome_tiff(tmp_path / "nan.ome.tif", [stack]))
    body = _wait_ready(client, created.json()["id"])
    assert body["status"] == "ready", body
    channel = body["channels"][0]
    assert channel["intensity_z"][1] is None  # NaN is unknown (null), not a 500
    assert channel["best_focus_z"] != 1


def _backfill_done(client: TestClient) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = client.get("/api/admin/quality/backfill").json()
        if not body["running"]:
            return body
        assert time.monotonic() < deadline, "the backfill never finished"
        time.sleep(0.05)


def test_admin_backfill_measures_images_without_quality(client: TestClient, tmp_path: Path) -> None:
    """Rows lost (images stored before quality existed): the admin route measures them again."""
    from sqlalchemy import delete

    from zstack_analyzer.service.db.quality import ImageQuality

    rng = np.random.default_rng(12)
    ids = []
    for i in range(2):
        stack = rng.integers(100, 900, size=(1, 1, 3, 12, 10)).astype(np.uint16)
        created = upload(client, write_ome_tiff(tmp_path / f"b{i}.ome.tif", [stack]))
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
        assert _wait_ready(client, ids[-1])["status"] == "ready"
    before = client.get(f"/api/images/{ids[0]}/quality").json()
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        session.execute(delete(ImageQuality))
        session.commit()
    assert client.get(f"/api/images/{ids[0]}/quality").json()["status"] == "pending"
    assert _backfill_done(client)["remaining"] == 2

    started = client.post("/api/admin/quality/backfill")
    assert started.status_code == 202, started.text
    assert started.json()["started"] is True
    done = _backfill_done(client)
    assert (done["measured"], done["failed"], done["remaining"]) == (2, 0, 0), done
    assert client.get(f"/api/images/{ids[0]}/quality").json() == before
    # Nothing left: a new run measures nothing and ends at once.
    assert client.post("/api/admin/quality/backfill").status_code == 202
    assert _backfill_done(client)["measured"] == 0
