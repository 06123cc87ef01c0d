"""Quality in the browser: the gallery badge and filter, the image panel's charts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from tests.synthetic_tiff import write_ome_tiff

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def _upload_and_wait(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as fh:
        response = client.post("/api/images/upload", files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    deadline = time.monotonic() + 30
    while client.get(f"/api/images/{image_id}/quality").json()["status"] == "pending":
        assert time.monotonic() < deadline, "quality never measured"
        time.sleep(0.05)
    return image_id


def test_badge_filter_and_focus_chart(
    live_server: str, page: Page, tmp_path: Path, artifacts: Path
) -> None:
    rng = np.random.default_rng(6)
    fine = rng.integers(100, 4000, size=(3, 1, 7, 48, 64)).astype(np.uint16)
    fine[:, 0, 4] = rng.integers(0, 40000, size=(3, 48, 64))  # best focus at Z=5 (1-based)
    saturated = fine.copy()
    saturated[:, 0, 2, :24] = 65535
    saturated[:, 0, 4] = 100  # flat: the half-saturated Z=3 is now sharpest (mid-stack)
    with httpx.Client(base_url=live_server, timeout=60) as client:
        fine_id = _upload_and_wait(client, write_ome_tiff(tmp_path / "fine.ome.tif", [fine]))
        _upload_and_wait(client, write_ome_tiff(tmp_path / "burnt.ome.tif", [saturated]))

    page.goto(f"{live_server}/")
    page.wait_for_selector(".card .quality-badge")
    badges = page.locator(".card .quality-badge")
    assert badges.count() == 1
    assert "saturated" in badges.first.inner_text()

    page.select_option("#filter-quality", "saturated_min=0.01")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card .filename')].map(e => e.innerText)"
        ".join() === 'burnt.ome.tif'"
    )

    page.goto(f"{live_server}/#/image/{fine_id}")
    page.wait_for_selector("#quality .quality-chart svg circle")
    charts = page.locator("#quality .quality-chart")
    assert charts.count() == 2  # focus against Z, intensity against T
    assert page.locator("#quality .quality-chart").first.locator("circle").count() == 7
    page.click("#quality .best-focus")
    page.wait_for_function("() => document.getElementById('z-value').textContent === '5/7'")
    page.screenshot(path=str(artifacts / "quality-panel.png"))
