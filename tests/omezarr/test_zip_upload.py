"""OME-Zarr uploaded as a ``.zip`` of its directory: read in place; hostile zips refused."""

from __future__ import annotations

import zipfile
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.service.conftest import upload
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer import open_image
from zstack_analyzer.errors import CorruptFileError, LimitExceededError
from zstack_analyzer.zarr.writer import convert

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    from tests.service.conftest import _testclient_class
    from tests.service.live import make_settings
    from zstack_analyzer.service.app import create_app

    with _testclient_class()(create_app(make_settings(tmp_path / "data"))) as test_client:
        yield test_client


def _zip_dir(folder: Path, out: Path, *, top: str | None) -> Path:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for item in sorted(folder.rglob("*")):
            if item.is_file():
                name = item.relative_to(folder).as_posix()
                archive.write(item, f"{top}/{name}" if top else name)
    return out


@pytest.fixture
def zarr_dir(tmp_path: Path) -> tuple[Path, np.ndarray]:
    stack = encoded_stack(1, 2, 2, 40, 50)
    source = write_ome_tiff(
        tmp_path / "z.ome.tif",
        [stack],
        metadata=[{"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "Channel": {"Name": ["a", "b"]}}],
    )
    convert(source, tmp_path / "cells.ome.zarr", ngff="0.5")
    return tmp_path / "cells.ome.zarr", stack


@pytest.mark.parametrize("top", [None, "cells.ome.zarr"])
def test_zip_upload_is_an_ome_zarr_image(
    tmp_path: Path, zarr_dir: tuple[Path, np.ndarray], top: str | None, client: TestClient
) -> None:
    folder, stack = zarr_dir
    archive = _zip_dir(folder, tmp_path / "cells.ome.zarr.zip", top=top)
    with open_image(archive) as reader:
        np.testing.assert_array_equal(reader.to_dask(0).compute(), stack)
    response = upload(client, archive)
    assert response.status_code == 201, response.text
    record = response.json()["image_stack"]
    assert record["format"] == "OME-Zarr"
    assert (record["channels"], record["depth"], record["pixel_size_x"]) == (2, 2, 0.5)
    assert record["metadata"]["channels"][1]["name"] == "b"
    image_id = record["id"]
    assert client.get(f"/api/images/{image_id}/thumbnail").status_code == 200
    chunk = client.get(f"/api/images/{image_id}/zarr/0/0/0/1/1/0/0")
    assert chunk.status_code == 200
    np.testing.assert_array_equal(
        np.frombuffer(chunk.content, dtype="<u2").reshape(40, 50), stack[0, 1, 1]
    )


def test_traversal_names_are_refused(tmp_path: Path, zarr_dir: tuple[Path, np.ndarray]) -> None:
    archive = _zip_dir(zarr_dir[0], tmp_path / "evil.zip", top=None)
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr("../../etc/cron.d/evil", b"* * * * * root true\n")
    with pytest.raises(CorruptFileError, match="outside the archive"):
        open_image(archive)


def test_zip_bombs_are_refused(tmp_path: Path, zarr_dir: tuple[Path, np.ndarray]) -> None:
    archive = _zip_dir(zarr_dir[0], tmp_path / "bomb.zip", top=None)
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("0/9/9/9/9/9", bytes(8 << 20))
    assert zipfile.ZipFile(archive).getinfo("0/9/9/9/9/9").compress_size < 64 << 10
    with pytest.raises(LimitExceededError, match="zip bomb"):
        open_image(archive)


def test_a_zip_without_ome_zarr_is_unsupported(tmp_path: Path, client: TestClient) -> None:
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("readme.txt", "hello")
    response = upload(client, archive)
    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_format"
