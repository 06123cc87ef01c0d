"""LIF layouts the corpus lacks, written with the XML rules liffile reads: tiles, flips, refusals.

Why: the corpus has one tile scan (no flip flags, no unusable positions) and no damaged
descriptions; the reader's tile placement and its open-time refusals are pinned here on
files written by ``tests/readers/test_lif.py``'s writer, against liffile's own arrays.
"""

from __future__ import annotations

import math
import re
import struct
from typing import TYPE_CHECKING

import liffile
import numpy as np
import pytest

from tests.readers.test_lif import _write_lif
from zstack_analyzer import CorruptFileError, MetadataError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers.lif import LifReader

if TYPE_CHECKING:
    from pathlib import Path


def _tiles(
    positions: list[tuple[float, float]], *, flip_x: int = 0, flip_y: int = 0, swap: int = 0
) -> str:
    tiles = "".join(
        f'<Tile FieldX="{m}" FieldY="0" PosX="{x}" PosY="{y}" PosZ="0"/>'
        for m, (x, y) in enumerate(positions)
    )
    return (
        f'<Attachment Name="TileScanInfo" Application="LAS AF" FlipX="{flip_x}" FlipY="{flip_y}" '
        f'SwapXY="{swap}">{tiles}</Attachment>'
    )


def _tile_stack(n: int, ny: int = 4, nx: int = 5) -> np.ndarray:
    return np.stack([np.full((ny, nx), 10 + m, dtype=np.uint8) for m in range(n)])


@pytest.mark.parametrize(
    ("flags", "offsets"),
    [
        ({}, [(0, 0), (0, 3), (1, 0)]),
        ({"flip_x": 1}, [(0, 3), (0, 0), (1, 3)]),
        ({"flip_y": 1}, [(1, 0), (1, 3), (0, 0)]),
        ({"swap": 1}, [(0, 0), (2, 0), (0, 2)]),  # 3 µm / 2 µm = 1.5 -> 2 (rint)
    ],
)
def test_tile_flags_place_the_tiles(
    tmp_path: Path, flags: dict[str, int], offsets: list[tuple[int, int]]
) -> None:
    """X steps are 1 µm and Y steps 2 µm; tiles at (x, y) µm (0, 0), (3, 0), (0, 2)."""
    data = _tile_stack(3)
    path = tmp_path / "tiles.lif"
    attachment = _tiles([(0.0, 0.0), (3e-6, 0.0), (0.0, 2e-6)], **flags)
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=attachment)
    with LifReader(path) as reader:
        md = reader.metadata(0)
        plane = reader.read_plane(0, 0, 0, 0)
        assert md.vendor_metadata["tile_offsets_yx"] == [list(o) for o in offsets]
        height = max(oy for oy, _ in offsets) + 4
        width = max(ox for _, ox in offsets) + 5
        assert md.shape == (1, 1, 1, height, width)
        expected = np.zeros((height, width), dtype=np.uint8)
        for m, (oy, ox) in enumerate(offsets):
            expected[oy : oy + 4, ox : ox + 5] = 10 + m
        np.testing.assert_array_equal(plane, expected)
        for rows, cols in [
            ((0, height), (0, width)),
            ((1, 3), (2, 6)),
            ((height - 1, height), (0, 2)),
        ]:
            np.testing.assert_array_equal(
                reader.read_region(0, 0, 0, 0, rows, cols), expected[slice(*rows), slice(*cols)]
            )
    flagged = [w for w in md.warnings if "FlipX/FlipY/SwapXY" in w]
    assert flagged == (
        []
        if not flags
        else [
            "tile scan with FlipX/FlipY/SwapXY: placement follows the flags, not verified against LAS X"
        ]
    )
    assert (
        f"tile scan of 3 tiles stitched by stage position (offsets y,x px {offsets})" in md.warnings
    )
    assert md.extra_dims == {}


def test_tiles_round_to_the_nearest_pixel(tmp_path: Path) -> None:
    data = _tile_stack(3)
    path = tmp_path / "round.lif"
    # 2.6 µm / 1 µm -> 3 px; 2.4 µm / 1 µm -> 2 px; Y 2.9 µm / 2 µm -> 1 px
    attachment = _tiles([(0.0, 0.0), (2.6e-6, 0.0), (2.4e-6, 2.9e-6)])
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=attachment)
    with LifReader(path) as reader:
        assert reader.metadata(0).vendor_metadata["tile_offsets_yx"] == [[0, 0], [0, 3], [1, 2]]


