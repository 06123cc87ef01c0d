"""Leica SCN and Hamamatsu NDPI metadata against Bio-Formats 7.3.1 on the same synthetic file.

Why synthetic: no SCN or NDPI file is in the shared corpora; these are written with the
vendors' published layout (``tests/mutation_kills/test_wsi_facts.py``), and Bio-Formats'
own LeicaSCNReader and NDPIReader read them here. What is compared is what both readers
say of an image: acquisition time, objective magnification and NA, the channel's
illumination, pixel size; for NDPI the scanner model and serial number.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.synthetic_wsi import SCN_TWO_REGIONS, write_scn_images
from zstack_analyzer import open_image
from zstack_analyzer.readers.bioformats.reader import BioformatsReader

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.readers.bioformats.pool import WorkerPool

pytestmark = pytest.mark.xdist_group("bioformats")


def test_scn_per_image_facts_match_bioformats(tmp_path: Path, bf_pool: WorkerPool) -> None:
    # one device model for the file: Bio-Formats 7.3.1 fails (IndexOutOfBounds) on an SCN
    # whose images name two device models (objectives numbered across instruments)
    images = [{**image, "model": "Leica SCN400;Leica SCN"} for image in SCN_TWO_REGIONS]
    path = write_scn_images(tmp_path / "slide.scn", images)
    with open_image(path) as ours, BioformatsReader(path) as theirs:
        assert theirs.reader_name == "LeicaSCNReader"
        # Bio-Formats keeps the macro as its series 0; ours is an associated image
        assert len(theirs.scenes()) == len(ours.scenes()) + 1
        for scene in range(len(ours.scenes())):
            mine, bf = ours.metadata(scene), theirs.metadata(scene + 1)
            # Bio-Formats writes the instant in UTC without its zone; ours keeps the zone
            assert mine.acquired_at is not None
            assert mine.acquired_at.astimezone(UTC).replace(tzinfo=None) == bf.acquired_at_local
            assert mine.objective is not None and bf.objective is not None
            assert mine.objective.magnification == bf.objective.magnification
            assert mine.objective.numerical_aperture == bf.objective.numerical_aperture
            assert mine.channels[0].illumination == bf.channels[0].illumination
            assert mine.physical_size.x_um == pytest.approx(bf.physical_size.x_um)
            assert mine.physical_size.y_um == pytest.approx(bf.physical_size.y_um)


def test_ndpi_model_and_serial_match_bioformats(tmp_path: Path, bf_pool: WorkerPool) -> None:
    """Bio-Formats' NDPIReader: Microscope Model from tag 65449 Product, and the NDP.S/N as
    the slide image's Description (it has no serial number field of its own for it)."""
    # the same bytes under two names: tifffile reads a ".ndpi" with NDPI's 64-bit offsets,
    # which a plain TIFF written here has not; Bio-Formats wants the .ndpi suffix
    path = tmp_path / "slide.tif"
    properties = "Created=2016/01/01\r\nProduct=C13210-01\r\nNDP.S/N=000003\r\n"
    tifffile.imwrite(
        path,
        np.zeros((64, 64), "uint8"),
        photometric="minisblack",
        metadata=None,
        extratags=[
            (65420, "I", 1, 1, True),
            (65421, "f", 1, 20.0, True),
            (271, "s", 0, "Hamamatsu", True),
            (272, "s", 0, "C13210", True),
            (65442, "s", 0, "SN-0042", True),
            (65449, "s", 0, properties, True),
        ],
    )
    named = tmp_path / "slide.ndpi"
    named.write_bytes(path.read_bytes())
    with open_image(path) as ours, BioformatsReader(named) as theirs:
        assert theirs.reader_name == "NDPIReader"
        mine, bf = ours.metadata(), theirs.metadata()
    omexml = ET.fromstring(str(bf.vendor_metadata["ome_xml"]))  # noqa: S314 (Bio-Formats' own)
    description = next(e.text for e in omexml.iter() if e.tag.endswith("}Description"))
    assert mine.microscope is not None and bf.microscope is not None
    assert mine.microscope.model == bf.microscope.model == "C13210-01"
    assert mine.microscope.serial_number == description == "000003"
    assert mine.objective is not None and bf.objective is not None
    assert mine.objective.magnification == bf.objective.magnification == 20.0
