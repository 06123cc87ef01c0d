"""Sizes a header cannot have, and damage the fuzzer found, end in CorruptFileError at open.

Issue #15 item 9: a byte flip that turns a width into 0 was accepted (hela-cells.tif
opened with width 0, then thumbnails failed with IndexError). Every reader now
refuses an empty or negative axis when the file is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.corrupt import lif_elements, nd2_attribute, tiff_description, tiff_tag
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_imagej, write_ome_tiff
from zstack_analyzer import CorruptFileError, ImageLoadError, open_image

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

WIDTH, HEIGHT = 256, 257


def _refused(path: Path, data: bytes | None, match: str | None = None) -> None:
    assert data is not None, "the corruptor did not apply"
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match=match):
        open_image(path)


def _plain(path: Path) -> bytes:
    tifffile.imwrite(path, encoded_stack(1, 1, 3, 16, 20)[0, 0], photometric="minisblack")
    return path.read_bytes()


def _imagej(path: Path) -> bytes:
    write_imagej(path, encoded_stack(1, 2, 3, 16, 20))
    return path.read_bytes()


@pytest.mark.parametrize("tag", [WIDTH, HEIGHT], ids=["width", "height"])
@pytest.mark.parametrize("write", [_plain, _imagej], ids=["plain", "imagej"])
def test_zero_tiff_size_is_corrupt(
    tmp_path: Path, write: Callable[[Path], bytes], tag: int
) -> None:
    path = tmp_path / "zero.tif"
    _refused(path, tiff_tag(tag, 0)(write(path)))


def test_zero_ome_size_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "zero.ome.tif"
    write_ome_tiff(path, [encoded_stack(1, 1, 2, 16, 20)])
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    assert xml is not None and 'SizeX="20"' in xml
    broken = tiff_description(xml.replace('SizeX="20"', 'SizeX="0"').encode())(path.read_bytes())
    assert broken is not None
    path.write_bytes(broken)
    with pytest.raises(ImageLoadError):  # CorruptFileError or MetadataError: both 422
        open_image(path)


@pytest.mark.realdata
def test_byte_flipped_hela_cells_is_corrupt(testdata: Path, tmp_path: Path) -> None:
    """The file of the issue: ImageJ RGB, width flipped to 0."""
    data = (testdata / "imagej" / "hela-cells.tif").read_bytes()
    _refused(tmp_path / "hela-cells.tif", tiff_tag(WIDTH, 0)(data), match="empty or negative")


@pytest.mark.realdata
def test_zero_stk_width_is_corrupt(testdata: Path, tmp_path: Path) -> None:
    data = (testdata / "tiff" / "movie.stk").read_bytes()
    _refused(tmp_path / "movie.stk", tiff_tag(WIDTH, 0)(data))


@pytest.mark.realdata
def test_zero_nd2_width_is_corrupt(testdata: Path, tmp_path: Path) -> None:
    data = (testdata / "nd2" / "cluster.nd2").read_bytes()
    _refused(tmp_path / "cluster.nd2", nd2_attribute("uiWidth", 0)(data))


@pytest.mark.realdata
def test_zero_lif_sizes_are_corrupt(testdata: Path, tmp_path: Path) -> None:
    """liffile asserts on such a header; the assert must surface as CorruptFileError."""
    data = (testdata / "lif" / "PR2729_frameOrderCombinedScanTypes.lif").read_bytes()
    _refused(tmp_path / "zero.lif", lif_elements("0")(data))
    _refused(tmp_path / "first.lif", lif_elements("0", count=1)(data))  # liffile's assert


def test_zero_czi_width_is_corrupt(tmp_path: Path) -> None:
    from tests.corrupt import czi_dimension
    from tests.synthetic_czi import write_czi_stack

    path = tmp_path / "zero.czi"
    write_czi_stack(path)
    data = path.read_bytes()
    # libCZI reads such a subblock by its other size (a mosaic then silently changes shape).
    _refused(path, czi_dimension("X", 0)(data), match="empty or negative X extent")
    _refused(path, czi_dimension("Y", -5, field=3)(data), match="empty or negative Y extent")


def test_tiled_tiff_without_width_is_corrupt(tmp_path: Path) -> None:
    """Found by `make fuzz`: one flipped byte turns ImageWidth (256) into a second
    ImageLength (257); tifffile then divides by the missing width (ZeroDivisionError)."""
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(
        path,
        np.zeros((16, 20), np.uint16),
        tile=(16, 16),
        compression="zlib",
        photometric="minisblack",
    )
    data = bytearray(path.read_bytes())
    assert data[10:12] == b"\x00\x01"  # the first entry's tag: 256, little-endian
    data[10] = 1
    _refused(path, bytes(data))


def test_truncated_multipage_tiff_is_refused_at_open(tmp_path: Path) -> None:
    """tifffile writes each page's IFD before its data: a cut file still lists every page."""
    path = tmp_path / "pages.tif"
    stack = encoded_stack(1, 1, 4, 64, 64)[0, 0]
    tifffile.imwrite(path, stack, compression="zlib", photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[-1]
        ifd, data_start = last.offset, int(last.dataoffsets[0])
    assert ifd < data_start  # the last IFD survives the cut below
    _refused(path, path.read_bytes()[: data_start + 10], match="IFD 3 ends past the end")


def test_damaged_middle_plane_is_refused_when_read(tmp_path: Path) -> None:
    """Opening checks the first and last plane of each scene (a constant cost, not one IFD
    parse per plane); a plane in between whose strip lies past the end of the file still
    ends in CorruptFileError, when it is read, and the other planes read whole."""
    path = tmp_path / "middle.ome.tif"
    stack = encoded_stack(1, 2, 4, 32, 24)
    write_ome_tiff(path, [stack], bigtiff=True)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 8
        tag = tif.pages[5].tags["StripOffsets"]
        assert tag.count == 1  # the value sits in the IFD entry itself
        where = tag.valueoffset
    data[where : where + 8] = (len(data) + 4096).to_bytes(8, "little")
    path.write_bytes(data)
    with open_image(path) as image:  # plane 5 is t=0 c=1 z=1
        assert image.metadata(0).size_z == 4
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 0, 0])
        np.testing.assert_array_equal(image.read_plane(0, 0, 1, 3), stack[0, 1, 3])
        with pytest.raises(CorruptFileError, match="IFD 5 ends past the end of the file"):
            image.read_plane(0, 0, 1, 1)
        with pytest.raises(CorruptFileError, match="IFD 5 ends past the end of the file"):
            image.read_region(0, 0, 1, 1, (0, 4), (0, 4))
        with pytest.raises(CorruptFileError, match="IFD 5 ends past the end of the file"):
            image.to_dask(0).compute()


def test_truncated_ome_bigtiff_with_ifds_after_the_data_is_refused_at_open(
    tmp_path: Path,
) -> None:
    """Large OME-TIFFs keep the IFDs after the pixel data: a cut loses the last IFDs, and the
    last plane's page (checked at open) can no longer be read."""
    path = tmp_path / "cut.ome.tif"
    write_ome_tiff(path, [encoded_stack(1, 2, 4, 32, 24)], bigtiff=True)
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[-1]
        cut = last.offset + 4
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(CorruptFileError, match=r"cut\.ome\.tif"):
        open_image(path)