def test_a_tile_count_that_differs_from_m_keeps_m_an_axis(tmp_path: Path) -> None:
    data = _tile_stack(3)
    path = tmp_path / "count.lif"
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=_tiles([(0.0, 0.0), (3e-6, 0.0)]))
    with LifReader(path) as reader:
        md = reader.metadata(0)
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), data[0])
    assert md.extra_dims == {"M": 3}
    assert md.shape == (1, 1, 1, 4, 5)
    assert md.warnings == [
        "tile scan without usable TileScanInfo: tiles read at index 0",
        "dimension M=3 is read at index 0",
    ]


def test_tiles_of_a_single_row_have_no_y_step(tmp_path: Path) -> None:
    data = np.arange(2 * 1 * 3, dtype=np.uint8).reshape(2, 1, 3)
    path = tmp_path / "row.lif"
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=_tiles([(0.0, 0.0), (3e-6, 0.0)]))
    with LifReader(path) as reader:
        md = reader.metadata(0)
    assert md.extra_dims == {"M": 2}
    assert "tile scan without a Y pixel size: tiles read at index 0" in md.warnings


def test_tile_positions_past_the_dimension_limit_are_corrupt(tmp_path: Path) -> None:
    data = _tile_stack(2)
    path = tmp_path / "far.lif"
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=_tiles([(0.0, 0.0), (100e-6, 0.0)]))
    with LifReader(path, limits=ReadLimits(max_dimension=105)) as reader:
        assert reader.scenes()[0].size_x == 105  # offset 100 < 105
    with pytest.raises(
        CorruptFileError,
        match=r"far\.lif: image 'image': tile stage positions span more than 100 pixels",
    ) as caught:
        LifReader(path, limits=ReadLimits(max_dimension=100))
    assert caught.value.path == path
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=_tiles([(0.0, 0.0), (0.0, 200e-6)]))
    with pytest.raises(CorruptFileError, match="span more than 100 pixels"):
        LifReader(path, limits=ReadLimits(max_dimension=100))


