"""MRC and DeltaVision section stacks and the DeltaVision header (mutation kills, sixth round).

References: the written stacks themselves (:func:`tests.synthetic.encoded_stack`,
written by :func:`tests.synthetic_dv.write_dv` from the DeltaVision header layout
and by ``mrcfile`` for MRC), and :meth:`ImageReader.read_region`'s documented
clipping (a negative bound is 0, not a count from the end).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import encoded_stack
from tests.synthetic_dv import write_dv
from zstack_analyzer import (
    CorruptFileError,
    SceneNotFoundError,
    UnsupportedFormatError,
    open_image,
)
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers._base import ImageReader
from zstack_analyzer.readers._section_stack import (
    HEADER_BYTES,
    check_data_extent,
    data_block_offset,
    read_fixed_header,
)

STACK = encoded_stack(1, 1, 2, 12, 16)


@pytest.fixture(scope="module", params=["dv", "mrc"])
def section_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-section 12 x 16 stack as DeltaVision and as MRC."""
    folder = tmp_path_factory.mktemp("sections")
    if request.param == "dv":
        return write_dv(folder / "stack.dv", STACK)
    import mrcfile

    path = folder / "stack.mrc"
    with mrcfile.new(path) as mrc:
        # MRC stores the bottom row first, like DeltaVision: flip so the reader's planes are STACK's.
        mrc.set_data(np.ascontiguousarray(STACK[0, 0, :, ::-1]))
    return path


