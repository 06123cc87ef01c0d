"""Filing, annotating and measuring in a real Chromium against a live server.

What a lab does (issue #24): make a dataset, link images to it (one by dragging its
card, one by ticking it), tag an image, record a key-value pair, draw a rectangle on
the plane and read its mean from the stats table, which must equal numpy's mean over
the same pixels of the file; then find images again by tag and key-value in the gallery.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Page

pytestmark = pytest.mark.browser

SIZE_X, SIZE_Y = 120, 90


def write_plane(path: Path, seed: int, size_z: int = 1) -> np.ndarray:
    """A 2-channel uint16 OME-TIFF of random pixels, 0.5 µm pixels; returns its Z,C,Y,X data."""
    import tifffile

    shape = (size_z, 2, SIZE_Y, SIZE_X)
    data = np.random.default_rng(seed).integers(0, 4096, size=shape, dtype=np.uint16)
    tifffile.imwrite(
        path,
        data,
        photometric="minisblack",
        metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    return data


def upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as fh:
        response = client.post("/api/images/upload", files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    image_id: str = response.json()["image_stack"]["id"]
    return image_id


def items(body: Any) -> list[Any]:
    """A list answer, bare or paged."""
    if isinstance(body, list):
        return body
    for key in ("data", "items"):
        if isinstance(body.get(key), list):
            found: list[Any] = body[key]
            return found
    return []


def screen_point(page: Page, x: float, y: float) -> tuple[float, float]:
    """Where image pixel coordinate (x, y) is on screen (through zoom and pan)."""
    box = page.locator("#roi-layer").bounding_box()
    assert box is not None
    return box["x"] + x / SIZE_X * box["width"], box["y"] + y / SIZE_Y * box["height"]


def test_file_tag_annotate_and_measure_a_rectangle(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    stack = write_plane(tmp_path / "cells.ome.tif", seed=1, size_z=3)
    pixels = stack[1]  # the viewer opens a stack on its middle plane
    write_plane(tmp_path / "control.ome.tif", seed=2)
    write_plane(tmp_path / "other.ome.tif", seed=3)
    with httpx.Client(base_url=live_server, timeout=60) as client:
        cells = upload(client, tmp_path / "cells.ome.tif")
        control = upload(client, tmp_path / "control.ome.tif")
        upload(client, tmp_path / "other.ome.tif")

        page.goto(f"{live_server}/")
        expect_cards(page, ["cells.ome.tif", "control.ome.tif", "other.ome.tif"])

        # A dataset, made in the tree beside the gallery.
        page.fill("#new-dataset", "Mitosis screen")
        page.click("#dataset-form button[type=submit]")
        node = page.locator(".tree-dataset", has_text="Mitosis screen")
        node.wait_for()
        datasets = items(client.get("/api/datasets").json())
        dataset_id = next(d["id"] for d in datasets if d["name"] == "Mitosis screen")

        # Link one image by dragging its card onto the dataset, the other by ticking it.
        page.locator(f'.card[data-id="{control}"]').drag_to(node)
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('Linked 1 image')"
        )
        page.check(f'.card[data-id="{cells}"] .card-select')
        page.select_option("#link-target", str(dataset_id))
        page.click("#link-selected")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('Linked 1 image')"
            " && !document.querySelector('.card-select:checked')"
        )
        linked = client.get(f"/api/datasets/{dataset_id}/images").json()
        assert sorted(i["id"] for i in items(linked)) == sorted([cells, control])

        # The dataset's listing shows its two images (and says how many it holds).
        node = page.locator(".tree-dataset", has_text="Mitosis screen (2)")
        node.click()
        expect_cards(page, ["cells.ome.tif", "control.ome.tif"])
        assert node.get_attribute("aria-pressed") == "true"
        assert page.locator(".card .unlink").count() == 2

        # Open one: tag it and give it a key-value pair.
        page.locator(f'.card[data-id="{cells}"] .thumb-link').click()
        page.wait_for_function("() => window.zstackViewer && window.zstackViewer.size")
        # The image panel names the dataset it is in.
        filed = page.locator(f'#dataset-chips .chip[data-dataset-id="{dataset_id}"]')
        filed.wait_for()
        assert filed.inner_text() == "Mitosis screen"
        assert page.locator("#dataset-chips .chip").count() == 1
        page.fill("#tag-input", "mitosis")
        page.press("#tag-input", "Enter")
        page.locator("#tag-chips .chip", has_text="mitosis").wait_for()
        tags = items(client.get(f"/api/images/{cells}/tags").json())
        assert [t if isinstance(t, str) else t["name"] for t in tags] == ["mitosis"]

        page.click("#kv-add")
        page.fill("#kv-table tbody tr:last-child .kv-key", "strain")
        page.fill("#kv-table tbody tr:last-child .kv-value", "N2")
        page.click("#kv-save")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('Saved 1 key-value')"
        )
        pairs = items(client.get(f"/api/images/{cells}/key-values").json())
        assert [(p["key"], p["value"]) for p in pairs] == [("strain", "N2")]

        page.fill("#comment-text", "Prophase in the upper left")
        page.click("#comment-form button[type=submit]")
        page.locator("#comment-list .comment-text", has_text="Prophase").wait_for()
        comments = items(client.get(f"/api/images/{cells}/comments").json())
        assert [c["text"] for c in comments] == ["Prophase in the upper left"]

        protocol = tmp_path / "protocol.txt"
        protocol.write_text("Fix 15 min in 4% PFA.\n")
        page.set_input_files("#attachment-input", str(protocol))
        attached = page.locator("#attachment-list .link-button", has_text="protocol.txt")
        with page.expect_download() as download:
            attached.click()
        assert download.value.suggested_filename == "protocol.txt"
        assert Path(download.value.path()).read_text() == "Fix 15 min in 4% PFA.\n"

        # Draw a rectangle from pixel corner (10, 8) to (40, 30).
        page.click('.roi-tools [data-tool="rectangle"]')
        page.mouse.move(*screen_point(page, 10, 8))
        page.mouse.down()
        page.mouse.move(*screen_point(page, 25, 20), steps=3)
        page.mouse.move(*screen_point(page, 40, 30), steps=3)
        page.mouse.up()
        mean_cell = page.locator('#roi-stats-table td[data-channel="1"][data-stat="mean"]')
        mean_cell.wait_for()

        rois = items(client.get(f"/api/images/{cells}/rois").json())
        assert len(rois) == 1
        roi_id = rois[0]["id"]
        shape = rois[0]["shapes"][0]
        drawn = [shape[k] for k in ("type", "x", "y", "width", "height", "z", "t")]
        assert drawn == ["rectangle", 10, 8, 30, 22, 1, 0]  # on the plane shown
        assert page.locator("#roi-layer rect.roi-shape").count() == 1
        for channel in (0, 1):
            expected = pixels[channel, 8:30, 10:40].astype(np.float64)
            cell = f'#roi-stats-table td[data-channel="{channel}"]'
            shown = float(page.get_attribute(f'{cell}[data-stat="mean"]', "title") or "nan")
            assert shown == pytest.approx(expected.mean(), rel=1e-12)
            assert int(page.inner_text(f'{cell}[data-stat="pixel_count"]')) == expected.size
            assert int(page.inner_text(f'{cell}[data-stat="max"]')) == int(expected.max())
        assert "µm²" in page.inner_text('#roi-stats-table tr[data-stat="size"] th')
        assert float(page.inner_text(f'{cell}[data-stat="size"]')) == 22 * 30 * 0.25
        # The same footprint on every Z plane.
        page.check("#roi-allz")
        page.locator('#roi-planes-table tr[data-z="2"]').wait_for()
        for z in range(3):
            shown = float(
                page.get_attribute(f'#roi-planes-table tr[data-z="{z}"] td', "title") or ""
            )
            assert shown == pytest.approx(stack[z, 0, 8:30, 10:40].mean(), rel=1e-12)
        page.uncheck("#roi-allz")

        # Reshape it by its bottom-right handle, then without a mouse (the form's fields).
        page.click('.roi-tools [data-tool=""]')
        page.mouse.move(*screen_point(page, 40, 30))
        page.mouse.down()
        page.mouse.move(*screen_point(page, 45, 34), steps=4)
        page.mouse.up()
        pixel_count = '#roi-stats-table td[data-channel="0"][data-stat="pixel_count"]'
        page.wait_for_function(
            "([sel, n]) => document.querySelector(sel)?.textContent === n",
            arg=[pixel_count, str(35 * 26)],
        )
        page.fill("#roi-edit-width", "5")
        page.click("#roi-edit button[type=submit]")
        page.wait_for_function(
            "([sel, n]) => document.querySelector(sel)?.textContent === n",
            arg=[pixel_count, str(5 * 26)],
        )
        edited = items(client.get(f"/api/images/{cells}/rois").json())
        assert [roi["id"] for roi in edited] == [roi_id]  # edited in place, not re-created
        shape = edited[0]["shapes"][0]
        assert (shape["x"], shape["y"], shape["width"], shape["height"]) == (10, 8, 5, 26)
        page.focus("#pane-xy")
        page.keyboard.press("Delete")
        page.wait_for_function("() => !document.querySelector('#roi-list li')")
        assert items(client.get(f"/api/images/{cells}/rois").json()) == []
        assert page.locator("#roi-layer .roi-shape").count() == 0


def cyan_pixels(page: Page, clip: FloatRect) -> int:
    """How many pixels of the screen region are cyan (no grey and not the yellow crosshair)."""
    from PIL import Image

    shot = Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")
    rgb = np.asarray(shot).astype(int)
    return int(((rgb[..., 0] < 60) & (rgb[..., 1] > 200) & (rgb[..., 2] > 200)).sum())


def test_rectangle_on_deep_zoom_tiles(live_server: str, page: Page, tmp_path: Path) -> None:
    """Zoomed into a plane larger than the view, shapes are drawn over the tiles, in place."""
    import tifffile

    width, height = 1200, 900  # larger than the view: deep zoom
    data = np.random.default_rng(3).integers(0, 256, size=(height, width), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", data, photometric="minisblack")
    with httpx.Client(base_url=live_server, timeout=120) as client:
        big = upload(client, tmp_path / "big.tif")
        page.goto(f"{live_server}/#/image/{big}")
        page.wait_for_function("() => window.zstackViewer && window.zstackViewer.channels.length")
        for _ in range(5):
            page.click("#zoom-in")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#tiles-xy img.tile')].some((t) => t.dataset.src)"
        )
        box = page.locator("#roi-layer").bounding_box()
        pane = page.locator("#pane-xy").bounding_box()
        assert box is not None and pane is not None

        def screen(x: float, y: float) -> tuple[float, float]:
            return box["x"] + x / width * box["width"], box["y"] + y / height * box["height"]

        # Near the pixel under the middle of the pane (clear of the crosshair): 20 x 10, in cyan.
        x0 = round((pane["x"] + pane["width"] / 2 - box["x"]) / box["width"] * width) + 20
        y0 = round((pane["y"] + pane["height"] / 2 - box["y"]) / box["height"] * height) + 15
        page.fill("#roi-color", "#00ffff")
        page.click('.roi-tools [data-tool="rectangle"]')
        page.mouse.move(*screen(x0, y0))
        page.mouse.down()
        page.mouse.move(*screen(x0 + 20, y0 + 10), steps=3)
        page.mouse.up()
        mean = page.locator('#roi-stats-table td[data-channel="0"][data-stat="mean"]')
        mean.wait_for()
        shape = items(client.get(f"/api/images/{big}/rois").json())[0]["shapes"][0]
        assert (shape["x"], shape["y"], shape["width"], shape["height"]) == (x0, y0, 20, 10)
        expected = data[y0 : y0 + 10, x0 : x0 + 20].astype(np.float64).mean()
        assert float(mean.get_attribute("title") or "nan") == pytest.approx(expected, rel=1e-12)
        assert shape["colour"] == "#00ffff"
        # Its outline shows over the tiles (grey noise has no cyan), along the top edge.
        left, top = screen(x0, y0)
        right, _ = screen(x0 + 20, y0)
        page.wait_for_load_state("networkidle")
        assert cyan_pixels(page, {"x": left, "y": top - 2, "width": right - left, "height": 4}) > 20


def expect_cards(page: Page, expected: list[str]) -> None:
    """The gallery shows exactly ``expected`` once the newest search has answered."""
    page.wait_for_function(
        """(names) => JSON.stringify(
             [...document.querySelectorAll('.card .filename')].map((e) => e.innerText).sort()
           ) === JSON.stringify(names)""",
        arg=sorted(expected),
    )
    page.wait_for_load_state("networkidle")
    assert sorted(page.locator(".card .filename").all_inner_texts()) == sorted(expected)


def test_gallery_finds_images_by_tag_and_key_value(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    annotations = {
        "a.ome.tif": (["mitosis", "good"], [("strain", "N2"), ("drug", "DMSO")]),
        "b.ome.tif": (["mitosis"], [("strain", "CB4856"), ("drug", "DMSO")]),
        "c.ome.tif": (["good"], [("strain", "N2")]),
    }
    ids: dict[str, str] = {}
    with httpx.Client(base_url=live_server, timeout=60) as client:
        for seed, (name, (tags, pairs)) in enumerate(annotations.items()):
            write_plane(tmp_path / name, seed=seed)
            ids[name] = image_id = upload(client, tmp_path / name)
            assert client.put(f"/api/images/{image_id}/tags", json=tags).is_success
            body = [{"key": k, "value": v, "namespace": None} for k, v in pairs]
            assert client.put(f"/api/images/{image_id}/key-values", json=body).is_success
        dataset = client.post("/api/datasets", json={"name": "Plate 7"}).json()
        linked = [ids["b.ome.tif"], ids["c.ome.tif"]]
        link = client.post(f"/api/datasets/{dataset['id']}/images", json={"image_ids": linked})
        assert link.is_success, link.text

    page.goto(f"{live_server}/")
    expect_cards(page, list(annotations))
    page.fill("#filter-tag", "mitosis")
    expect_cards(page, ["a.ome.tif", "b.ome.tif"])
    page.fill("#filter-kv", "strain:N2")  # AND with the tag
    expect_cards(page, ["a.ome.tif"])
    page.fill("#filter-tag", "")
    expect_cards(page, ["a.ome.tif", "c.ome.tif"])
    page.fill("#filter-kv", "strain:N2; drug:DMSO")  # two pairs: both must hold
    expect_cards(page, ["a.ome.tif"])
    page.fill("#filter-kv", "drug")  # a key alone: any value
    expect_cards(page, ["a.ome.tif", "b.ome.tif"])
    page.fill("#filter-kv", "strain:none")
    page.locator("#gallery-empty").wait_for()
    assert "strain:none" in page.inner_text("#gallery-empty")
    page.click("#filter-clear")
    expect_cards(page, list(annotations))

    # Within a dataset chosen in the tree, the filters narrow its images.
    page.locator(".tree-dataset", has_text="Plate 7").click()
    expect_cards(page, ["b.ome.tif", "c.ome.tif"])
    page.fill("#filter-tag", "good")
    expect_cards(page, ["c.ome.tif"])
    assert page.inner_text("#scope-info") == "Showing dataset “Plate 7”"
    page.click("#tree-all")
    expect_cards(page, ["a.ome.tif", "c.ome.tif"])