def test_tiles_with_z_and_time_stitch_every_plane(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = rng.integers(0, 60000, size=(2, 3, 2, 4, 5), dtype=np.uint16)  # T, M, Z, Y, X
    path = tmp_path / "tzm.lif"
    _write_lif(
        path,
        data,
        "TMZYX",
        luts=["Gray"],
        attachments=_tiles([(0.0, 0.0), (3e-6, 0.0), (0.0, 2e-6)]),
    )
    with LifReader(path) as reader:
        for t in range(2):
            for z in range(2):
                expected = np.zeros((5, 8), dtype=np.uint16)
                for m, (oy, ox) in enumerate([(0, 0), (0, 3), (1, 0)]):
                    expected[oy : oy + 4, ox : ox + 5] = data[t, m, z]
                np.testing.assert_array_equal(reader.read_plane(0, t, 0, z), expected)
                np.testing.assert_array_equal(
                    reader.read_region(0, t, 0, z, (1, 5), (4, 8)), expected[1:5, 4:8]
                )


def test_channels_and_samples_against_liffile(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    data = rng.integers(0, 250, size=(2, 3, 4, 6, 3), dtype=np.uint8)  # C, Z, Y, X, S (RGB)
    path = tmp_path / "rgb.lif"
    _write_lif(path, data, "CZYXS", luts=["Red", "Green", "Blue"], tags=[1, 2, 3] * 2)
    with liffile.LifFile(path) as lif:
        reference = np.asarray(lif.images[0].asarray())
    np.testing.assert_array_equal(reference, data)  # RGB order kept (not BGR tags)
    with LifReader(path) as reader:
        info = reader.scenes()[0]
        assert info.shape == (1, 2, 3, 4, 6, 3)
        assert info.samples_per_pixel == 3
        assert dict(info.extra_dims) == {}  # S is the samples axis, not an extra one
        assert reader.metadata(0).warnings == []
        for c in range(2):
            for z in range(3):
                np.testing.assert_array_equal(reader.read_plane(0, 0, c, z), data[c, z])
                np.testing.assert_array_equal(
                    reader.read_region(0, 0, c, z, (1, 3), (2, 5)), data[c, z, 1:3, 2:5]
                )


def test_bgr_needs_blue_then_green_tags(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    for tags, reverse in [
        ([3, 2, 1], True),
        ([3, 1, 2], False),
        ([2, 2, 1], False),
        ([1, 2, 3], False),
    ]:
        path = tmp_path / "order.lif"
        _write_lif(path, data, "YXS", luts=["Gray"], tags=tags)
        with LifReader(path) as reader:
            plane = reader.read_plane(0, 0, 0, 0)
        np.testing.assert_array_equal(
            plane, data[..., ::-1] if reverse else data, err_msg=str(tags)
        )


def test_big_endian_free_native_dtype_and_16_bit_values(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5) * 1000
    path = tmp_path / "u16.lif"
    _write_lif(path, data, "ZYX", luts=["Gray"])
    with LifReader(path) as reader:
        md = reader.metadata(0)
        assert md.dtype == "uint16"
        assert md.significant_bits == 16
        for z in range(3):
            plane = reader.read_plane(0, 0, 0, z)
            assert plane.dtype == np.dtype("uint16")
            np.testing.assert_array_equal(plane, data[z])


def test_an_unknown_dimension_is_refused(tmp_path: Path) -> None:
    data = np.zeros((2, 4, 5), dtype=np.uint8)
    path = tmp_path / "dims.lif"
    _write_lif(path, data, "ZYX", luts=["Gray"])
    raw = path.read_bytes()
    path.write_bytes(
        raw.replace('DimID="3"'.encode("utf-16-le"), 'DimID="6"'.encode("utf-16-le"), 1)
    )
    with LifReader(path) as reader:  # DimID 6 is "A": an extra axis read at index 0
        md = reader.metadata(0)
    assert md.extra_dims == {"A": 2}
    assert md.warnings == ["dimension A=2 is read at index 0"]


def test_a_data_block_smaller_than_its_dimensions_is_corrupt(tmp_path: Path) -> None:
    data = np.zeros((2, 4, 5), dtype=np.uint8)
    path = tmp_path / "small.lif"
    _write_lif(path, data, "ZYX", luts=["Gray"])
    raw = path.read_bytes()
    old = 'BytesInc="20"'.encode("utf-16-le")  # Z stride of 4 x 5 bytes
    assert raw.count(old) == 1
    path.write_bytes(raw.replace(old, 'BytesInc="21"'.encode("utf-16-le")))
    with pytest.raises(CorruptFileError) as caught:
        LifReader(path)
    assert str(caught.value) == (
        "small.lif: image 'image': its dimensions need 41 bytes but its data block holds 40; "
        "the file is corrupt"
    )
    assert caught.value.path == path
    for stride in (-2, 0):  # liffile sorts the dimensions by byte increment
        path.write_bytes(raw)
        _edit_xml(path, 'BytesInc="20"', f'BytesInc="{stride}"')
        with pytest.raises(CorruptFileError) as caught:
            LifReader(path)
        assert str(caught.value) == (
            f"small.lif: image 'image': byte increments {{'Y': 5, 'X': 1, 'Z': {stride}}} are not "
            "all positive; the file is corrupt"
        )
        assert caught.value.path == path
    path.write_bytes(raw)
    with LifReader(path) as reader:  # 1 x 20 + 19 + 1 = 40: exactly the block
        assert reader.scenes()[0].shape == (1, 1, 2, 4, 5)


def test_a_dimension_not_in_metres_is_no_calibration(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), dtype=np.uint8)
    path = tmp_path / "units.lif"
    _write_lif(path, data, "ZYX", luts=["Gray"])
    raw = path.read_bytes()
    metres = 'Unit="m"'.encode("utf-16-le")
    assert raw.count(metres) == 3  # Z, Y, X in file order
    path.write_bytes(raw.replace(metres, 'Unit="s"'.encode("utf-16-le"), 1))
    with LifReader(path) as reader:
        md = reader.metadata(0)
    assert md.physical_size.z_um is None
    assert md.physical_size.y_um == pytest.approx(2.0)
    assert md.physical_size.x_um == pytest.approx(1.0)
    assert md.warnings == ["Z dimension unit 's' is not metres"]


# ----------------------------------------------------- fifth round: layouts refused or kept
def _edit_xml(path: Path, pattern: str, new: str) -> None:
    """Replace the first match of ``pattern`` in the LIF's XML header; the data blocks stay.

    The header's character count is written anew; liffile walks the memory blocks from the
    end of the XML, so they are found as before.
    """
    raw = path.read_bytes()
    (chars,) = struct.unpack_from("<I", raw, 9)
    xml = raw[13 : 13 + 2 * chars].decode("utf-16-le")
    edited, count = re.subn(pattern, new, xml, count=1)
    assert count == 1, pattern
    body = edited.encode("utf-16-le")
    head = struct.pack("<IIBI", 0x70, len(body) + 5, 0x2A, len(edited))
    path.write_bytes(head + body + raw[13 + 2 * chars :])


def _channels(offsets: list[int], tags: list[int] | None = None) -> str:
    tags = tags or [0] * len(offsets)
    return (
        "<Channels>"
        + "".join(
            f'<ChannelDescription DataType="0" ChannelTag="{tag}" Resolution="8" '
            'NameOfMeasuredQuantity="" Min="0" Max="255" Unit="" LUTName="Gray" IsLUTInverted="0" '
            f'BytesInc="{offset}" BitInc="0"/>'
            for offset, tag in zip(offsets, tags, strict=True)
        )
        + "</Channels>"
    )


def _dimensions(dims: list[tuple[int, int, int]]) -> str:
    """(DimID, NumberOfElements, BytesInc) per dimension, innermost first, 1 µm steps."""
    return (
        "<Dimensions>"
        + "".join(
            f'<DimensionDescription DimID="{dim_id}" NumberOfElements="{n}" Origin="0" '
            f'Length="{1e-6 * (n - 1)}" Unit="m" BitInc="0" BytesInc="{inc}"/>'
            for dim_id, n, inc in dims
        )
        + "</Dimensions>"
    )


def test_an_image_without_channel_descriptions_is_an_unsupported_layout(tmp_path: Path) -> None:
    """liffile has no data type without a ChannelDescription: refused as MetadataError."""
    path = tmp_path / "nochannels.lif"
    _write_lif(path, np.zeros((4, 5), dtype=np.uint8), "YX", luts=["Gray"])
    _edit_xml(path, "<Channels>.*</Channels>", "<Channels/>")
    with pytest.raises(MetadataError) as caught:
        LifReader(path)
    assert str(caught.value) == (
        "nochannels.lif: image 'image': unsupported pixel layout (no channels found in image)"
    )
    assert caught.value.path == path


def test_channels_stored_in_two_places_are_refused(tmp_path: Path) -> None:
    """Four channels stored as (C1=2, Z=2, C=2, Y=2, X=3), channel BytesInc 0, 6, 24, 30.

    Z's BytesInc (12) skips two Y,X planes, so liffile puts a C axis between Z and Y
    and the other pair outermost as "C1", a dimension no DimensionDescription names:
    the reader refuses the layout rather than read it as something else.
    """
    path = tmp_path / "split.lif"
    _write_lif(path, np.arange(48, dtype=np.uint8), "X", luts=["Gray"])
    _edit_xml(path, "<Channels>.*</Channels>", _channels([0, 6, 24, 30]))
    _edit_xml(path, "<Dimensions>.*</Dimensions>", _dimensions([(1, 3, 1), (2, 2, 3), (3, 2, 12)]))
    with liffile.LifFile(path) as lif:
        assert lif.images[0].sizes == {"C1": 2, "Z": 2, "C": 2, "Y": 2, "X": 3}
    with pytest.raises(MetadataError) as caught:
        LifReader(path)
    assert str(caught.value) == "split.lif: image 'image': unsupported dimension layout C1ZCYX"
    assert caught.value.path == path


def test_an_image_whose_data_block_is_not_in_the_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "noblock.lif"
    _write_lif(path, np.zeros((4, 5), dtype=np.uint8), "YX", luts=["Gray"])
    _edit_xml(path, 'MemoryBlockID="MemBlock_1"', 'MemoryBlockID="MemBlock_9"')
    with pytest.raises(CorruptFileError) as caught:
        LifReader(path)
    assert str(caught.value) == (
        "noblock.lif: image 'image': its data block 'MemBlock_9' is missing; "
        "the file is truncated or corrupt"
    )
    assert caught.value.path == path


def test_the_last_channel_must_lie_inside_the_data_block(tmp_path: Path) -> None:
    """Channel 1 of a C,Y,X image moved one byte on: it would end past the 40-byte block."""
    data = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    path = tmp_path / "channel.lif"
    _write_lif(path, data, "CYX", luts=["Gray"])
    with LifReader(path) as reader:  # 3 x 5 + 4 x 1 + 20 + 1 = 40: exactly the block
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 0), data[1])
    _edit_xml(path, 'BytesInc="20"', 'BytesInc="21"')
    with pytest.raises(CorruptFileError) as caught:
        LifReader(path)
    assert str(caught.value) == (
        "channel.lif: image 'image': its dimensions need 41 bytes but its data block holds 40; "
        "the file is corrupt"
    )
    assert caught.value.path == path


