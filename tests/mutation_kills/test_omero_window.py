"""The OME-Zarr ``omero`` block: value range from significant bits, labels, colours, rdefs.

12-bit data in uint16 (``SignificantBits=12``) must say 0..4095, not 0..65535: a viewer
scales its sliders to ``window.min/max``. Checked in files ``zstack convert`` writes
and in the service's virtual OME-Zarr.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from tests.service.conftest import upload
from zstack_analyzer.zarr.writer import convert

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient


def _omero(tmp_path: Path, data: np.ndarray, **metadata: Any) -> dict[str, Any]:
    source = tmp_path / "in.ome.tif"
    tifffile.imwrite(source, data, ome=True, metadata={"axes": "CZYX", **metadata})
    out = tmp_path / "out.ome.zarr"
    convert(source, out)
    block: dict[str, Any] = json.loads((out / ".zattrs").read_text())["omero"]
    return block


def _stack(dtype: str, c: int = 2, z: int = 5, high: int = 4096) -> np.ndarray:
    values = np.arange(c * z * 16 * 20).reshape(c, z, 16, 20) % high
    return values.astype(dtype)


@pytest.mark.parametrize(
    ("dtype", "bits", "low", "high"),
    [
        ("uint16", 12, 0.0, 4095.0),
        ("uint16", 14, 0.0, 16383.0),
        ("uint16", None, 0.0, 65535.0),
        ("uint16", 16, 0.0, 65535.0),  # all the bits: the dtype range
        ("uint8", 8, 0.0, 255.0),
        ("int16", 12, -32768.0, 32767.0),  # signed: bits say nothing about the low end
        ("float32", 12, 0.0, 1.0),
    ],
)
def test_window_range_follows_the_significant_bits(
    tmp_path: Path, dtype: str, bits: int | None, low: float, high: float
) -> None:
    extra = {"SignificantBits": bits} if bits else {}
    data = _stack(dtype, high=200 if dtype == "uint8" else 4096)
    if dtype == "float32":
        data = data / 4096.0
        data = data.astype(np.float32)
    block = _omero(tmp_path, data, **extra)
    for channel in block["channels"]:
        window = channel["window"]
        assert (window["min"], window["max"]) == (low, high), (dtype, bits)
        assert low <= window["start"] < window["end"] <= high


def test_labels_colours_and_rdefs(tmp_path: Path) -> None:
    block = _omero(
        tmp_path,
        _stack("uint16", c=3, z=5),
        SignificantBits=12,
        Channel={"Name": ["DAPI", "GFP", "RFP"]},
    )
    assert [c["label"] for c in block["channels"]] == ["DAPI", "GFP", "RFP"]
    assert all(
        c["active"] and c["family"] == "linear" and not c["inverted"] for c in block["channels"]
    )
    assert all(c["coefficient"] == 1.0 for c in block["channels"])
    assert all(len(c["color"]) == 6 and c["color"] == c["color"].upper() for c in block["channels"])
    assert len({c["color"] for c in block["channels"]}) == 3
    assert block["rdefs"] == {"model": "color", "defaultT": 0, "defaultZ": 2}
    assert block["version"] == "0.4"


def test_one_unnamed_channel_is_grey(tmp_path: Path) -> None:
    block = _omero(tmp_path, _stack("uint16", c=1, z=4))
    (channel,) = block["channels"]
    assert (channel["label"], channel["color"]) == ("C0", "FFFFFF")
    assert block["rdefs"]["model"] == "greyscale"
    assert block["rdefs"]["defaultZ"] == 2


def test_rgb_samples_are_red_green_blue(tmp_path: Path) -> None:
    source = tmp_path / "rgb.tif"
    y, x = np.ogrid[0:16, 0:20]
    rgb = np.stack(np.broadcast_arrays(x * 10, y * 10, x + y), axis=-1).astype(np.uint8)
    tifffile.imwrite(source, rgb, photometric="rgb")
    out = tmp_path / "rgb.ome.zarr"
    convert(source, out)
    block = json.loads((out / ".zattrs").read_text())["omero"]
    assert [c["color"] for c in block["channels"]] == ["FF0000", "00FF00", "0000FF"]
    assert [c["label"] for c in block["channels"]] == ["C0 R", "C0 G", "C0 B"]
    assert all(c["window"]["max"] == 255.0 for c in block["channels"])


def test_virtual_ome_zarr_window_range_of_12_bit_data(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    source = tmp_path / "twelve.ome.tif"
    tifffile.imwrite(
        source, _stack("uint16"), ome=True, metadata={"axes": "CZYX", "SignificantBits": 12}
    )
    answer = upload(sqlite_client, source)
    assert answer.status_code == 201, answer.text
    attrs = sqlite_client.get(f"/api/images/{answer.json()['id']}/zarr/.zattrs").json()
    for channel in attrs["omero"]["channels"]:
        assert (channel["window"]["min"], channel["window"]["max"]) == (0.0, 4095.0)
        assert 0.0 <= channel["window"]["start"] < channel["window"]["end"] <= 4095.0
