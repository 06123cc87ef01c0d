"""Non-square pixels: X and Y calibrations differ, so a reader that swaps them is caught.

Why a file per format: with square pixels (every other test file) a mapping that
reads Y's calibration into X passes; here X is 0.25 µm and Y 0.75 µm (plain TIFF
0.25/0.5 from its resolution tags), and the picture's aspect must follow.
CZI has its own case in test_czi.py. ND2: the nd2 package writes no files, and
it derives both X and Y from the single ``dCalibration`` (setting ``dAspect``
to 3 in cluster.nd2 changes nothing in ``nd2.voxel_size()``), so an ND2 file
cannot carry non-square pixels through it; see the #15 report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import tifffile

from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer import open_image
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_file

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

X_UM, Y_UM = 0.25, 0.75
ROWS, COLS = 30, 60  # 60 x 0.25 = 15 µm wide, 30 x 0.75 = 22.5 µm high: a tall picture


def _plane() -> np.ndarray:
    return encoded_stack(1, 1, 1, ROWS, COLS, "uint16")[0, 0, 0]


def _check(path: Path, x_um: float, y_um: float) -> None:
    with open_image(path) as image:
        size = image.metadata(0).physical_size
    assert (size.x_um, size.y_um) == pytest.approx((x_um, y_um), rel=1e-6)
    picture = render_file(path, RenderSpec(kind="thumbnail", width=256, height=256))
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(picture.data)) as im:
        width, height = im.size
    # The physical aspect (COLS * x) / (ROWS * y) decides the picture's shape.
    assert width / height == pytest.approx((COLS * x_um) / (ROWS * y_um), rel=0.02)


def test_plain_tiff_resolution_tags(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    # 40000 and 20000 pixels per cm: 0.25 and 0.5 µm.
    tifffile.imwrite(path, _plane(), resolution=(40000, 20000), resolutionunit=3)
    _check(path, 0.25, 0.5)


def test_imagej_resolution_tags(tmp_path: Path) -> None:
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        _plane(),
        imagej=True,
        resolution=(1 / X_UM, 1 / Y_UM),
        metadata={"unit": "micron"},
    )
    _check(path, X_UM, Y_UM)


def test_ome_tiff_physical_sizes(tmp_path: Path) -> None:
    path = tmp_path / "cells.ome.tif"
    write_ome_tiff(
        path,
        [_plane()[None, None, None]],
        metadata=[{"PhysicalSizeX": X_UM, "PhysicalSizeY": Y_UM}],
    )
    _check(path, X_UM, Y_UM)


def test_czi_scaling(tmp_path: Path) -> None:
    from tests.synthetic_czi import write_czi_stack

    path = tmp_path / "aniso.czi"
    write_czi_stack(path, y=ROWS, x=COLS, voxel_um=(X_UM, Y_UM, 1.0))
    _check(path, X_UM, Y_UM)
