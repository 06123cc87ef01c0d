"""The viewer page in a real Chromium against a live server with a real database.

What a microscopist does: upload, see the thumbnail, open the viewer, move through Z, switch
channels and MIP, click in the orthogonal sections, read the scale bar, delete. Pixels are
checked by drawing the displayed <img> into a canvas and hashing its data.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.synthetic import encoded_stack

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import numpy as np
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

SPOTS = "imagej/xyzc_16bit__spots.tif"  # Z=17, C=2, 89 x 88, calibrated (0.0941 µm, 0.4 µm)

# Draw what the <img> shows (at its natural size) into a canvas and hash the RGBA bytes.
PIXELS_JS = """(sel) => {
  const img = document.querySelector(sel);
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261, lit = 0;
  for (let i = 0; i < d.length; i++) { h = Math.imul(h ^ d[i], 16777619) >>> 0; }
  for (let i = 0; i < d.length; i += 4) { if (d[i] || d[i + 1] || d[i + 2]) lit++; }
  let red = 0, green = 0, blue = 0;
  for (let i = 0; i < d.length; i += 4) { red += d[i]; green += d[i + 1]; blue += d[i + 2]; }
  return {hash: h, width: c.width, height: c.height, lit, red, green, blue};
}"""


def pixels(page: Page, selector: str) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(PIXELS_JS, selector)
    return result


def wait_shown(page: Page, selector: str, pattern: str) -> str:
    """Wait until the picture on screen in `selector` came from a URL matching `pattern`."""
    page.wait_for_function(
        """([sel, pat]) => {
             const img = document.querySelector(sel);
             return img && img.dataset.src && new RegExp(pat).test(img.dataset.src)
               && img.complete && img.naturalWidth > 0;
           }""",
        arg=[selector, pattern],
    )
    src: str = page.eval_on_selector(selector, "img => img.dataset.src")
    return src


def round_length(target: float) -> float:
    """Independent version of the viewer's rule: 1, 2 or 5 x 10^n closest to the target."""
    base = 10 ** math.floor(math.log10(target))
    candidates = [m * base for m in (1, 2, 5, 10)]
    return min(candidates, key=lambda c: abs(math.log(c / target)))


