"""The gallery names a whole-slide file by its variant (SVS, NDPI, ..., DICOM WSI), not "TIFF"."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from tests.synthetic import encoded_stack
from tests.synthetic_dicom import write_dicom_wsi
from tests.synthetic_wsi import write_bif, write_ndpi_like, write_qptiff, write_scn, write_svs

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def _files(folder: Path) -> dict[str, Path]:
    import tifffile

    rgb = np.random.default_rng(1).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    plane = encoded_stack(1, 1, 1, 128, 128)[0, 0, 0]
    channels = encoded_stack(1, 2, 1, 128, 96)[0, :, 0]
    plain = folder / "plain.tif"
    tifffile.imwrite(plain, plane)
    return {
        "SVS": write_svs(folder / "slide.svs", rgb),
        "NDPI": write_ndpi_like(folder / "hamamatsu.tif", plane),
        "SCN": write_scn(folder / "slide.scn", plane),
        "BIF": write_bif(folder / "slide.bif", plane),
        "QPTIFF": write_qptiff(folder / "slide.qptiff", channels, ["DAPI", "FITC"]),
        "DICOM WSI": write_dicom_wsi(folder / "slide.dcm", channels[:1, None]),
        "TIFF": plain,
    }


def test_gallery_and_api_show_the_slide_variant(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    with httpx.Client(base_url=live_server, timeout=120) as client:
        for label, path in files.items():
            with path.open("rb") as fh:
                response = client.post("/api/images/upload", files={"file": (path.name, fh)})
            assert response.status_code == 201, (label, response.text)
            body = response.json()["image_stack"]
            expected = None if label == "TIFF" else label
            assert body["format_variant"] == expected, (label, body["format"])
        listed = {i["filename"]: i for i in client.get("/api/images/?limit=50").json()["data"]}
    assert {name: i["format_variant"] for name, i in listed.items()} == {
        path.name: (None if label == "TIFF" else label) for label, path in files.items()
    }

    page.goto(f"{live_server}/")
    page.wait_for_function(f"() => document.querySelectorAll('.card').length === {len(files)}")
    cards = {
        card.locator(".filename").inner_text(): card.locator(".meta").inner_text()
        for card in page.locator(".card").all()
    }
    for label, path in files.items():
        assert cards[path.name].startswith(f"{label} · "), (path.name, cards[path.name])
