"""The served OME-Zarr of real 16-bit multi-channel files shows them as ``zstack convert`` does.

Why on the corpus: the defect was seen on a real CZI whose data sit at 76..304
of 0..16383; the served ``omero`` window was the whole range, so napari and
vizarr showed it black.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr

from tests.conftest import expected_entries
from zstack_analyzer import open_image
from zstack_analyzer.zarr.virtual import VirtualOmeZarr
from zstack_analyzer.zarr.writer import convert

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realdata

DIM_16_BIT = [
    e
    for e in expected_entries()
    if e["expect"] == "ok"
    and e["scenes"][0]["dtype"] == "uint16"
    and e["scenes"][0]["sizes"].get("C", 1) > 1
]


@pytest.mark.parametrize("entry", DIM_16_BIT, ids=[e["path"] for e in DIM_16_BIT])
def test_served_windows_are_convert_windows_within_the_data(
    entry: dict[str, Any], testdata: Path, tmp_path: Path
) -> None:
    path = testdata / entry["path"]
    convert(path, tmp_path / "out.ome.zarr")
    written = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r").attrs["omero"]
    with open_image(path) as reader:
        data = np.asarray(reader.to_dask(0).compute())
        store = VirtualOmeZarr(reader, cache=None, identity="corpus")
        served = json.loads(store.get(".zattrs"))["omero"]
    assert [ch["window"] for ch in served["channels"]] == [
        ch["window"] for ch in written["channels"]
    ]
    for channel, ch in enumerate(served["channels"]):
        values = data[:, channel]
        window = ch["window"]
        assert values.min() <= window["start"] < window["end"] <= values.max(), (channel, window)