@pytest.mark.realdata
def test_real_stack_upload_view_navigate_and_delete(
    live_server: str, page: Page, testdata: Path, artifacts: Path
) -> None:
    source = testdata / SPOTS
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    image_responses: list[tuple[int, str, str]] = []
    page.on(
        "response",
        lambda r: (
            image_responses.append((r.status, r.headers.get("content-type", ""), r.url))
            if "/api/images/" in r.url
            else None
        ),
    )

    # Upload through the file picker; one progress bar, then success in words.
    page.goto(f"{live_server}/")
    page.set_input_files("#file-input", str(source))
    item = page.locator(".upload-item").first
    item.locator("text=Uploaded").wait_for()
    assert item.locator("progress").evaluate("p => p.value") == 1

    # The thumbnail appears in the gallery with name, dimensions, size and format.
    card = page.locator(".card").first
    card.wait_for()
    page.wait_for_function(
        "() => { const i = document.querySelector('.card img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    text = card.inner_text()
    assert "xyzc_16bit__spots.tif" in text
    assert "89 × 88 × 17 Z" in text
    assert "2 ch" in text
    assert "ImageJ TIFF" in text
    assert "KiB" in text
    thumb = pixels(page, ".card img")
    assert thumb["lit"] > 0, "thumbnail is black"
    page.screenshot(path=str(artifacts / "gallery.png"))

    # Open the viewer: middle plane of 17 is z=8; sections at the centre crosshair.
    card.locator(".thumb-link").click()
    src = wait_shown(page, "#img-xy", r"/slice/8\?")
    assert "channels=0%2C1" in src
    wait_shown(page, "#img-xz", r"/section/xz/44\?")
    wait_shown(page, "#img-yz", r"/section/yz/44\?")
    plane8 = pixels(page, "#img-xy")
    assert plane8["lit"] > 0
    assert page.input_value("#z-slider") == "8"
    page.screenshot(path=str(artifacts / "viewer.png"))

    # Move the Z slider with the keyboard: the image request and the pixels change.
    page.focus("#z-slider")
    for _ in range(3):
        page.keyboard.press("ArrowUp")
    wait_shown(page, "#img-xy", r"/slice/11\?")
    plane11 = pixels(page, "#img-xy")
    assert plane11["hash"] != plane8["hash"]
    assert any(s == 200 and "/slice/11?" in u and ct == "image/png" for s, ct, u in image_responses)

    # Arrow keys on the picture move through Z as well.
    page.focus("#pane-xy")
    page.keyboard.press("ArrowDown")
    wait_shown(page, "#img-xy", r"/slice/10\?")
    assert page.input_value("#z-slider") == "10"

    # Switch channel 2 off: only channel 0 is requested and its colour alone remains.
    both = pixels(page, "#img-xy")
    colour0 = page.input_value("#ch0-color")  # "#rrggbb"
    page.uncheck("#ch1-on")
    wait_shown(page, "#img-xy", r"/slice/10\?.*channels=0&")
    one = pixels(page, "#img-xy")
    assert one["hash"] != both["hash"]
    assert one["lit"] > 0
    for i, component in enumerate(("red", "green", "blue")):
        if colour0[1 + 2 * i : 3 + 2 * i] == "00":
            assert one[component] == 0, f"{component} drawn after switching channel 2 off"
    page.check("#ch1-on")
    wait_shown(page, "#img-xy", r"/slice/10\?.*channels=0%2C1")

    # MIP on: the XY picture is the Z projection, brighter than any one plane.
    page.check("#mip")
    wait_shown(page, "#img-xy", r"/mip\?.*axis=0")
    mip = pixels(page, "#img-xy")
    assert mip["hash"] != both["hash"]
    assert mip["green"] >= both["green"]
    assert page.is_disabled("#z-slider")
    page.uncheck("#mip")
    wait_shown(page, "#img-xy", r"/slice/10\?")

    # Click in XZ (rows are Z, columns X): the XY plane and the YZ section move.
    before = pixels(page, "#img-xy")
    box = page.locator("#pane-xz").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 0.25 * box["width"], box["y"] + 0.1 * box["height"])
    z_new = math.floor(0.1 * 17)
    x_new = math.floor(0.25 * 89)
    wait_shown(page, "#img-xy", rf"/slice/{z_new}\?")
    wait_shown(page, "#img-yz", rf"/section/yz/{x_new}\?")
    assert page.input_value("#z-slider") == str(z_new)
    assert pixels(page, "#img-xy")["hash"] != before["hash"]

    # Click in XY: the XZ section follows the new Y.
    box = page.locator("#pane-xy").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.8 * box["height"])
    wait_shown(page, "#img-xz", rf"/section/xz/{math.floor(0.8 * 88)}\?")

    # Scale bar: a round length about a fifth of the view, from the pixel size.
    info = httpx.get(f"{live_server}/api/images/").json()["data"][0]
    um_x = info["pixel_size_x"]
    assert um_x == pytest.approx(0.0941344539, rel=1e-6)
    view_w = page.locator("#pane-xy").bounding_box()["width"]  # type: ignore[index]
    um_per_px = um_x * 89 / view_w
    expected = round_length(view_w / 5 * um_per_px)
    label = page.inner_text("#scalebar-label")
    assert label == f"{expected:g} µm"
    bar_w = page.locator("#scalebar-bar").bounding_box()["width"]  # type: ignore[index]
    assert bar_w == pytest.approx(expected / um_per_px, abs=1.5)
    # Zooming in shortens the length the bar stands for.
    page.click("#zoom-in")
    page.click("#zoom-in")
    zoomed = float(page.get_attribute("#scalebar", "data-um") or "nan")
    assert zoomed < expected
    page.click("#zoom-reset")

    # Metadata panel: every field with its unit and its source.
    md = httpx.get(f"{live_server}/api/images/{info['id']}/metadata").json()
    row = page.locator('tr[data-field="physical_size.x_um"] td')
    assert row.nth(1).inner_text().startswith("0.0941")
    assert row.nth(2).inner_text() == "µm"
    assert page.inner_text('tr[data-field="physical_size.z_um"] td:nth-child(3)') == "µm"
    for field, origin in md["provenance"].items():
        cell = page.locator(f'tr[data-field="{field}"] td:nth-child(4)')
        if cell.count():
            assert cell.inner_text() == origin
    for warning in md["warnings"]:
        assert warning in page.inner_text("#md-warnings")
    assert page.locator(".md-table tbody tr").count() >= 20
    page.screenshot(path=str(artifacts / "viewer-after-navigation.png"))

    # Download gives back the original bytes.
    href = page.get_attribute("#download", "href")
    assert href == f"/api/images/{info['id']}/download"
    body = httpx.get(f"{live_server}{href}").content
    assert hashlib.sha256(body).digest() == hashlib.sha256(source.read_bytes()).digest()

    # Back to the gallery and delete, confirming in the dialog.
    page.click("text=← Gallery")
    page.locator(".card").first.wait_for()
    page.click(".card .delete")
    page.locator("#confirm-dialog").wait_for()
    page.click("#confirm-ok")
    page.locator("#gallery-empty").wait_for()
    assert page.locator(".card").count() == 0
    assert httpx.get(f"{live_server}/api/images/").json()["count"] == 0

    # Everything came from our own server: no CDN, no third party.
    assert requests
    assert all(u.startswith(live_server) or u.startswith(("data:", "blob:")) for u in requests)