def test_a_dimension_inside_the_tiles_stays_an_extra_axis(tmp_path: Path) -> None:
    """Tiles (M) outside an unknown dimension A: the tiles are stitched, A is read at index 0."""
    rng = np.random.default_rng(11)
    data = rng.integers(0, 250, size=(2, 2, 4, 5), dtype=np.uint8)  # M, A, Y, X
    path = tmp_path / "tiles_a.lif"
    _write_lif(path, data, "MZYX", luts=["Gray"], attachments=_tiles([(0.0, 0.0), (3e-6, 0.0)]))
    _edit_xml(path, 'DimID="3"', 'DimID="6"')  # Z -> A (rotation)
    with liffile.LifFile(path) as lif:
        assert "".join(lif.images[0].dims) == "MAYX"
    with LifReader(path) as reader:
        md = reader.metadata(0)
        plane = reader.read_plane(0, 0, 0, 0)
    assert md.extra_dims == {"A": 2}
    assert md.shape == (1, 1, 1, 4, 8)
    assert "dimension A=2 is read at index 0" in md.warnings
    expected = np.zeros((4, 8), dtype=np.uint8)
    expected[:, 0:5] = data[0, 0]
    expected[:, 3:8] = data[1, 0]
    np.testing.assert_array_equal(plane, expected)


