"""Every file of the real corpus opens with its canonical values, or fails as documented.

Expected values come from ../shared/testdata/EXPECTED.json (written by reference
readers under the conventions of SOURCES.md), never from our own output.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import expected_entries
from zstack_analyzer import UnsupportedFormatError, open_image

ENTRIES = expected_entries()
OK_ENTRIES = [e for e in ENTRIES if e["expect"] == "ok"]
UNSUPPORTED_ENTRIES = [e for e in ENTRIES if e["expect"] == "unsupported"]

pytestmark = pytest.mark.realdata


def _sig9(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.9g}")


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["path"] for e in entries]


def test_corpus_is_present(testdata: Path) -> None:
    """Skips once, saying why, when the corpus is absent; otherwise checks it is complete."""
    assert (testdata / "EXPECTED.json").is_file()
    assert ENTRIES, "EXPECTED.json lists no files"
    for entry in ENTRIES:
        assert (testdata / entry["path"]).is_file(), entry["path"]


@pytest.mark.parametrize("entry", OK_ENTRIES, ids=_ids(OK_ENTRIES))
def test_metadata_matches_expected(entry: dict[str, Any], testdata: Path) -> None:
    with open_image(testdata / entry["path"]) as image:
        scenes = image.scenes()
        assert len(scenes) == entry["n_scenes"]
        for index, expected in enumerate(entry["scenes"]):
            md = image.metadata(index)
            assert md.file_format == entry["format"]
            sizes = expected["sizes"]
            got = {"T": md.size_t, "C": md.size_c, "Z": md.size_z, "Y": md.size_y, "X": md.size_x}
            if md.samples_per_pixel > 1:
                got["S"] = md.samples_per_pixel
            assert got == sizes
            assert scenes[index].shape == md.shape
            assert md.dtype == expected["dtype"]
            voxel = expected["voxel_size_um"]
            assert _sig9(md.physical_size.x_um) == voxel["x"]
            assert _sig9(md.physical_size.y_um) == voxel["y"]
            assert _sig9(md.physical_size.z_um) == voxel["z"]
            assert [ch.name for ch in md.channels] == expected["channel_names"]
            assert md.extra_dims == expected["extra_dims"]
            if expected.get("name") is not None:
                assert md.scene_name == expected["name"]


@pytest.mark.parametrize("entry", OK_ENTRIES, ids=_ids(OK_ENTRIES))
def test_pixels_match_reference(entry: dict[str, Any], testdata: Path) -> None:
    expected = entry["scene0_pixels"]
    with open_image(testdata / entry["path"]) as image:
        plane = image.read_plane(0, 0, 0, 0)
        plane = np.ascontiguousarray(plane, dtype=plane.dtype.newbyteorder("="))
        assert hashlib.sha256(plane.tobytes()).hexdigest() == expected["plane_t0_c0_z0_sha256"]
        stack = image.to_dask(0)[0, 0]
        mip = np.asarray(stack.max(axis=0).compute())
        if np.issubdtype(mip.dtype, np.floating):
            assert math.isclose(
                float(mip.astype(np.float64).sum()), expected["zmip_t0_c0_sum"], rel_tol=1e-6
            )
            assert math.isclose(float(mip.max()), expected["zmip_t0_c0_max"], rel_tol=1e-6)
        else:
            assert int(mip.astype(np.int64).sum()) == expected["zmip_t0_c0_sum"]
            assert int(mip.max()) == expected["zmip_t0_c0_max"]


#: Beside the corpus's unsupported files (none since the Bio-Formats fallback reads the last
#: one), a file no reader claims, so the typed error is always checked: a notebook export.
NOT_AN_IMAGE = {"path": "<written>/analysis.ipynb", "bytes": b'{"cells": [], "nbformat": 4}'}


@pytest.mark.parametrize(
    "entry", [*UNSUPPORTED_ENTRIES, NOT_AN_IMAGE], ids=_ids([*UNSUPPORTED_ENTRIES, NOT_AN_IMAGE])
)
def test_unsupported_files_raise_typed_error(
    entry: dict[str, Any], testdata: Path, tmp_path: Path
) -> None:
    if "bytes" in entry:
        path = tmp_path / Path(entry["path"]).name
        path.write_bytes(entry["bytes"])
    else:
        path = testdata / entry["path"]
    with pytest.raises(UnsupportedFormatError) as info:
        open_image(path)
    assert Path(entry["path"]).name in str(info.value)