def _write_tiff(path: Path, stack: np.ndarray) -> Path:
    import tifffile

    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZCYX"})
    return path


def test_upload_errors_are_shown_in_words(
    server_factory: Callable[..., str], page: Page, tmp_path: Path
) -> None:
    base = server_factory(limits={"max_upload_bytes": 64 * 1024})
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n" * 20)
    broken = tmp_path / "broken.tif"
    good = _write_tiff(tmp_path / "good.tif", encoded_stack(1, 1, 2, 16, 16)[0].swapaxes(0, 1))
    # A TIFF whose first IFD lies far past the end of the file.
    broken.write_bytes(b"II*\x00" + (0xFFFFFF00).to_bytes(4, "little") + bytes(200))
    huge = tmp_path / "huge.tif"
    huge.write_bytes(good.read_bytes()[:8] + bytes(100 * 1024))

    page.goto(f"{base}/")
    page.set_input_files("#file-input", [str(notes), str(broken), str(huge)])
    page.wait_for_function(
        "() => document.querySelectorAll('.upload-item.failed, .upload-item.ok').length === 3"
    )
    notes_msg = (
        page.locator(".upload-item", has_text="notes.txt").locator(".upload-msg").inner_text()
    )
    broken_msg = (
        page.locator(".upload-item", has_text="broken.tif").locator(".upload-msg").inner_text()
    )
    huge_msg = page.locator(".upload-item", has_text="huge.tif").locator(".upload-msg").inner_text()
    assert notes_msg.startswith("Unsupported format:"), notes_msg
    assert "notes.txt" in notes_msg
    assert broken_msg.startswith("Corrupt file:"), broken_msg
    assert huge_msg.startswith("Too large:"), huge_msg
    assert page.locator(".upload-item.failed").count() == 3
    assert page.locator(".card").count() == 0

    # Drag and drop: two files dropped at once on the drop zone, one good, one not.
    page.evaluate(
        """([goodB64]) => {
             const bytes = Uint8Array.from(atob(goodB64), (c) => c.charCodeAt(0));
             const dt = new DataTransfer();
             dt.items.add(new File([bytes], 'dropped.tif', {type: 'image/tiff'}));
             dt.items.add(new File(['plain words'], 'dropped.txt', {type: 'text/plain'}));
             document.getElementById('dropzone').dispatchEvent(
               new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
           }""",
        [base64.b64encode(good.read_bytes()).decode()],
    )
    page.locator(".upload-item.ok", has_text="dropped.tif").wait_for()
    dropped_msg = page.locator(".upload-item", has_text="dropped.txt").locator(".upload-msg")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.upload-item.failed')].length === 4"
    )
    assert dropped_msg.inner_text().startswith("Unsupported format:")
    page.locator(".card", has_text="dropped.tif").wait_for()