def _clipped(plane: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The documented region: each bound clipped to 0 below, the plane's size above."""
    return plane[max(0, rows[0]) : max(0, rows[1]), max(0, cols[0]) : max(0, cols[1])]


BOUNDS = [
    ((0, 12), (0, -3)),  # a negative end column: no columns, not "all but the last 3"
    ((0, -3), (0, 16)),  # a negative end row
    ((-5, -3), (-4, -1)),
    ((-2, 5), (-7, 9)),  # negative starts are 0
    ((2, 30), (3, 40)),  # ends past the plane stop at it
    ((5, 2), (6, 1)),  # empty: start after end
    ((11, 12), (15, 16)),  # the last pixel
    ((12, 20), (0, 16)),  # starting at the edge: nothing
    ((20, 30), (0, 16)),  # starting past the edge: nothing, not rows counted from the end
    ((4, 4), (3, 9)),  # no rows
]


@pytest.mark.parametrize(("rows", "cols"), BOUNDS)
def test_region_bounds_clip_like_the_default(
    section_file: Path, rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    """MRC and DeltaVision regions clip their bounds as ImageReader.read_region does.

    Before the fix a negative end bound was a count from the end of the plane
    (``cols (0, -3)`` gave 13 columns where the default gives none).
    """
    with open_image(section_file) as image:
        region = image.read_region(0, 0, 0, 1, rows, cols)
        default = ImageReader.read_region(image, 0, 0, 0, 1, rows, cols)
    expected = _clipped(STACK[0, 0, 1], rows, cols)
    assert region.shape == expected.shape == default.shape
    np.testing.assert_array_equal(region, expected)
    assert region.dtype == STACK.dtype
    assert region.flags.c_contiguous


# ============================================================================ shared helpers
def test_fixed_header_is_the_first_1024_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long.bin"
    path.write_bytes(bytes(range(256)) * 8)
    head = read_fixed_header(path, "MRC")
    assert head == (bytes(range(256)) * 4)
    assert len(head) == HEADER_BYTES
    path.write_bytes(b"x" * 1023)
    with pytest.raises(CorruptFileError) as caught:
        read_fixed_header(path, "MRC")
    assert caught.value.path == path
    assert "long.bin: the 1024-byte MRC header is cut short (1023 bytes)" in str(caught.value)


def test_data_block_offset_checks_the_extended_header_and_the_data(tmp_path: Path) -> None:
    path = tmp_path / "block.dv"
    path.write_bytes(bytes(1024 + 100 + 50))
    limits = ReadLimits(max_metadata_bytes=100)
    # An extended header exactly at the metadata limit is allowed.
    assert (
        data_block_offset(path, extended_bytes=100, data_bytes=50, limits=limits, format_name="X")
        == 1124
    )
    assert data_block_offset(path, extended_bytes=0, data_bytes=0, limits=limits, format_name="X")
    for extended in (101, -1):
        with pytest.raises(CorruptFileError) as caught:
            data_block_offset(
                path, extended_bytes=extended, data_bytes=0, limits=limits, format_name="X"
            )
        assert caught.value.path == path
        assert f"extended header of {extended:,} bytes is negative or over the metadata limit" in (
            str(caught.value)
        )
    with pytest.raises(CorruptFileError) as caught:
        data_block_offset(
            path, extended_bytes=100, data_bytes=51, limits=limits, format_name="DeltaVision"
        )
    assert caught.value.path == path
    assert str(caught.value).startswith(
        "block.dv: the DeltaVision header declares 51 bytes of pixels from byte 1,124, "
        "but the file has 1,174 bytes; the file is truncated or its header lies"
    )


def test_data_extent_refuses_negative_offsets_and_sizes_only(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(10))
    check_data_extent(path, offset=0, nbytes=10, what="w")  # the whole file, from byte 0
    check_data_extent(path, offset=10, nbytes=0, what="w")  # nothing, at the end
    check_data_extent(path, offset=3, nbytes=0, what="w")
    for offset, nbytes in ((-1, 5), (2, -1), (-4, -4)):
        with pytest.raises(CorruptFileError) as caught:
            check_data_extent(path, offset=offset, nbytes=nbytes, what="the test header")
        assert caught.value.path == path
        assert str(caught.value).startswith(
            "data.bin: the test header declares a negative offset or size; the file is corrupt"
        )
    with pytest.raises(CorruptFileError) as caught:
        check_data_extent(path, offset=1, nbytes=10, what="w")
    assert caught.value.path == path


# ============================================================================ reader protocol
def test_defaults_levels_and_errors(section_file: Path) -> None:
    with open_image(section_file) as image:
        assert image.region_grid() == (1, 16)
        assert image.region_grid(0, 1) is None
        lazy = image.to_dask()
        assert lazy.shape == (1, 1, 2, 12, 16)
        assert lazy.name.startswith(f"{type(image).__name__.lower()}-")
        np.testing.assert_array_equal(lazy.compute(scheduler="sync"), STACK)
        for call in (
            lambda: image.to_dask(0, 1),
            lambda: image.read_region(0, 0, 0, 0, (0, 2), (0, 2), level=1),
        ):
            with pytest.raises(SceneNotFoundError) as caught:
                call()
            assert caught.value.path == section_file
            assert str(caught.value).startswith(
                f"{section_file.name}: pyramid level 1 does not exist; it has 1"
            )


def test_metadata_is_a_copy(section_file: Path) -> None:
    with open_image(section_file) as image:
        first = image.metadata()
        first.channels[0].name = "changed"
        first.provenance["sizes"] = "changed"
        again = image.metadata()
    assert again.channels[0].name is None
    assert again.provenance["sizes"] != "changed"


def test_close_drops_the_memory_map(section_file: Path) -> None:
    import gc
    import weakref

    image = open_image(section_file)
    mapped = weakref.ref(image._sections)  # type: ignore[attr-defined]
    image.close()
    gc.collect()
    assert mapped() is None
    with pytest.raises(ValueError, match="the reader is closed"):
        image.read_plane(0, 0, 0, 0)


def test_big_endian_reads_are_native_writable_copies(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 6, 5)
    path = write_dv(tmp_path / "be.dv", stack, byteorder=">", extended=False)
    with open_image(path) as image:
        plane = image.read_plane(0, 0, 0, 1)
        region = image.read_region(0, 0, 0, 1, (1, 4), (0, 5))
        whole = image.read_region(0, 0, 0, 0, (0, 6), (0, 5))
    for got, want in (
        (plane, stack[0, 0, 1]),
        (region, stack[0, 0, 1, 1:4]),
        (whole, stack[0, 0, 0]),
    ):
        assert got.dtype == np.dtype("uint16")
        assert got.dtype.isnative
        assert got.flags.writeable
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)


# ============================================================================ DeltaVision
DV_STACK = encoded_stack(1, 2, 3, 16, 16)  # 6 sections, NumTimes 1, NumWaves 2


def _patch(path: Path, *edits: tuple[int, str, int]) -> Path:
    data = bytearray(path.read_bytes())
    for offset, fmt, value in edits:
        struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))
    return path