def test_four_samples_are_never_reversed(tmp_path: Path) -> None:
    """liffile reverses blue-first samples only for three of them (BGR); four stay in order."""
    data = np.arange(3 * 2 * 4, dtype=np.uint8).reshape(3, 2, 4)
    path = tmp_path / "four.lif"
    _write_lif(path, data, "YXS", luts=["Gray"], tags=[3, 2, 1, 0])
    with liffile.LifFile(path) as lif:
        np.testing.assert_array_equal(np.asarray(lif.images[0].asarray()), data)
    with LifReader(path) as reader:
        assert reader.scenes()[0].samples_per_pixel == 4
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), data)


@pytest.mark.parametrize(
    ("nx", "nz", "dtype", "samples", "one_read"),
    [
        (64, 71, "uint8", 1, True),  # span 4,608 = 4 planes of 128 bytes + 4,096: one read
        (64, 72, "uint8", 1, False),  # span 4,672: a read per row
        (17, 248, "uint8", 1, False),  # span 4,233, one byte over 4 x 34 + 4,096
        (32, 71, "uint16", 1, True),  # 16 bits: span 4,608 = 4 x 128 + 4,096
        (64, 28, "uint8", 3, True),  # RGB: span 5,568 <= 4 x 384 + 4,096 = 5,632
    ],
)
def test_rows_far_apart_are_read_one_by_one(
    tmp_path: Path, nx: int, nz: int, dtype: str, samples: int, one_read: bool
) -> None:
    """Y outermost (Y, Z, X(, S) stored): a plane's two rows lie a Z stack apart.

    The reader reads a plane in one read when its rows span at most four planes plus
    4 KiB, else row by row; a file cut one byte short shows which: the failed read
    names how many bytes it asked for and where.
    """
    shape = (2, nz, nx, samples) if samples > 1 else (2, nz, nx)
    data = np.arange(math.prod(shape), dtype=np.uint16).astype(dtype).reshape(shape)
    path = tmp_path / "yzx.lif"
    _write_lif(path, data, "YZXS" if samples > 1 else "YZX", luts=["Gray"])
    size = path.stat().st_size
    block = size - data.nbytes
    row = nx * samples * data.dtype.itemsize
    first = block + (nz - 1) * row  # row 0 of the last Z plane
    last = first + nz * row  # row 1: the file's last bytes
    with LifReader(path) as reader:
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, nz - 1), data[:, nz - 1])
        np.testing.assert_array_equal(
            reader.read_region(0, 0, 0, nz - 1, (1, 2), (1, nx)), data[1:2, nz - 1, 1:]
        )
        with path.open("r+b") as fh:
            fh.truncate(size - 1)
        if one_read:
            span = last + row - first
            message = f"read {span - 1:,} of {span:,} bytes at offset {first:,}"
        else:
            message = f"read {row - 1:,} of {row:,} bytes at offset {last:,}"
        with pytest.raises(CorruptFileError) as caught:
            reader.read_plane(0, 0, 0, nz - 1)
    assert str(caught.value) == f"yzx.lif: {message}; the file is truncated"
    assert caught.value.path == path


