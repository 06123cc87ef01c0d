"""Whole-slide TIFF variants on files built from the vendors' published layouts (none in the corpus)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.contract import assert_reader_contract
from tests.synthetic import encoded_stack
from tests.synthetic_wsi import (
    APERIO_HEAD,
    write_bif,
    write_ndpi_like,
    write_qptiff,
    write_scn,
    write_svs,
)
from zstack_analyzer import ImageLoadError, open_image
from zstack_analyzer.readers.tiff import TiffReader
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_reader

if TYPE_CHECKING:
    from pathlib import Path


def _rgb(height: int = 256, width: int = 192) -> np.ndarray:
    rgb = np.zeros((height, width, 3), "uint8")
    rgb[..., 1] = encoded_stack(1, 1, 1, height, width, dtype="uint8")[0, 0, 0]
    return rgb


def test_svs_associated_images_are_not_scenes(tmp_path: Path) -> None:
    """Regression: thumbnail, label and macro series were scenes 1..3 of an SVS."""
    path = write_svs(tmp_path / "slide.svs", _rgb(), levels=3)
    assert_reader_contract(TiffReader, path)
    with open_image(path) as image:
        assert len(image.scenes()) == 1
        assert image.level_count(0) == 3
        md = image.metadata()
        assert md.pyramid_levels == [(256, 192), (128, 96), (64, 48)]
        assert [a["name"] for a in md.vendor_metadata["associated_images"]] == [
            "Thumbnail",
            "Label",
            "Macro",
        ]
        assert image.to_dask(0, 2).shape == (1, 1, 1, 64, 48, 3)


def test_svs_description_gives_magnification_time_and_software(tmp_path: Path) -> None:
    path = write_svs(tmp_path / "slide.svs", _rgb(128, 128), levels=1, mpp=0.2527, app_mag=40)
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um == pytest.approx(0.2527)
    assert md.provenance["physical_size.x_um"] == "Aperio SVS MPP"
    assert md.objective is not None
    assert md.objective.magnification == 40
    assert md.provenance["objective.magnification"] == "Aperio SVS AppMag"
    assert md.microscope is not None
    assert md.microscope.software == "Aperio Image Library"
    assert md.microscope.software_version == "v12.0.15"
    assert md.microscope.serial_number == "SS1234"
    # Date = 12/29/09, Time = 09:59:15, Time Zone = GMT+0100
    assert md.acquired_at == datetime(2009, 12, 29, 8, 59, 15, tzinfo=UTC)
    assert md.vendor_metadata["aperio"]["AppMag"] == "40"


def test_svs_without_zone_keeps_local_time(tmp_path: Path) -> None:
    path = tmp_path / "nozone.svs"
    description = f"{APERIO_HEAD}\r\n64x64 [0,0 64x64] (64x64) JPEG/RGB Q=30|AppMag = 10|Date = 01/02/21|Time = 03:04:05|MPP = 1.0"
    tifffile.imwrite(
        path, _rgb(64, 64), tile=(64, 64), photometric="rgb", description=description, metadata=None
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.acquired_at is None
    assert md.acquired_at_local == datetime(2021, 1, 2, 3, 4, 5)
    assert md.objective is not None
    assert md.objective.magnification == 10


def test_svs_thumbnail_renders_from_a_reduced_level(tmp_path: Path) -> None:
    path = write_svs(tmp_path / "slide.svs", _rgb(), levels=3)
    with open_image(path) as image:
        picture = render_reader(image, RenderSpec(kind="thumbnail", width=64, height=64))
    assert max(picture.size) == 64


@pytest.mark.parametrize("fraction", [0.2, 0.4, 0.6])
def test_truncated_svs(tmp_path: Path, fraction: float) -> None:
    data = write_svs(tmp_path / "whole.svs", _rgb(), levels=2).read_bytes()
    path = tmp_path / "cut.svs"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageLoadError, match=r"cut\.svs"), open_image(path) as image:
        for level in range(image.level_count(0)):
            np.asarray(image.to_dask(0, level)[0, 0, 0])


def test_svs_description_that_lies_is_not_a_calibration(tmp_path: Path) -> None:
    path = tmp_path / "lies.svs"
    description = f"{APERIO_HEAD}\r\n64x64|AppMag = many|MPP = -3|Date = 99/99/99|Time = xx"
    tifffile.imwrite(path, _rgb(64, 64), photometric="rgb", description=description, metadata=None)
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um is None
    assert md.objective is None
    assert md.acquired_at is None
    assert md.acquired_at_local is None


def test_ndpi_tags_give_magnification_and_scanner(tmp_path: Path) -> None:
    """Named .tif: tifffile reads a ``.ndpi`` name with NDPI's 64-bit offset extension."""
    plane = encoded_stack(1, 1, 1, 128, 128)[0, 0, 0]
    path = write_ndpi_like(tmp_path / "hamamatsu.tif", plane, magnification=40.0)
    assert_reader_contract(TiffReader, path)
    with open_image(path) as image:
        assert len(image.scenes()) == 1
        assert image.level_count(0) == 2
        md = image.metadata()
    assert md.vendor_metadata["slide_format"] == "ndpi"
    assert md.objective is not None
    assert md.objective.magnification == 40
    assert md.provenance["objective.magnification"] == "NDPI tag 65421 (Magnification)"
    assert md.physical_size.x_um == pytest.approx(0.23)
    assert md.microscope is not None
    assert (md.microscope.manufacturer, md.microscope.model) == ("Hamamatsu", "C13210")