def _dv_with_extended(
    path: Path,
    stack: np.ndarray,
    *,
    n_ints: int,
    n_floats: int,
    short_by: int = 0,
    byteorder: str = "<",
) -> Path:
    """A DeltaVision file whose extended header has ``n_ints`` ints and ``n_floats`` floats a section.

    Floats as softWoRx writes them: [1] time stamp (s), [8] exposure (s),
    [10] excitation and [11] emission (nm), when there are that many. The
    block is ``short_by`` bytes shorter than the sections need.
    """
    plain = write_dv(path, stack, extended=False, waves=(0, 0), byteorder=byteorder).read_bytes()
    t_n, c_n, z_n = stack.shape[:3]
    rows = []
    for t in range(t_n):
        for c in range(c_n):
            for _z in range(z_n):  # ImgSequence 0 (ZTW) is z fastest, then t, then c
                floats = [0.0] * n_floats
                for index, value in ((1, 3.0 * t), (8, 0.02 * (c + 1)), (10, 400.0 + c)):
                    if index < n_floats:
                        floats[index] = value
                rows.append(
                    struct.pack(f"{byteorder}{n_ints}i{n_floats}f", *([7] * n_ints), *floats)
                )
    # order the rows as the file stores sections: c outermost, then t, then z
    ordered = [
        rows[(t * c_n + c) * z_n + z] for c in range(c_n) for t in range(t_n) for z in range(z_n)
    ]
    extended = b"".join(ordered)
    extended = extended[: len(extended) - short_by]
    head = bytearray(plain[:1024])
    struct.pack_into(byteorder + "i", head, 92, len(extended))
    struct.pack_into(byteorder + "2h", head, 128, n_ints, n_floats)
    path.write_bytes(bytes(head) + extended + plain[1024:])
    return path


@pytest.mark.parametrize(
    ("size", "expected"),
    [(98, True), (97, False), (1024, True)],
)
def test_dv_sniff_needs_the_id_at_byte_96(size: int, expected: bool) -> None:
    from zstack_analyzer.readers.dv import DeltaVisionReader

    for dv_id in (b"\xa0\xc0", b"\xc0\xa0"):
        head = (bytes(96) + dv_id).ljust(size, b"\0")[:size]
        assert DeltaVisionReader.sniff(head, Path("x.dv")) is expected
    assert DeltaVisionReader.sniff(bytes(96) + b"\xa0\xa0", Path("x.dv")) is False


@pytest.mark.parametrize(
    ("edits", "error", "message"),
    [
        ([(0, "<i", -5)], "corrupt", "the header declares -5 x 16 pixels, 6 sections, T=1, C=2"),
        ([(0, "<i", 0)], "corrupt", "the header declares 0 x 16 pixels, 6 sections, T=1, C=2"),
        ([(4, "<i", 0)], "corrupt", "the header declares 16 x 0 pixels, 6 sections, T=1, C=2"),
        ([(8, "<i", 0)], "corrupt", "the header declares 16 x 16 pixels, 0 sections, T=1, C=2"),
        (
            [(180, "<h", -1)],
            "corrupt",
            "16 x 16 pixels, 6 sections, T=-1, C=2; the file is corrupt",
        ),
        (
            [(196, "<h", -2)],
            "corrupt",
            "16 x 16 pixels, 6 sections, T=1, C=-2; the file is corrupt",
        ),
        (
            [(196, "<h", 4)],
            "corrupt",
            "6 sections do not divide into T=1 x C=4; the header is corrupt",
        ),
        (
            [(182, "<h", -1)],
            "corrupt",
            "image sequence -1 is not one DeltaVision defines (0, 1, 2)",
        ),
        ([(182, "<h", 3)], "corrupt", "image sequence 3 is not one DeltaVision defines (0, 1, 2)"),
        ([(92, "<i", -1)], "corrupt", "extended header of -1 bytes is negative or over"),
        (
            [(12, "<i", 3)],
            "unsupported",
            "DeltaVision pixel type 3 (complex int16) is not supported",
        ),
        ([(12, "<i", 8)], "corrupt", "DeltaVision pixel type 8 is not one the format defines"),
        ([(128, "<h", -1)], "corrupt", "invalid DeltaVision structure: bad char in struct format"),
        ([(4, "<i", 17)], "corrupt", "the DeltaVision header declares 3,264 bytes of pixels"),
    ],
)
def test_dv_header_lies_name_the_file_and_the_field(
    tmp_path: Path, edits: list[tuple[int, str, int]], error: str, message: str
) -> None:
    from zstack_analyzer.readers.dv import DeltaVisionReader

    # with an extended header: mrc parses it by NumIntegers, which must not be negative
    path = _patch(write_dv(tmp_path / "lie.dv", DV_STACK, extended=edits[0][0] == 128), *edits)
    kind = UnsupportedFormatError if error == "unsupported" else CorruptFileError
    with pytest.raises(kind) as caught:
        DeltaVisionReader(path)
    assert type(caught.value) is kind
    assert caught.value.path == path
    assert str(caught.value).startswith(f"lie.dv: {message}") or (
        message in str(caught.value) and str(caught.value).startswith("lie.dv: ")
    )
    if "invalid" in message:
        assert caught.value.detail == "error('bad char in struct format')"
        assert isinstance(caught.value.__cause__, struct.error)


