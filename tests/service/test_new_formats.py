"""The formats of issue 16 through the service: listed, uploaded, described and rendered."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import upload
from tests.synthetic import encoded_stack
from tests.synthetic_dicom import write_dicom_wsi
from tests.synthetic_lsm import write_lsm
from tests.synthetic_oif import write_oib
from tests.synthetic_wsi import write_svs

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient


def test_formats_endpoint_lists_the_new_readers(client: TestClient) -> None:
    formats = client.get("/api/images/formats/supported").json()["formats"]
    assert formats[".lsm"]["name"] == "LSM"
    assert formats[".oib"]["name"] == "OIB"
    assert formats[".oif"]["name"] == "OIF"
    assert formats[".dcm"] == {
        "name": "DICOM",
        "available": True,
        "required_package": "pydicom",
        "reader": "DicomReader",
    }
    assert formats[".svs"]["name"] == "TIFF"
    assert all(formats[s]["available"] for s in (".lsm", ".oib", ".oif", ".dcm"))


def _lsm(tmp_path: Path) -> Path:
    return write_lsm(tmp_path / "cells.lsm", encoded_stack(1, 2, 3, 40, 48), timestamps=[0.0])


def _oib(tmp_path: Path) -> Path:
    return write_oib(tmp_path / "cells.oib", encoded_stack(1, 2, 3, 40, 48))


def _dicom(tmp_path: Path) -> Path:
    return write_dicom_wsi(tmp_path / "slide.dcm", encoded_stack(1, 2, 1, 40, 48)[0], tile=(16, 16))


def _svs(tmp_path: Path) -> Path:
    rgb = np.zeros((128, 96, 3), "uint8")
    rgb[..., 0] = encoded_stack(1, 1, 1, 128, 96, dtype="uint8")[0, 0, 0]
    return write_svs(tmp_path / "slide.svs", rgb, levels=2)


@pytest.mark.parametrize(
    ("writer", "file_format", "sizes"),
    [
        (_lsm, "LSM", (48, 40, 3, 2)),
        (_oib, "OIB", (48, 40, 3, 2)),
        (_dicom, "DICOM", (48, 40, 1, 2)),
        (_svs, "TIFF", (96, 128, 1, 1)),
    ],
    ids=["lsm", "oib", "dicom", "svs"],
)
def test_upload_metadata_and_thumbnail(
    client: TestClient, tmp_path: Path, writer: object, file_format: str, sizes: tuple[int, ...]
) -> None:
    path = writer(tmp_path)  # type: ignore[operator]
    response = upload(client, path)
    assert response.status_code == 201, response.text
    stack = response.json()["image_stack"]
    assert stack["format"] == file_format
    assert (stack["width"], stack["height"], stack["depth"], stack["channels"]) == sizes
    metadata = client.get(f"/api/images/{stack['id']}/metadata")
    assert metadata.status_code == 200
    thumb = client.get(f"/api/images/{stack['id']}/thumbnail", params={"width": 64, "height": 64})
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(thumb.content))
    assert max(picture.size) <= 64
    assert np.asarray(picture).any()
