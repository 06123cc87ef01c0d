"""The native long-tail formats through the service: listed, uploaded, described and rendered."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import upload
from tests.synthetic import encoded_stack
from tests.synthetic_dv import write_dv
from tests.synthetic_ims import write_ims
from tests.synthetic_mm import write_mm_dataset

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient


def test_formats_endpoint_lists_the_native_readers(client: TestClient) -> None:
    formats = client.get("/api/images/formats/supported").json()["formats"]
    assert formats[".dv"] == {
        "name": "DeltaVision",
        "available": True,
        "required_package": "mrc",
        "reader": "DeltaVisionReader",
    }
    assert formats[".mrc"]["name"] == "MRC"
    assert formats[".ims"]["name"] == "Imaris"
    assert formats[".ome.tif"]["name"] == "OME-TIFF"  # a shared suffix keeps its generic name


def _dv(tmp_path: Path) -> Path:
    return write_dv(tmp_path / "cells.dv", encoded_stack(1, 2, 3, 40, 48))


def _ims(tmp_path: Path) -> Path:
    return write_ims(tmp_path / "cells.ims", shape=(3, 40, 48), times=1, channels=2, levels=2)


def _mm(tmp_path: Path) -> Path:
    return write_mm_dataset(tmp_path, positions=1, frames=1, channels=2, slices=3, shape=(40, 48))[
        0
    ]


@pytest.mark.parametrize(
    ("writer", "file_format", "suffix"),
    [(_dv, "DeltaVision", ".dv"), (_ims, "Imaris", ".ims"), (_mm, "Micro-Manager", ".ome.tif")],
    ids=["dv", "ims", "micromanager"],
)
def test_upload_metadata_and_thumbnail(
    client: TestClient, tmp_path: Path, writer: object, file_format: str, suffix: str
) -> None:
    path = writer(tmp_path)  # type: ignore[operator]
    response = upload(client, path)
    assert response.status_code == 201, response.text
    stack = response.json()["image_stack"]
    assert stack["format"] == file_format
    assert (stack["width"], stack["height"], stack["depth"], stack["channels"]) == (48, 40, 3, 2)
    metadata = client.get(f"/api/images/{stack['id']}/metadata")
    assert metadata.status_code == 200
    thumb = client.get(f"/api/images/{stack['id']}/thumbnail", params={"width": 64, "height": 64})
    assert thumb.status_code == 200, thumb.text
    picture = Image.open(io.BytesIO(thumb.content))
    assert max(picture.size) <= 64
    assert np.asarray(picture).any()


def test_a_lying_deltavision_upload_is_422(client: TestClient, tmp_path: Path) -> None:
    path = _dv(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    response = upload(client, path)
    assert response.status_code == 422, response.text