def test_dv_cut_header_names_the_format(tmp_path: Path) -> None:
    path = write_dv(tmp_path / "cut.dv", DV_STACK)
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(CorruptFileError, match=r"^cut\.dv: the 1024-byte DeltaVision header"):
        open_image(path)


@pytest.mark.parametrize(("offset", "field"), [(180, "T"), (196, "C")])
def test_dv_zero_times_or_waves_mean_one(tmp_path: Path, offset: int, field: str) -> None:
    path = _patch(write_dv(tmp_path / "zero.dv", DV_STACK, extended=False), (offset, "<h", 0))
    with open_image(path) as image:
        info = image.scenes()[0]
    assert (info.size_t, info.size_c, info.size_z) == ((1, 1, 6) if field == "C" else (1, 2, 3))


def test_dv_single_pixel_single_section(tmp_path: Path) -> None:
    stack = np.full((1, 1, 1, 1, 1), 77, np.uint16)
    path = write_dv(tmp_path / "one.dv", stack, waves=(520,))
    with open_image(path) as image:
        assert image.read_plane(0, 0, 0, 0).tolist() == [[77]]
        md = image.metadata()
    assert md.physical_size.z_um is None  # one section: no Z step
    assert (md.physical_size.x_um, md.physical_size.y_um) == (0.1, 0.1)
    assert "physical_size.z_um" not in md.provenance
    assert md.provenance["physical_size.x_um"] == "DeltaVision header dx (µm)"


def test_dv_limits_count_the_stored_pixel_size(tmp_path: Path) -> None:
    from zstack_analyzer import LimitExceededError
    from zstack_analyzer.readers.dv import DeltaVisionReader

    path = write_dv(tmp_path / "limit.dv", DV_STACK)
    with DeltaVisionReader(path, limits=ReadLimits(max_plane_bytes=16 * 16 * 2)) as image:
        assert image.limits.max_plane_bytes == 512
    with pytest.raises(LimitExceededError) as caught:
        DeltaVisionReader(path, limits=ReadLimits(max_plane_bytes=16 * 16 * 2 - 1))
    assert caught.value.path == path