def test_qptiff_channels_levels_and_associated_images(tmp_path: Path) -> None:
    stack = encoded_stack(1, 3, 1, 256, 192)[0, :, 0]
    path = write_qptiff(tmp_path / "slide.qptiff", stack, ["DAPI", "FITC", "Cy5"], levels=2)
    assert_reader_contract(TiffReader, path, stack[np.newaxis, :, np.newaxis])
    with open_image(path) as image:
        assert len(image.scenes()) == 1
        assert image.level_count(0) == 2
        md = image.metadata()
        np.testing.assert_array_equal(np.asarray(image.to_dask(0, 1)[0, 2, 0]), stack[2, ::2, ::2])
    assert [c.name for c in md.channels] == ["DAPI", "FITC", "Cy5"]
    assert md.objective is not None
    assert md.objective.magnification == 20
    assert md.microscope is not None
    assert (md.microscope.manufacturer, md.microscope.model) == ("PerkinElmer", "Vectra Polaris")
    assert [a["name"] for a in md.vendor_metadata["associated_images"]] == ["Thumbnail", "Macro"]


def test_bif_label_first_is_still_not_a_scene(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 128, 128)[0, 0, 0]
    path = write_bif(tmp_path / "slide.bif", plane)
    with open_image(path) as image:
        assert len(image.scenes()) == 1
        assert image.level_count(0) == 2
        md = image.metadata()
        assert (md.size_y, md.size_x) == (128, 128)
    assert md.vendor_metadata["slide_format"] == "bif"
    assert md.objective is not None
    assert md.objective.magnification == 40
    assert md.physical_size.x_um == pytest.approx(0.25)
    assert md.provenance["physical_size.x_um"] == "BIF XMP iScan/@ScanRes"
    assert {a["name"] for a in md.vendor_metadata["associated_images"]} == {"Label", "Thumbnail"}


def test_scn_overview_is_associated_and_main_objective_is_used(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 128, 128)[0, 0, 0]
    path = write_scn(tmp_path / "slide.scn", plane, objective=20)
    assert_reader_contract(TiffReader, path, plane[np.newaxis, np.newaxis, np.newaxis])
    with open_image(path) as image:
        assert len(image.scenes()) == 1
        assert image.level_count(0) == 2
        md = image.metadata()
    assert md.objective is not None
    assert md.objective.magnification == 20  # not the overview's 1.25
    assert md.microscope is not None
    assert md.microscope.model == "Leica SCN400;Leica SCN"
    assert [a["shape"] for a in md.vendor_metadata["associated_images"]] == [[32, 32]]
