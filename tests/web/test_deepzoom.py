"""Deep zoom in a real Chromium: an 8k x 8k plane shown by tiles, never fetched whole.

The plane's side (8000) is not a multiple of the 256 px tile, so every level has
partial tiles at its right and bottom edges; tiles are compared pixel for pixel
with the plane (its 2x2-mean pyramid levels), edge tiles included.
"""

from __future__ import annotations

import base64
import io
import re
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.synthetic_tiff import write_ome_tiff

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

SIDE = 8000  # not a multiple of 256: partial edge tiles on every level
BLOCK = 16
TILE = 256
_TILE_URL = re.compile(r"/tile/(\d+)/(\d+)/(\d+)\?(.*)$")


def _plane() -> np.ndarray:
    """Random 16 px blocks of 0 or 255: no two tiles alike, and any 1-99 % window is 0..255.

    So a tile's grey values are the plane's own (or its 2x2 means, exact on 16 px
    blocks) and a tile drawn from the wrong place or cut wrong cannot match.
    """
    blocks = np.random.default_rng(7).integers(0, 2, (SIDE // BLOCK, SIDE // BLOCK)) * 255
    return np.kron(blocks, np.ones((BLOCK, BLOCK))).astype(np.uint8)


def _big_plane(path: Path, plane: np.ndarray) -> Path:
    return write_ome_tiff(path, [plane[None, None, None]], tile=(512, 512), compression="zlib")


def _level(plane: np.ndarray, level: int) -> np.ndarray:
    from zstack_analyzer.zarr.pyramid import downsample2x

    for _ in range(level):
        plane = downsample2x(plane)
    return plane


def _expected_tile(plane: np.ndarray, level: int, row: int, column: int) -> np.ndarray:
    data = _level(plane, level)
    return data[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE]


def _grey(png: bytes) -> np.ndarray:
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
    return picture[..., 0]


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
    plane = _plane()
    source = _big_plane(tmp_path / "slide.ome.tif", plane)
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
    assert max(natural) <= 1280, natural  # the view's size, not 8000
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
    # At ~15x of a fit of 8000 px into ~700 px, screen pixels match level 0 (2 at most).
    assert max(levels) <= 1, (levels, zoom)
    zoomed = downloads[before:]
    assert all("/tile/" in url for url, _ in zoomed), zoomed
    zoomed_bytes = sum(n for _, n in zoomed)
    assert 0 < zoomed_bytes < 2 * visible, (zoomed_bytes, visible, len(zoomed))

    # The tiles on screen show the plane's own pixels, each from its own place.
    shown = page.evaluate(
        """() => [...document.querySelectorAll('#tiles-xy img.tile')].map((t) => {
                   const c = document.createElement('canvas'); c.width = t.naturalWidth; c.height = t.naturalHeight;
                   const x = c.getContext('2d'); x.drawImage(t, 0, 0);
                   const d = x.getImageData(0, 0, c.width, c.height).data;
                   const grey = new Uint8Array(c.width * c.height);
                   for (let i = 0; i < grey.length; i++) grey[i] = d[4 * i];
                   let s = ''; for (let i = 0; i < grey.length; i++) s += String.fromCharCode(grey[i]);
                   return [t.dataset.src, c.width, c.height, btoa(s)]; })"""
    )
    assert shown
    for src, width, height, pixels in shown:
        match = _TILE_URL.search(src)
        assert match, src
        level, row, column = (int(g) for g in match.groups()[:3])
        got = np.frombuffer(base64.b64decode(pixels), np.uint8).reshape(height, width)
        np.testing.assert_array_equal(got, _expected_tile(plane, level, row, column), err_msg=src)

    # Partial edge tiles (the last row and column of a level), with the viewer's own query.
    query = _TILE_URL.search(shown[0][0]).groups()[3]  # type: ignore[union-attr]
    with httpx.Client(base_url=live_server, timeout=120) as client:
        for level in (0, 1):
            side = _level(plane, level).shape[0]
            last = -(-side // TILE) - 1
            for row, column in ((last, last), (3, last), (last, 0)):
                response = client.get(f"/api/images/{image_id}/tile/{level}/{row}/{column}?{query}")
                assert response.status_code == 200, response.text
                expected = _expected_tile(plane, level, row, column)
                assert expected.shape != (TILE, TILE)  # a partial tile of the edge
                np.testing.assert_array_equal(_grey(response.content), expected)

    # Panning brings only the newly visible tiles.
    seen = {url for url, _ in downloads}
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    # 600 screen px is over 256 plane px at this zoom: at least one new column of tiles.
    page.mouse.move(box["x"] + box["width"] / 2 - 600, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function(
        """() => [...document.querySelectorAll('#tiles-xy img.tile')].every((t) => t.dataset.src)"""
    )
    page.wait_for_timeout(300)
    new = [url for url, _ in downloads if url not in seen]
    assert new and all("/tile/" in url for url in new)
    assert not [url for url, _ in downloads if "/slice/" in url and f"width={SIDE}" in url]