def test_dv_map_is_read_only(tmp_path: Path) -> None:
    """The sections are mapped read-only: no read path can write to the user's file."""
    path = write_dv(tmp_path / "ro.dv", DV_STACK)
    with open_image(path) as image:
        assert not image._sections.flags.writeable  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("n_ints", "n_floats", "byteorder"),
    [(8, 14, "<"), (8, 32, ">"), (0, 14, "<"), (4, 32, "<"), (10, 20, ">")],
)
def test_dv_extended_header_frames_are_read(
    tmp_path: Path, n_ints: int, n_floats: int, byteorder: str
) -> None:
    """The extended header's exposure, excitation and time stamps, in the file's byte order.

    14 floats a section hold them; the ints before them may be any number.
    Before the fix (mrc's ExtHeader.frame, which unpacks in the machine's
    byte order and takes the floats from the 9th number whatever NumIntegers
    says) a big-endian file gave an excitation of 8.8e-41 nm and no exposure,
    and a file with other than 8 ints a section was refused as corrupt.
    """
    path = _dv_with_extended(
        tmp_path / "ext.dv",
        encoded_stack(2, 2, 2, 8, 8),
        n_ints=n_ints,
        n_floats=n_floats,
        byteorder=byteorder,
    )
    with open_image(path) as image:
        md = image.metadata()
        raw = image.raw_metadata()
    assert len(raw["extended_header"]) == 8
    assert md.vendor_metadata["extended_header_frames"] == 8
    assert [c.exposure_ms for c in md.channels] == pytest.approx([20.0, 40.0])
    assert [c.excitation_nm for c in md.channels] == [400.0, 401.0]
    assert md.time_interval_s == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("n_floats", "short_by"), [(13, 0), (32, 4), (32, 4 * 40 * 8 - 4 * 40 * 2)]
)
def test_dv_extended_header_too_small_is_not_read(
    tmp_path: Path, n_floats: int, short_by: int
) -> None:
    """Fewer than 14 floats, or a block shorter than the sections need: no frames, still opens."""
    stack = encoded_stack(2, 2, 2, 8, 8)
    path = _dv_with_extended(
        tmp_path / "ext.dv", stack, n_ints=8, n_floats=n_floats, short_by=short_by
    )
    with open_image(path) as image:
        md = image.metadata()
        raw = image.raw_metadata()
        np.testing.assert_array_equal(image.read_plane(0, 1, 1, 1), stack[1, 1, 1])
    assert raw["extended_header"] == []
    assert md.vendor_metadata["extended_header_frames"] == 0
    assert [c.exposure_ms for c in md.channels] == [None, None]
    assert md.time_interval_s is None


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_dv_metadata_records(tmp_path: Path, byteorder: str) -> None:
    path = write_dv(tmp_path / "md.dv", DV_STACK, byteorder=byteorder, extended=False)
    _patch(path, (162, byteorder + "h", 10003))  # LensNum: mrc's table names the lens
    with open_image(path) as image:
        md = image.metadata()
        raw = image.raw_metadata()
    assert md.provenance["sizes"] == (
        "DeltaVision header (n_sections, NumTimes, NumWaves, ImgSequence)"
    )
    assert md.vendor_metadata["byte_order"] == ("little" if byteorder == "<" else "big")
    assert [c.emission_nm for c in md.channels] == [525.0, 615.0]
    assert md.provenance["channels[].emission_nm"] == "DeltaVision header wavelengths (nm)"
    assert md.vendor_metadata["image_sequence"] == "ZTW"
    assert "blank" not in raw["header"]
    assert raw["header"]["lens"] == "Olympus 100X/1.35, U Plan Apo, IX70"
    assert md.objective is not None
    assert md.objective.name == "Olympus 100X/1.35, U Plan Apo, IX70"
    assert (md.objective.magnification, md.objective.numerical_aperture) == (100.0, 1.35)
    assert md.objective.immersion is None
    assert md.provenance["objective"] == "DeltaVision header LensNum (mrc's lens table)"
    assert (md.physical_size.x_um, md.physical_size.y_um, md.physical_size.z_um) == (0.1, 0.1, 0.25)