def test_tiles_of_two_pixels_are_stitched(tmp_path: Path) -> None:
    """Two pixels along X and Y are enough for a pixel step: the tiles are placed."""
    data = _tile_stack(2, ny=2, nx=2)
    path = tmp_path / "small_tiles.lif"
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=_tiles([(0.0, 0.0), (3e-6, 2e-6)]))
    with LifReader(path) as reader:
        md = reader.metadata(0)
        plane = reader.read_plane(0, 0, 0, 0)
    assert md.vendor_metadata["tile_offsets_yx"] == [[0, 0], [1, 3]]
    assert md.extra_dims == {}
    expected = np.zeros((3, 5), dtype=np.uint8)
    expected[0:2, 0:2] = 10
    expected[1:3, 3:5] = 11
    np.testing.assert_array_equal(plane, expected)


def test_tile_steps_do_not_depend_on_the_dimension_origin(tmp_path: Path) -> None:
    """LAS X writes the stage position as X and Y's Origin; the pixel step is Length/(n-1)."""
    data = _tile_stack(3)
    path = tmp_path / "origin.lif"
    attachment = _tiles([(0.0, 0.0), (3e-6, 0.0), (0.0, 2e-6)])
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=attachment)
    _edit_xml(
        path,
        'DimID="1" NumberOfElements="5" Origin="0.0"',
        'DimID="1" NumberOfElements="5" Origin="0.0123"',
    )
    _edit_xml(
        path,
        'DimID="2" NumberOfElements="4" Origin="0.0"',
        'DimID="2" NumberOfElements="4" Origin="-0.0045"',
    )
    with liffile.LifFile(path) as lif:
        assert lif.images[0].coords["X"][0] == pytest.approx(0.0123)
    with LifReader(path) as reader:
        assert reader.metadata(0).vendor_metadata["tile_offsets_yx"] == [[0, 0], [0, 3], [1, 0]]


def test_rgb_tiles_are_stitched_with_their_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = rng.integers(0, 250, size=(2, 4, 5, 3), dtype=np.uint8)  # M, Y, X, S
    path = tmp_path / "rgb_tiles.lif"
    _write_lif(
        path,
        data,
        "MYXS",
        luts=["Gray"],
        tags=[1, 2, 3],
        attachments=_tiles([(0.0, 0.0), (3e-6, 0.0)]),
    )
    expected = np.zeros((4, 8, 3), dtype=np.uint8)
    expected[:, 0:5] = data[0]
    expected[:, 3:8] = data[1]
    with LifReader(path) as reader:
        assert reader.scenes()[0].shape == (1, 1, 1, 4, 8, 3)
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), expected)
        np.testing.assert_array_equal(
            reader.read_region(0, 0, 0, 0, (1, 3), (2, 7)), expected[1:3, 2:7]
        )