def test_gallery_paging_filter_and_cancelled_delete(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    stack = encoded_stack(1, 2, 3, 24, 32)[0].swapaxes(0, 1)  # ZCYX
    names = [f"cells_{i:02d}.tif" for i in range(12)] + ["beads_a.tif"]
    with httpx.Client(base_url=live_server, timeout=60) as client:
        for name in names:
            path = _write_tiff(tmp_path / name, stack)
            with path.open("rb") as fh:
                r = client.post("/api/images/upload", files={"file": (name, fh, "image/tiff")})
            assert r.status_code == 201, r.text

    page.goto(f"{live_server}/")
    page.select_option("#page-size", "12")
    page.wait_for_function(
        "() => document.getElementById('page-info').textContent === '1–12 of 13'"
    )
    assert page.locator(".card").count() == 12
    assert page.is_disabled("#prev-page")
    page.click("#next-page")
    page.wait_for_function(
        "() => document.getElementById('page-info').textContent === '13–13 of 13'"
    )
    assert page.locator(".card").count() == 1
    assert page.is_disabled("#next-page")

    page.fill("#filter", "BEADS")
    page.wait_for_function("() => document.getElementById('page-info').textContent === '1–1 of 1'")
    assert page.locator(".card .filename").all_inner_texts() == ["beads_a.tif"]
    assert "32 × 24 × 3 Z, 2 ch" in page.inner_text(".card .dims")

    # Cancelling the confirmation keeps the image.
    page.click(".card .delete")
    page.click("#confirm-dialog button[value=cancel]")
    assert page.locator(".card").count() == 1
    assert httpx.get(f"{live_server}/api/images/?q=beads").json()["count"] == 1

    page.fill("#filter", "nothing-like-this")
    page.locator("#gallery-empty").wait_for()
    assert "nothing-like-this" in page.inner_text("#gallery-empty")


def test_viewer_controls_are_labelled_and_fit_a_laptop(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    # Uncalibrated 2-channel Z-stack: the scale bar must say why it is missing.
    path = tmp_path / "plain.tif"
    import tifffile

    tifffile.imwrite(path, encoded_stack(1, 2, 5, 40, 60)[0].swapaxes(0, 1), imagej=True)
    with path.open("rb") as fh:
        r = httpx.post(f"{live_server}/api/images/upload", files={"file": ("plain.tif", fh)})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]

    page.goto(f"{live_server}/#/image/{image_id}")
    wait_shown(page, "#img-xy", r"/slice/2\?")
    wait_shown(page, "#img-xz", r"/section/xz/")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button, textarea')]
             .filter(el => !el.closest('[hidden]') && !el.closest('dialog'))
             .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                           && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
             .map(el => el.outerHTML)"""
    )
    assert unlabelled == []
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    for pane in ("#pane-xy", "#pane-xz", "#pane-yz"):
        box = page.locator(pane).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 1280 - 300  # the sidebar keeps its room
        assert box["y"] + box["height"] <= 800
    assert r.json()["image_stack"]["pixel_size_x"] is None
    assert "no pixel size" in page.inner_text("#scalebar-label")
    # Wheel zooms about the cursor, a drag pans, and neither moves the crosshair.
    position = page.inner_text("#position")
    box = page.locator("#pane-xy").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -300)
    page.wait_for_function("() => window.zstackViewer.zoom > 1")
    stage = page.locator("#stage-xy")
    zoomed = stage.evaluate("el => el.style.transform")
    # The XZ section zooms along X with the XY view (its rows, Z, stay).
    assert page.locator("#img-xz").evaluate("el => el.style.transform").endswith(", 1)")
    assert "scale(1, 1)" not in page.locator("#img-xz").evaluate("el => el.style.transform")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy + 40, steps=5)
    page.mouse.up()
    assert stage.evaluate("el => el.style.transform") != zoomed
    assert page.inner_text("#position").split(" · ")[:2] == position.split(" · ")[:2]
    page.click("#zoom-reset")
    assert stage.evaluate("el => el.style.transform") == "translate(0px, 0px) scale(1)"

    # Channel colours: a new colour is sent to the renderer.
    page.locator("#ch0-color").evaluate(
        "(el) => { el.value = '#ff0000'; el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    wait_shown(page, "#img-xy", r"colors=ff0000%2C")
    # Auto contrast asks for the histogram of the shown plane and renders with its window.
    before = page.eval_on_selector("#img-xy", "img => img.dataset.src")
    with page.expect_response(re.compile(r"/histogram\?.*z=2")) as hist:
        page.click("#ch0-auto")
    assert hist.value.status == 200
    plane = hist.value.json()["channels"][0]
    page.wait_for_function(
        "(old) => document.getElementById('img-xy').dataset.src !== old", arg=before
    )
    window = page.evaluate(
        "() => [window.zstackViewer.channels[0].lo, window.zstackViewer.channels[0].hi]"
    )
    assert window[0] == pytest.approx(plane["p_low"])
    assert window[1] == pytest.approx(max(plane["p_high"], plane["p_low"] + 1))
    assert "windows=" in page.eval_on_selector("#img-xy", "img => img.dataset.src")


def test_token_is_asked_once_and_sent(
    server_factory: Callable[..., str], page: Page, tmp_path: Path
) -> None:
    base = server_factory(api_token="lab-secret")  # noqa: S106
    path = _write_tiff(tmp_path / "t.tif", encoded_stack(1, 1, 2, 16, 16)[0].swapaxes(0, 1))
    headers = {"Authorization": "Bearer lab-secret"}
    with path.open("rb") as fh:
        r = httpx.post(f"{base}/api/images/upload", files={"file": ("t.tif", fh)}, headers=headers)
    assert r.status_code == 201, r.text

    page.goto(f"{base}/")
    page.locator("#token-dialog").wait_for()
    page.fill("#token-input", "lab-secret")
    page.click("#token-dialog button[type=submit]")
    page.locator(".card").first.wait_for()
    # With a token the thumbnail cannot be a plain URL: it is fetched and shown as a blob.
    page.wait_for_function(
        "() => { const i = document.querySelector('.card img');"
        " return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }"
    )
    page.click(".card .thumb-link")
    wait_shown(page, "#img-xy", r"/slice/")
    assert page.locator("#token-dialog[open]").count() == 0


@pytest.mark.realdata
def test_real_czi_scene_selector_and_time(live_server: str, page: Page, testdata: Path) -> None:
    ids = {}
    with httpx.Client(base_url=live_server, timeout=120) as client:
        for rel in ("czi/S3_1Pos_2Mosaic_T1_Z1_CH1.czi", "czi/CD_s_1_t_3_c_2_z_5.czi"):
            path = testdata / rel
            with path.open("rb") as fh:
                r = client.post("/api/images/upload", files={"file": (path.name, fh)})
            assert r.status_code == 201, r.text
            ids[path.name] = r.json()["id"]

    # Three scenes: the selector lists them and switching renders the other scene.
    page.goto(f"{live_server}/#/image/{ids['S3_1Pos_2Mosaic_T1_Z1_CH1.czi']}")
    wait_shown(page, "#img-xy", r"/slice/0\?.*scene=0")
    assert page.locator("#scene option").count() == 3
    assert page.is_hidden("#pane-xz")  # one plane: no sections
    first = pixels(page, "#img-xy")
    with page.expect_response(re.compile(r"/metadata\?scene=1")):
        page.select_option("#scene", "1")
    wait_shown(page, "#img-xy", r"/slice/0\?.*scene=1")
    assert pixels(page, "#img-xy")["hash"] != first["hash"]

    # Three timepoints: the right arrow on the picture moves to the next one.
    page.goto(f"{live_server}/#/image/{ids['CD_s_1_t_3_c_2_z_5.czi']}")
    wait_shown(page, "#img-xy", r"/slice/2\?t=0&")
    t0 = pixels(page, "#img-xy")
    assert "LED555" in page.inner_text("#channels")
    page.focus("#pane-xy")
    page.keyboard.press("ArrowRight")
    wait_shown(page, "#img-xy", r"/slice/2\?t=1&")
    wait_shown(page, "#img-yz", r"\?t=1&")
    assert page.input_value("#t-slider") == "1"
    assert pixels(page, "#img-xy")["hash"] != t0["hash"]
    assert "t 2/3" in page.inner_text("#position")