def test_dv_full_metadata_of_a_time_lapse_with_an_extended_header(tmp_path: Path) -> None:
    """Every field the header and extended header give, with the provenance of each."""
    stack = encoded_stack(3, 6, 2, 8, 8)
    waves = (450, 0, 615, 680, 705, 760)  # no wave 2 anywhere; wave 6 only in the frames
    path = write_dv(tmp_path / "lapse.dv", stack, sequence=1, waves=waves, voxel_um=(0.2, 0.3, 0.5))
    with open_image(path) as image:
        md = image.metadata()
        raw = image.raw_metadata()
    assert [c.emission_nm for c in md.channels] == [450.0, None, 615.0, 680.0, 705.0, 760.0]
    assert [c.excitation_nm for c in md.channels] == [488.0 + 100 * c for c in range(6)]
    assert [c.exposure_ms for c in md.channels] == pytest.approx([50.0 * (c + 1) for c in range(6)])
    assert [c.index for c in md.channels] == list(range(6))
    assert md.time_interval_s == pytest.approx(2.5)
    assert (md.physical_size.x_um, md.physical_size.y_um, md.physical_size.z_um) == (0.2, 0.3, 0.5)
    assert md.provenance == {
        "sizes": "DeltaVision header (n_sections, NumTimes, NumWaves, ImgSequence)",
        "physical_size.x_um": "DeltaVision header dx (µm)",
        "physical_size.y_um": "DeltaVision header dy (µm)",
        "physical_size.z_um": "DeltaVision header dz (µm)",
        # the header has 5 wavelengths: the 6th channel's is the extended header's
        "channels[].emission_nm": (
            "DeltaVision header wavelengths (nm), else extended header emWavelen"
        ),
        "channels[].excitation_nm": "DeltaVision extended header exWavelen",
        "channels[].exposure_ms": "DeltaVision extended header expTime (s)",
        "time_interval_s": "DeltaVision extended header timeStampSeconds (mean step)",
    }
    assert md.warnings == []
    assert md.objective is None
    vendor = md.vendor_metadata
    assert vendor["image_sequence"] == "WZT"
    assert vendor["extended_header_frames"] == 36
    assert vendor["header"]["title"] == ["synthetic DeltaVision file"]
    assert vendor["header"]["nc"] == 6
    assert set(raw) == {"header", "extended_header"}
    assert raw["header"]["nt"] == 3
    assert raw["header"]["lens"] is None
    assert len(raw["extended_header"]) == 36
    assert raw["extended_header"][0]["timeStampSeconds"] == 0.0
    assert raw["extended_header"][-1]["timeStampSeconds"] == 5.0


@pytest.mark.parametrize(
    ("header_wave", "frame_wave", "source"),
    [
        (0, 520.0, "DeltaVision header wavelengths (nm), else extended header emWavelen"),
        (520, 0.0, "DeltaVision header wavelengths (nm)"),
        (520, 610.0, "DeltaVision header wavelengths (nm)"),  # the header wins
    ],
)
def test_dv_emission_from_the_header_else_the_frames(
    tmp_path: Path, header_wave: int, frame_wave: float, source: str
) -> None:
    """Channel 0's emission: the header's wavelength, else its first section's emWavelen.

    Before the fix the provenance named the header even when it had no
    wavelength and the value came from the extended header.
    """
    stack = encoded_stack(1, 2, 1, 8, 8)
    path = _dv_with_extended(tmp_path / "em.dv", stack, n_ints=8, n_floats=32)
    data = bytearray(path.read_bytes())
    struct.pack_into("<h", data, 198, header_wave)  # wave1
    # emission (float 11) and exposure (float 8) of each channel's section (c outermost)
    for c, (emission, exposure) in enumerate(((frame_wave, 0.03), (0.0, 0.0))):
        struct.pack_into("<f", data, 1024 + c * 160 + 32 + 11 * 4, emission)
        struct.pack_into("<f", data, 1024 + c * 160 + 32 + 8 * 4, exposure)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        md = image.metadata()
    assert [c.emission_nm for c in md.channels] == [520.0, None]
    assert md.provenance["channels[].emission_nm"] == source
    assert [c.exposure_ms for c in md.channels] == [pytest.approx(30.0), None]
    assert md.time_interval_s is None  # one time point


@pytest.mark.parametrize("stamps", [(0.0, 0.0, 0.0), (4.0, 2.0, 0.0), (0.0, float("nan"), 1.0)])
def test_dv_time_interval_needs_a_finite_positive_mean_step(
    tmp_path: Path, stamps: tuple[float, ...]
) -> None:
    stack = encoded_stack(3, 1, 1, 8, 8)
    path = _dv_with_extended(tmp_path / "t.dv", stack, n_ints=8, n_floats=32)
    data = bytearray(path.read_bytes())
    for t, stamp in enumerate(stamps):
        struct.pack_into("<f", data, 1024 + t * 160 + 32 + 4, stamp)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        md = image.metadata()
    assert md.time_interval_s is None
    assert "time_interval_s" not in md.provenance


def test_dv_time_interval_below_a_second(tmp_path: Path) -> None:
    stack = encoded_stack(3, 1, 1, 8, 8)
    path = _dv_with_extended(tmp_path / "fast.dv", stack, n_ints=8, n_floats=32)
    data = bytearray(path.read_bytes())
    for t in range(3):
        struct.pack_into("<f", data, 1024 + t * 160 + 32 + 4, 0.25 * t)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        assert image.metadata().time_interval_s == 0.25


