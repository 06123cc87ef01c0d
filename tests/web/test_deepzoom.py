"""Deep zoom in a real Chromium: an 8k x 8k plane shown by tiles, never fetched whole."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from tests.synthetic_tiff import write_ome_tiff

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

SIDE = 8192


def _big_plane(path: Path) -> Path:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    plane = ((yy // 64 + xx // 64) % 2 * 200 + (xx * 7 + yy * 3) % 40).astype(np.uint8)
    return write_ome_tiff(path, [plane[None, None, None]], tile=(512, 512), compression="zlib")


def _visible_bytes(page: Page) -> int:
    """Bytes of the XY pane's visible pixels at screen resolution (RGB, 3 bytes a pixel)."""
    size: dict[str, float] = page.evaluate(
        """() => { const r = document.getElementById('pane-xy').getBoundingClientRect();
                   return {w: r.width, h: r.height, dpr: window.devicePixelRatio || 1}; }"""
    )
    return int(size["w"] * size["dpr"] * size["h"] * size["dpr"] * 3)


def test_big_plane_is_shown_by_tiles_at_the_current_zoom(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    source = _big_plane(tmp_path / "slide.ome.tif")
    with httpx.Client(base_url=live_server, timeout=300) as client, source.open("rb") as fh:
        response = client.post("/api/images/upload", files={"file": ("slide.ome.tif", fh)})
    assert response.status_code == 201, response.text
    image_id = response.json()["id"]

    downloads: list[tuple[str, int]] = []

    def record(resp: Any) -> None:
        if f"/api/images/{image_id}/" in resp.url and (
            "/slice/" in resp.url or "/tile/" in resp.url
        ):
            downloads.append((resp.url, len(resp.body())))

    page.on("response", record)
    page.goto(f"{live_server}/#/image/{image_id}")
    page.wait_for_function(
        """() => { const img = document.getElementById('img-xy');
                   return img.dataset.src && img.complete && img.naturalWidth > 0; }"""
    )
    visible = _visible_bytes(page)
    first_view = sum(n for url, n in downloads if "/slice/" in url)
    natural = page.eval_on_selector("#img-xy", "img => [img.naturalWidth, img.naturalHeight]")
    assert max(natural) <= 1280, natural  # the view's size, not 8192
    assert 0 < first_view < 2 * visible, (first_view, visible)
    assert not [u for u, _ in downloads if "/tile/" in u]  # at fit-to-view the picture suffices

    # Zoom in about 15x around the centre with the mouse wheel.
    box = page.locator("#pane-xy").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    before = len(downloads)
    for _ in range(12):
        page.mouse.wheel(0, -100)
    page.wait_for_function(
        """() => { const tiles = [...document.querySelectorAll('#tiles-xy img.tile')];
                   const v = window.zstackViewer;
                   return v.zoom > 10 && tiles.length > 0
                     && tiles.every((t) => t.dataset.src && t.complete && t.naturalWidth > 0)
                     && new Set(tiles.map((t) => t.dataset.level)).size === 1; }"""
    )
    levels = page.eval_on_selector_all("#tiles-xy img.tile", "ts => ts.map(t => +t.dataset.level)")
    zoom = page.evaluate("() => window.zstackViewer.zoom")
    # At ~15x of a fit of 8192 px into ~700 px, screen pixels match level 0 (2 at most).
    assert max(levels) <= 1, (levels, zoom)
    zoomed = downloads[before:]
    assert all("/tile/" in url for url, _ in zoomed), zoomed
    zoomed_bytes = sum(n for _, n in zoomed)
    assert 0 < zoomed_bytes < 2 * visible, (zoomed_bytes, visible, len(zoomed))

    # The tiles show the plane's own pixels: the checkerboard of 64 px squares at full size.
    lit = page.evaluate(
        """() => { const t = document.querySelector('#tiles-xy img.tile');
                   const c = document.createElement('canvas'); c.width = t.naturalWidth; c.height = t.naturalHeight;
                   const x = c.getContext('2d'); x.drawImage(t, 0, 0);
                   const d = x.getImageData(0, 0, c.width, c.height).data;
                   let bright = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) bright++;
                   return [bright, c.width * c.height]; }"""
    )
    assert 0.3 < lit[0] / lit[1] < 0.7, lit

    # Panning brings only the newly visible tiles.
    seen = {url for url, _ in downloads}
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 300, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function(
        """() => [...document.querySelectorAll('#tiles-xy img.tile')].every((t) => t.dataset.src)"""
    )
    page.wait_for_timeout(300)
    new = [url for url, _ in downloads if url not in seen]
    assert new and all("/tile/" in url for url in new)
    assert not [url for url, _ in downloads if "/slice/" in url and "width=8192" in url]