def test_dv_no_channel_information_gives_no_provenance(tmp_path: Path) -> None:
    path = write_dv(tmp_path / "bare.dv", DV_STACK, waves=(0, 0), extended=False)
    with open_image(path) as image:
        md = image.metadata()
    assert [(c.emission_nm, c.excitation_nm, c.exposure_ms) for c in md.channels] == [
        (None, None, None)
    ] * 2
    assert not any(key.startswith("channels") for key in md.provenance)


@pytest.mark.parametrize(
    ("lens", "expected"),
    [
        (None, None),
        ("", None),
        (
            "  Olympus 40X/1.30, UPLFLN 40XO, U PLAN Fluorite 40X Oil  ",
            ("Olympus 40X/1.30, UPLFLN 40XO, U PLAN Fluorite 40X Oil", 40.0, 1.3, "Oil"),
        ),
        ("Nikon 60x / 1.2 Water", ("Nikon 60x / 1.2 Water", 60.0, 1.2, "Water")),
        ("Zeiss 10X/0.3 air", ("Zeiss 10X/0.3 air", 10.0, 0.3, "Air")),
        ("Olympus 30X/1.05 SIL", ("Olympus 30X/1.05 SIL", 30.0, 1.05, "Silicone")),
        ("Leica 63X/1.3 Glycerol", ("Leica 63X/1.3 Glycerol", 63.0, 1.3, "Glycerol")),
        ("custom lens", ("custom lens", None, None, None)),
    ],
)
def test_dv_objective_from_the_lens_name(
    lens: str | None, expected: tuple[str, float | None, float | None, str | None] | None
) -> None:
    from zstack_analyzer.readers.dv import _objective

    objective = _objective(lens)
    if expected is None:
        assert objective is None
        return
    assert objective is not None
    got = (
        objective.name,
        objective.magnification,
        objective.numerical_aperture,
        objective.immersion,
    )
    assert got == expected


def test_dv_titles_decimals_and_positive_numbers() -> None:
    from zstack_analyzer.readers.dv import _decimal, _positive, _titles

    raw = b"first line".ljust(80, b" ") + bytes(80) + b"  third\x00junk".ljust(80, b"\x00")
    assert _titles(raw) == ["first line", "third"]
    assert _titles(bytearray(b"caf\xe9".ljust(80))) == ["caf\u00e9"]
    assert _titles(b"x" * 85) == ["x" * 80, "xxxxx"]
    assert _titles("not bytes") == []
    assert _titles(None) == []
    assert _decimal(np.float32(0.13262)) == 0.13262
    assert _decimal(None) is not None and np.isnan(_decimal(None))  # float32(None) is NaN
    assert _decimal("not a number") is None
    assert _decimal(object()) is None
    assert _positive(2) == 2.0
    assert _positive("3.5") == 3.5
    for bad in (0, -1, float("inf"), float("nan"), None, "x"):
        assert _positive(bad) is None


def test_dv_negative_float_count_reads_no_frames(tmp_path: Path) -> None:
    """NumFloats -1 is not 65535: even with an extended header long enough for 65535, no frames."""
    stack = encoded_stack(1, 1, 1, 4, 4)
    path = _dv_with_extended(tmp_path / "neg.dv", stack, n_ints=8, n_floats=32)
    data = bytearray(path.read_bytes())
    big = (8 + 0xFFFF) * 4
    pixels = data[1024 + 160 :]
    head = data[:1024]
    struct.pack_into("<i", head, 92, big)
    struct.pack_into("<2h", head, 128, 8, -1)
    path.write_bytes(bytes(head) + bytes(data[1024 : 1024 + 160]).ljust(big, b"\0") + pixels)
    with open_image(path) as image:
        raw = image.raw_metadata()
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 0, 0])
    assert raw["extended_header"] == []


def test_dv_extended_header_read_stays_within_its_block(tmp_path: Path) -> None:
    """Opening reads the extended header's sections, not the pixel data after them."""
    import tracemalloc

    stack = np.zeros((1, 1, 2, 1024, 1024), np.uint16)  # 4 MiB of pixels
    path = _dv_with_extended(tmp_path / "big.dv", stack, n_ints=8, n_floats=32)
    tracemalloc.start()
    try:
        with open_image(path) as image:
            frames = image.raw_metadata()["extended_header"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frames) == 2
    assert peak < 2 * 1024**2
