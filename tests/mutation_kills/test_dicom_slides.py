"""DICOM reader: slide layout, pyramid siblings, metadata and its helpers (mutation kills, seventh round).

References: slides and multi-frame files written with pydicom by
:mod:`tests.synthetic_dicom` (position-encoded pixels), edited with pydicom the way
scanners differ; the DICOM standard's rules the module docstring cites (TILED_FULL
order, Plane Position (Slide) 1-based, Pixel Spacing row then column in mm, DT values
``YYYYMMDDHHMMSS.FFFFFF&ZZXX``, CID 8123 illumination codes).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from tests.synthetic import encoded_stack
from tests.synthetic_dicom import write_dicom_frames, write_dicom_pyramid, write_dicom_wsi
from zstack_analyzer import CorruptFileError, SceneNotFoundError, open_image
from zstack_analyzer.readers import dicom
from zstack_analyzer.readers.dicom import DicomReader

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _stack(c: int = 1, z: int = 1, y: int = 40, x: int = 50) -> np.ndarray:
    """Canonical C,Z,Y,X uint16 (T = 1) with position-encoded values."""
    return encoded_stack(1, c, z, y, x)[0]


def _edit(path: Path, change: Callable[[Dataset], object]) -> Path:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------- helpers
def _ds(**elements: Any) -> Dataset:
    ds = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of invalid DT/TM text; files hold such text
        for key, value in elements.items():
            setattr(ds, key, value)
    return ds


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        (
            {"AcquisitionDateTime": "20240501100000+0200"},
            (datetime(2024, 5, 1, 8, 0, tzinfo=UTC), None, "DICOM AcquisitionDateTime"),
        ),
        (
            {"AcquisitionDateTime": "20240501100000.25-0130"},
            (
                datetime(2024, 5, 1, 11, 30, 0, 250000, tzinfo=UTC),
                None,
                "DICOM AcquisitionDateTime",
            ),
        ),
        (
            {"AcquisitionDateTime": "2024050110"},
            (None, datetime(2024, 5, 1, 10), "DICOM AcquisitionDateTime"),
        ),
        (
            {"AcquisitionDate": "20230102", "AcquisitionTime": "03:04:05.5"},
            (None, datetime(2023, 1, 2, 3, 4, 5, 500000), "DICOM AcquisitionDate/Time"),
        ),
        (
            {"AcquisitionDate": "20230102"},
            (None, datetime(2023, 1, 2), "DICOM AcquisitionDate/Time"),
        ),
        (
            {"ContentDate": "20200102", "ContentTime": "030405", "TimezoneOffsetFromUTC": "-0500"},
            (datetime(2020, 1, 2, 8, 4, 5, tzinfo=UTC), None, "DICOM ContentDate/Time"),
        ),
        (
            {"ContentDate": "20200102", "ContentTime": "0304", "TimezoneOffsetFromUTC": "bad"},
            (None, datetime(2020, 1, 2, 3, 4), "DICOM ContentDate/Time"),
        ),
        (
            # a date that does not exist is skipped for the next candidate
            {"AcquisitionDateTime": "20231345000000", "ContentDate": "20200102"},
            (None, datetime(2020, 1, 2), "DICOM ContentDate/Time"),
        ),
        (
            # text that is no DT at all is skipped too
            {"AcquisitionDateTime": "yesterday", "AcquisitionDate": "20210304"},
            (None, datetime(2021, 3, 4), "DICOM AcquisitionDate/Time"),
        ),
        ({}, (None, None, "")),
    ],
)
def test_acquisition_time_candidates(elements: dict[str, str], expected: tuple[Any, ...]) -> None:
    assert dicom._acquisition_time(_ds(**elements)) == expected


def test_acquisition_zone_offsets_are_hours_and_minutes() -> None:
    moment, _, _ = dicom._acquisition_time(_ds(AcquisitionDateTime="20240501100000+0545"))
    assert moment == datetime(2024, 5, 1, 4, 15, tzinfo=UTC)
    local = datetime(2024, 5, 1, 10).replace(tzinfo=timezone(timedelta(hours=5, minutes=45)))
    assert moment == local


def test_join_text_and_first() -> None:
    assert dicom._join("20200102", "0304") == "202001020304"
    assert dicom._join(" 20200102 ", None) == "20200102"
    assert dicom._join("", "0304") is None
    assert dicom._join(None, "0304") is None
    assert dicom._text("  a b ") == "a b"
    assert dicom._text("   ") is None
    assert dicom._text(None) is None
    assert dicom._text(3) == "3"
    assert dicom._first(["x", "y"]) == "x"
    assert dicom._first(("x",)) == "x"
    assert dicom._first([]) is None
    assert dicom._first(MultiValue(str, ["v1", "v2"])) == "v1"
    assert dicom._first(MultiValue(str, [])) is None
    assert dicom._first("single") == "single"


def test_millimetres_to_micrometres() -> None:
    assert dicom._mm_to_um("0.00025") == pytest.approx(0.25)
    assert dicom._mm_to_um(0.5) == 500.0
    assert dicom._mm_to_um(0) is None
    assert dicom._mm_to_um(-0.5) is None
    assert dicom._mm_to_um(-0.5, allow_negative=True) == -500.0
    assert dicom._mm_to_um("nan") is None
    assert dicom._mm_to_um("inf") is None
    assert dicom._mm_to_um("x") is None
    assert dicom._mm_to_um(None) is None


def _code(value: str | None = None, scheme: str | None = None, meaning: str | None = None) -> Any:
    item = Dataset()
    if value is not None:
        item.CodeValue = value
    if scheme is not None:
        item.CodingSchemeDesignator = scheme
    if meaning is not None:
        item.CodeMeaning = meaning
    return Sequence([item])


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        (_code("111744", "DCM"), {"illumination": "Transmitted", "contrast_method": "Brightfield"}),
        (_code("111743"), {"illumination": "Epifluorescence", "contrast_method": "Fluorescence"}),
        (_code("111741", "DCM"), {"illumination": "Transmitted", "contrast_method": None}),
        (_code("111742", "DCM"), {"illumination": "Other", "contrast_method": None}),
        (
            _code("111746", "DCM"),
            {"illumination": "Oblique", "contrast_method": "ObliqueIllumination"},
        ),
        (_code("111748", "DCM"), {"illumination": "Transmitted", "contrast_method": "DIC"}),
        # another scheme's code: the meaning decides
        (
            _code("111744", "SRT", "Phase contrast illumination"),
            {"illumination": "Transmitted", "contrast_method": "Phase"},
        ),
        (
            _code("X1", "99LOCAL", " Darkfield Illumination "),
            {"illumination": "Transmitted", "contrast_method": "Darkfield"},
        ),
        (_code("X1", "99LOCAL", "laser sheet"), {"illumination": "Other"}),
        (_code("X1", "99LOCAL"), {"illumination": "Other"}),
        (
            _code(meaning="oblique illumination"),
            {"illumination": "Oblique", "contrast_method": "ObliqueIllumination"},
        ),
        (_code(meaning="something"), {"illumination": "Other"}),
        (_code(), {}),
        (Sequence([]), {}),
        (None, {}),
    ],
)
def test_illumination_codes_and_meanings(sequence: Any, expected: dict[str, Any]) -> None:
    assert dicom._illumination(sequence) == expected


def test_code_meaning() -> None:
    assert dicom._code_meaning(_code(meaning=" Brightfield ")) == "Brightfield"
    assert dicom._code_meaning(Sequence([])) is None
    assert dicom._code_meaning(None) is None


def test_mentions_reads_only_the_head(tmp_path: Path) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(b"\0" * 100 + b"1.2.3" + b"\0" * (1 << 16) + b"9.9.9")
    assert dicom._mentions(path, b"1.2.3")
    assert not dicom._mentions(path, b"9.9.9")
    assert not dicom._mentions(tmp_path / "absent.dcm", b"1.2.3")


# ----------------------------------------------------------------------------- layout
def test_tiled_full_frame_order_is_columns_rows_planes_paths(tmp_path: Path) -> None:
    stack = _stack(c=2, z=3, y=20, x=24)
    path = write_dicom_wsi(tmp_path / "s.dcm", stack, tile=(8, 16))
    with open_image(path) as image:
        info = image.scenes()[0]
        assert info.shape == (1, 2, 3, 20, 24)
        assert info.name == "synthetic slide"
        for c in range(2):
            for z in range(3):
                np.testing.assert_array_equal(image.read_plane(0, 0, c, z), stack[c, z])
                np.testing.assert_array_equal(
                    image.read_tile(0, 0, 0, c, z, 2, 1), stack[c, z, 16:, 16:]
                )
        lazy = image.to_dask(0)
        assert lazy.chunks[3:] == ((8, 8, 4), (16, 8))
        np.testing.assert_array_equal(lazy.compute()[0], stack)


def test_tiled_full_frame_count_must_cover_every_tile(tmp_path: Path) -> None:
    stack = _stack(c=2, z=1, y=20, x=24)  # 3 x 2 tiles x 2 paths = 12 frames
    path = write_dicom_wsi(tmp_path / "s.dcm", stack, tile=(8, 16))
    _edit(path, lambda ds: setattr(ds, "NumberOfFrames", 11))
    with pytest.raises(
        CorruptFileError,
        match=r"TILED_FULL needs 12 frames \(2x3 tiles x 1 focal planes x 2 optical paths\), the file has 11",
    ) as caught:
        DicomReader(path)
    assert caught.value.path == path


def test_sparse_tiles_by_position_and_absent_tiles_read_zero(tmp_path: Path) -> None:
    stack = _stack(c=2, z=2, y=32, x=32)
    path = write_dicom_wsi(tmp_path / "sp.dcm", stack, tile=(16, 16), sparse=True)

    def drop_last_tile(ds: Dataset) -> None:
        # keep the frames, but move the last one's position onto the first tile's
        plane = ds.PerFrameFunctionalGroupsSequence[-1].PlanePositionSlideSequence[0]
        plane.ColumnPositionInTotalImagePixelMatrix = 1
        plane.RowPositionInTotalImagePixelMatrix = 1

    _edit(path, drop_last_tile)
    with open_image(path) as image:
        # the last frame (c 1, z 1, tile 1,1) now claims tile 0,0 of that plane
        plane = image.read_plane(0, 0, 1, 1)
        np.testing.assert_array_equal(plane[:16, :16], stack[1, 1, 16:, 16:])
        assert not plane[16:, 16:].any()
        np.testing.assert_array_equal(plane[:16, 16:], stack[1, 1, :16, 16:])
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), stack[0, 1])
        np.testing.assert_array_equal(image.read_plane(0, 0, 1, 0), stack[1, 0])
        md = image.metadata()
        assert "TILED_SPARSE: some tiles are absent; their pixels read as 0" in md.warnings
        absent = image.read_tile(0, 0, 0, 1, 1, 1, 1)  # an absent tile keeps the pixel type
        assert absent.dtype == np.uint16
        assert absent.shape == (16, 16)
        assert not absent.any()


def test_sparse_paths_and_planes_in_first_seen_and_sorted_order(tmp_path: Path) -> None:
    stack = _stack(c=2, z=2, y=16, x=16)
    path = write_dicom_wsi(tmp_path / "sp.dcm", stack, tile=(16, 16), sparse=True)

    def renumber(ds: Dataset) -> None:
        # paths named "b", "a" (first seen first), focal planes at 5.0 and -1.0 (sorted)
        for item, (ident, z) in zip(
            ds.PerFrameFunctionalGroupsSequence,
            [("b", 5.0), ("b", -1.0), ("a", 5.0), ("a", -1.0)],
            strict=True,
        ):
            item.OpticalPathIdentificationSequence[0].OpticalPathIdentifier = ident
            item.PlanePositionSlideSequence[0].ZOffsetInSlideCoordinateSystem = z

    _edit(path, renumber)
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 1])
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), stack[0, 0])
        np.testing.assert_array_equal(image.read_plane(0, 0, 1, 0), stack[1, 1])
        np.testing.assert_array_equal(image.read_plane(0, 0, 1, 1), stack[1, 0])
        assert not any("absent" in w for w in image.metadata().warnings)


def test_sparse_frames_without_paths_or_z_are_one_plane(tmp_path: Path) -> None:
    stack = _stack(c=1, z=1, y=32, x=16)
    path = write_dicom_wsi(tmp_path / "sp.dcm", stack, tile=(16, 16), sparse=True)

    def bare(ds: Dataset) -> None:
        for item in ds.PerFrameFunctionalGroupsSequence:
            del item.OpticalPathIdentificationSequence
            del item.PlanePositionSlideSequence[0].ZOffsetInSlideCoordinateSystem

    _edit(path, bare)
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 0])


def _sparse_edit(change: Callable[[Dataset], object]) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = write_dicom_wsi(
            tmp_path / "sp.dcm", _stack(c=1, z=1, y=32, x=32), tile=(16, 16), sparse=True
        )
        return _edit(path, change)

    return make


def _position(index: int, row: int, col: int) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        plane = ds.PerFrameFunctionalGroupsSequence[index].PlanePositionSlideSequence[0]
        plane.RowPositionInTotalImagePixelMatrix = row
        plane.ColumnPositionInTotalImagePixelMatrix = col

    return change


def _z(index: int, z: float) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds.PerFrameFunctionalGroupsSequence[index].PlanePositionSlideSequence[
            0
        ].ZOffsetInSlideCoordinateSystem = z

    return change


def _path_id(index: int, ident: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds.PerFrameFunctionalGroupsSequence[index].OpticalPathIdentificationSequence[
            0
        ].OpticalPathIdentifier = ident

    return change


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda ds: ds.__delattr__("PerFrameFunctionalGroupsSequence"),
            "nor a position for each of its 4 frames",
        ),
        (
            lambda ds: ds.PerFrameFunctionalGroupsSequence.pop(),
            "tiled DICOM without TILED_FULL nor a position for each of its 4 frames",
        ),
        (_position(1, 1, 9), r"frame 1 at \(1, 9\) is off the tile grid"),
        (_position(2, 8, 1), r"frame 2 at \(8, 1\) is off the tile grid"),
        (_position(3, -15, 1), r"frame 3 at \(-15, 1\) is off the tile grid"),
        (_position(3, 1, -15), r"frame 3 at \(1, -15\) is off the tile grid"),
        (_position(0, 33, 1), "frame 0 lies outside the total pixel matrix"),
        (_position(0, 1, 33), "frame 0 lies outside the total pixel matrix"),
        (_z(1, 2.0), "frames lie in 2 focal planes and 1 optical paths, more than declared"),
        (_path_id(2, "9"), "frames lie in 1 focal planes and 2 optical paths, more than declared"),
    ],
)
def test_sparse_positions_that_lie(
    tmp_path: Path, change: Callable[[Dataset], object], words: str
) -> None:
    path = _sparse_edit(change)(tmp_path)
    with pytest.raises(CorruptFileError, match=words) as caught:
        DicomReader(path)
    assert caught.value.path == path


def test_sparse_last_tile_at_the_matrix_edge_is_in(tmp_path: Path) -> None:
    # frame 0 moved onto tile (1, 1), the last one of the matrix, which frame 3 (later) also claims
    path = _sparse_edit(_position(0, 17, 17))(tmp_path)
    with open_image(path) as image:
        plane = image.read_plane(0, 0, 0, 0)
        stack = _stack(c=1, z=1, y=32, x=32)
        assert not plane[:16, :16].any()
        np.testing.assert_array_equal(plane[16:, 16:], stack[0, 0, 16:, 16:])
        np.testing.assert_array_equal(plane[:16, 16:], stack[0, 0, :16, 16:])


def test_multiframe_increments_by_time_are_t(tmp_path: Path) -> None:
    frames = encoded_stack(1, 1, 3, 8, 10)[0, 0]
    path = write_dicom_frames(tmp_path / "t.dcm", frames)
    _edit(path, lambda ds: setattr(ds, "FrameIncrementPointer", 0x00181063))
    with open_image(path) as image:
        assert image.scenes()[0].shape == (3, 1, 1, 8, 10)
        for t in range(3):
            np.testing.assert_array_equal(image.read_plane(0, t, 0, 0), frames[t])
    vector = write_dicom_frames(tmp_path / "v.dcm", frames)
    _edit(vector, lambda ds: setattr(ds, "FrameIncrementPointer", [0x00181065, 0x00200013]))
    with open_image(vector) as image:
        assert image.scenes()[0].shape == (3, 1, 1, 8, 10)
    other = write_dicom_frames(tmp_path / "o.dcm", frames)
    _edit(other, lambda ds: setattr(ds, "FrameIncrementPointer", 0x00200013))
    with open_image(other) as image:
        assert image.scenes()[0].shape == (1, 1, 3, 8, 10)
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 2), frames[2])


def test_one_frame_with_a_time_pointer_is_one_plane(tmp_path: Path) -> None:
    frames = encoded_stack(1, 1, 1, 8, 10)[0, 0]
    path = write_dicom_frames(tmp_path / "t.dcm", frames)
    _edit(path, lambda ds: setattr(ds, "FrameIncrementPointer", 0x00181063))
    with open_image(path) as image:
        assert image.scenes()[0].shape == (1, 1, 1, 8, 10)
        assert image.level_count() == 1
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), frames[0])


def test_level_and_tile_indexes_are_checked(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "s.dcm", _stack(y=20, x=24), tile=(8, 16))
    with open_image(path) as image:
        with pytest.raises(SceneNotFoundError, match="pyramid level 1 does not exist; it has 1"):
            image.read_tile(0, 1, 0, 0, 0, 0, 0)
        with pytest.raises(SceneNotFoundError, match="pyramid level -1 does not exist"):
            image.to_dask(0, -1)
        with pytest.raises(SceneNotFoundError):
            image.level_count(1)
        image.close()
        with pytest.raises(ValueError, match="closed"):
            image.read_tile(0, 0, 0, 0, 0, 0, 0)


# ----------------------------------------------------------------------------- pyramid
def test_pyramid_from_a_lower_level_names_the_full_resolution(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 64, 48)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path, plane, levels=3, tile=(16, 16))
    with open_image(paths[1]) as image:
        assert image.level_count() == 3
        assert image.scenes()[0].shape == (1, 1, 1, 64, 48)
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), plane)
        np.testing.assert_array_equal(np.asarray(image.to_dask(0, 1)[0, 0, 0]), plane[::2, ::2])
        md = image.metadata()
        assert (
            "opened level1.dcm (a 24x32 level); the slide's full resolution is level0.dcm (48x64)"
            in md.warnings
        )
        assert md.vendor_metadata["level_files"] == ["level0.dcm", "level1.dcm", "level2.dcm"]
        assert md.vendor_metadata["associated_images"] == [
            {"file": "label.dcm", "type": "LABEL", "size_y": 16, "size_x": 16}
        ]
    with open_image(paths[0]) as image:
        assert not any(w.startswith("opened") for w in image.metadata().warnings)


def test_siblings_of_other_series_shapes_or_types_are_not_levels(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 64, 48)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path, plane, levels=2, tile=(16, 16))
    series = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    # same series, but two optical paths: not a level of this one-path slide
    write_dicom_wsi(
        tmp_path / "zz_paths.dcm", _stack(c=2, y=16, x=12), tile=(16, 16), series_uid=series
    )
    # same series, same size as level 1: a duplicate, kept once
    write_dicom_wsi(
        tmp_path / "level1b.dcm",
        plane[np.newaxis, np.newaxis, ::2, ::2],
        tile=(16, 16),
        series_uid=series,
    )
    # same series, 8-bit: another pixel type, not a level
    write_dicom_wsi(
        tmp_path / "zz_bytes.dcm",
        plane[np.newaxis, np.newaxis, ::4, ::4].astype(np.uint8),
        tile=(16, 16),
        series_uid=series,
    )
    # another series that names this one in its description: read, then refused
    other = write_dicom_wsi(
        tmp_path / "zz_other.dcm", plane[np.newaxis, np.newaxis, ::4, ::4], tile=(16, 16)
    )
    _edit(other, lambda ds: setattr(ds, "SeriesDescription", series))
    # a file of another series sorted before every level: passed over, the search goes on
    write_dicom_wsi(tmp_path / "aa_unrelated.dcm", _stack(y=16, x=16), tile=(16, 16))
    # a non-DICOM file that names the series, and a thumbnail with no matrix
    (tmp_path / "zz_junk.dcm").write_bytes(series.encode() + b"\0" * 200)
    thumb = write_dicom_frames(tmp_path / "zz_thumb.dcm", np.zeros((1, 6, 5), np.uint16))

    def as_thumbnail(ds: Dataset) -> None:
        ds.SeriesInstanceUID = series
        ds.ImageType = ["DERIVED", "PRIMARY", "THUMBNAIL"]

    _edit(thumb, as_thumbnail)
    short = write_dicom_frames(tmp_path / "zz_short.dcm", np.zeros((1, 6, 5), np.uint16))

    def short_type(ds: Dataset) -> None:
        ds.SeriesInstanceUID = series
        ds.ImageType = ["DERIVED", "PRIMARY"]

    _edit(short, short_type)
    with open_image(paths[0]) as image:
        assert image.level_count() == 2
        md = image.metadata()
        assert md.pyramid_levels == [(64, 48), (32, 24)]
        assert md.vendor_metadata["level_files"] == ["level0.dcm", "level1.dcm"]
        assert md.vendor_metadata["associated_images"] == [
            {"file": "label.dcm", "type": "LABEL", "size_y": 16, "size_x": 16},
            {"file": "zz_short.dcm", "type": None, "size_y": 6, "size_x": 5},
            {"file": "zz_thumb.dcm", "type": "THUMBNAIL", "size_y": 6, "size_x": 5},
        ]


def test_a_broken_sibling_level_is_skipped_with_a_warning(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 64, 48)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path, plane, levels=3, tile=(16, 16))
    _edit(paths[1], lambda ds: setattr(ds, "NumberOfFrames", 2))
    with open_image(paths[0]) as image:
        assert image.level_count() == 2
        md = image.metadata()
        assert md.pyramid_levels == [(64, 48), (16, 12)]
        assert any(
            w.startswith("pyramid level level1.dcm skipped: level1.dcm: TILED_FULL needs 4 frames")
            for w in md.warnings
        )


def test_no_pyramid_search_without_a_series_or_volume_type(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 64, 48)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path, plane, levels=2, tile=(16, 16))
    _edit(paths[0], lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "OVERVIEW"]))
    with open_image(paths[0]) as image:
        assert image.level_count() == 1
        assert image.metadata().vendor_metadata["associated_images"] == []


def test_too_many_siblings_stop_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plane = encoded_stack(1, 1, 1, 64, 48)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path, plane, levels=2, tile=(16, 16))  # + label: 2 siblings
    (tmp_path / "notes.txt").write_text("not DICOM")  # other suffixes are not counted
    monkeypatch.setattr(dicom, "MAX_SIBLINGS", 2)
    with open_image(paths[0]) as image:
        assert image.level_count() == 2
    monkeypatch.setattr(dicom, "MAX_SIBLINGS", 1)
    with open_image(paths[0]) as image:
        assert image.level_count() == 1
        assert (
            "more than 1 DICOM files beside this one: other pyramid levels not searched"
            in image.metadata().warnings
        )


# ----------------------------------------------------------------------------- metadata
def test_metadata_of_a_plain_frame_file(tmp_path: Path) -> None:
    frames = encoded_stack(1, 1, 2, 8, 10)[0, 0]
    path = write_dicom_frames(tmp_path / "f.dcm", frames, modality="MR", spacing_between=-0.5)
    with open_image(path) as image:
        md = image.metadata()
        assert md.physical_size.y_um == pytest.approx(1.0)
        assert md.physical_size.x_um == pytest.approx(2.0)
        assert md.physical_size.z_um == pytest.approx(-500.0)
        assert md.provenance["physical_size.x_um"] == "DICOM PixelSpacing/PixelSpacing[1] (mm)"
        assert md.provenance["physical_size.y_um"] == "DICOM PixelSpacing/PixelSpacing[0] (mm)"
        assert md.provenance["physical_size.z_um"] == "DICOM SpacingBetweenSlices (mm)"
        assert md.provenance["sizes"] == "DICOM header"
        assert "DICOM modality MR is not microscopy: read as a plain image" in md.warnings
        assert md.acquired_at_local == datetime(2020, 1, 2, 3, 4, 5)
        assert md.provenance["acquired_at_local"] == "DICOM ContentDate/Time"
        assert (
            "acquisition time zone unknown: acquired_at_local holds the time as written"
            in md.warnings
        )
        assert md.microscope is None
        assert md.objective is None
        assert md.pyramid_levels == []
        assert [c.index for c in md.channels] == [0]
        vendor = md.vendor_metadata
        assert vendor["modality"] == "MR"
        assert vendor["frames"] == 2
        assert vendor["tile"] == [8, 10]
        assert vendor["photometric"] == "MONOCHROME2"
        assert vendor["dimension_organization"] is None
        assert vendor["sop_class"] == "Multi-frame Grayscale Word Secondary Capture Image Storage"
        assert vendor["level_files"] == ["f.dcm"]


def test_metadata_of_a_slide(tmp_path: Path) -> None:
    path = write_dicom_wsi(
        tmp_path / "s.dcm",
        _stack(c=2, y=16, x=16),
        tile=(16, 16),
        optical_paths=["DAPI", " "],
        pixel_spacing_mm=0.0005,
    )

    def extras(ds: Dataset) -> None:
        ds.OpticalPathSequence[0].IlluminationTypeCodeSequence = _code("111744", "DCM")
        ds.OpticalPathSequence[1].IlluminationWaveLength = 0
        ds.SoftwareVersions = ["v2", "v3"]

    _edit(path, extras)
    with open_image(path) as image:
        md = image.metadata()
        assert md.physical_size.x_um == pytest.approx(0.5)
        assert md.provenance["physical_size.x_um"] == (
            "DICOM SharedFunctionalGroups PixelMeasures/PixelSpacing[1] (mm)"
        )
        assert md.physical_size.z_um is None
        assert [c.name for c in md.channels] == ["DAPI", None]
        assert [c.excitation_nm for c in md.channels] == [488.0, None]
        assert md.channels[0].illumination == "Transmitted"
        assert md.channels[0].contrast_method == "Brightfield"
        assert md.channels[1].illumination is None
        assert md.objective.magnification == 20.0
        assert md.objective.numerical_aperture == 0.75
        assert md.microscope.manufacturer == "Synthetic Scanner Co"
        assert md.microscope.model == "S-1"
        assert md.microscope.serial_number == "42"
        assert md.microscope.software == "v2"
        assert md.acquired_at == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
        assert md.provenance["acquired_at"] == "DICOM AcquisitionDateTime"
        assert not any("time zone" in w or "not microscopy" in w for w in md.warnings)
        assert md.vendor_metadata["sop_class"] == "VL Whole Slide Microscopy Image Storage"
        assert md.vendor_metadata["image_type"] == ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
        assert md.vendor_metadata["dimension_organization"] == "TILED_FULL"
        # copies per call
        md.channels[0].name = "edited"
        assert image.metadata().channels[0].name == "DAPI"


def test_spacing_in_the_shared_measures_and_z_from_the_header(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "s.dcm", _stack(y=16, x=16), tile=(16, 16))

    def spacing(ds: Dataset) -> None:
        ds.SpacingBetweenSlices = 0.002
        ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [0.001, 0.003]

    _edit(path, spacing)
    with open_image(path) as image:
        md = image.metadata()
        assert (md.physical_size.y_um, md.physical_size.x_um) == pytest.approx((1.0, 3.0))
        assert md.physical_size.z_um == pytest.approx(2.0)
    inner = write_dicom_wsi(tmp_path / "i.dcm", _stack(y=16, x=16), tile=(16, 16))

    def inner_z(ds: Dataset) -> None:
        ds.SpacingBetweenSlices = 0.002
        ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices = 0.004

    _edit(inner, inner_z)
    with open_image(inner) as image:
        assert image.metadata().physical_size.z_um == pytest.approx(4.0)


def test_spacing_that_is_not_two_values_or_zero(tmp_path: Path) -> None:
    path = write_dicom_frames(tmp_path / "f.dcm", np.zeros((1, 4, 4), np.uint16))
    _edit(path, lambda ds: setattr(ds, "PixelSpacing", [0.001, 0.002, 0.003]))
    with open_image(path) as image:
        md = image.metadata()
        assert (md.physical_size.x_um, md.physical_size.y_um) == (None, None)
    zero = write_dicom_frames(tmp_path / "z.dcm", np.zeros((1, 4, 4), np.uint16))
    _edit(zero, lambda ds: setattr(ds, "PixelSpacing", [0, 0.002]))
    with open_image(zero) as image:
        md = image.metadata()
        assert md.physical_size.y_um is None
        assert md.physical_size.x_um == pytest.approx(2.0)
        assert "physical_size.y_um" not in md.provenance
        assert "physical_size.x_um" in md.provenance
    none = write_dicom_frames(tmp_path / "n.dcm", np.zeros((1, 4, 4), np.uint16))

    def no_spacing(ds: Dataset) -> None:
        del ds.PixelSpacing
        ds.SpacingBetweenSlices = 0

    _edit(none, no_spacing)
    with open_image(none) as image:
        md = image.metadata()
        assert md.physical_size.model_dump() == {"x_um": None, "y_um": None, "z_um": None}


def test_channels_without_a_path_per_channel_and_objective_from_any_path(tmp_path: Path) -> None:
    path = write_dicom_wsi(
        tmp_path / "s.dcm", _stack(c=2, y=16, x=16), tile=(16, 16), objective_power=None
    )

    def one_path(ds: Dataset) -> None:
        ds.OpticalPathSequence = Sequence([ds.OpticalPathSequence[0]])

    _edit(path, one_path)
    with open_image(path) as image:
        md = image.metadata()
        assert [(c.index, c.name, c.excitation_nm) for c in md.channels] == [
            (0, None, None),
            (1, None, None),
        ]
        assert md.objective is None
    second = write_dicom_wsi(
        tmp_path / "t.dcm", _stack(c=2, y=16, x=16), tile=(16, 16), objective_power=None
    )

    def power_on_second(ds: Dataset) -> None:
        ds.OpticalPathSequence[1].ObjectiveLensNumericalAperture = 1.4

    _edit(second, power_on_second)
    with open_image(second) as image:
        objective = image.metadata().objective
        assert objective.magnification is None
        assert objective.numerical_aperture == 1.4


def test_photometric_warnings_and_device_without_fields(tmp_path: Path) -> None:
    path = write_dicom_frames(tmp_path / "m1.dcm", np.zeros((1, 4, 4), np.uint16), modality="GM")

    def mono1(ds: Dataset) -> None:
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.Manufacturer = "  "

    _edit(path, mono1)
    with open_image(path) as image:
        md = image.metadata()
        assert "MONOCHROME1: values are as stored (0 is white)" in md.warnings
        assert not any("not microscopy" in w for w in md.warnings)
        assert md.microscope is None
    palette = write_dicom_frames(tmp_path / "p.dcm", np.zeros((1, 4, 4), np.uint8), modality="")

    def as_palette(ds: Dataset) -> None:
        ds.PhotometricInterpretation = "PALETTE COLOR"
        ds.SOPClassUID = dicom._WSI_SOP_CLASS
        ds.DeviceSerialNumber = "7"

    _edit(palette, as_palette)
    with open_image(palette) as image:
        md = image.metadata()
        assert "palette image: values are the stored indices (palette not applied)" in md.warnings
        assert not any("not microscopy" in w for w in md.warnings)  # the WSI class is enough
        assert md.microscope.serial_number == "7"
        assert md.vendor_metadata["modality"] is None
    unknown = write_dicom_frames(tmp_path / "u.dcm", np.zeros((1, 4, 4), np.uint16), modality="")
    with open_image(unknown) as image:
        assert (
            "DICOM modality unknown is not microscopy: read as a plain image"
            in image.metadata().warnings
        )


def test_raw_metadata_is_the_json_header_without_pixels(tmp_path: Path) -> None:
    path = write_dicom_frames(tmp_path / "f.dcm", np.zeros((1, 4, 4), np.uint16))
    with open_image(path) as image:
        raw = image.raw_metadata()
        assert raw["00080060"] == {"vr": "CS", "Value": ["OT"]}
        assert "7FE00010" not in raw or raw["7FE00010"].get("BulkDataURI", "") == ""


# ----------------------------------------------------------------------------- open
def test_sniff_wants_dicm_after_the_preamble(tmp_path: Path) -> None:
    head = b"\0" * 128 + b"DICM"
    assert DicomReader.sniff(head, tmp_path / "x")
    assert not DicomReader.sniff(head[:131], tmp_path / "x")
    assert not DicomReader.sniff(b"\0" * 128 + b"DICX" + b"\0" * 100, tmp_path / "x")


def test_declared_sizes_are_checked_with_the_callers_limits(tmp_path: Path) -> None:
    from zstack_analyzer.errors import LimitExceededError
    from zstack_analyzer.limits import ReadLimits

    frames = encoded_stack(1, 1, 3, 8, 10)[0, 0]  # three uint16 frames of 8 x 10
    path = write_dicom_frames(tmp_path / "f.dcm", frames)
    exact = ReadLimits(max_plane_bytes=8 * 10 * 2, max_planes=3)
    with DicomReader(path, limits=exact) as image:
        assert image.limits is exact
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 2), frames[2])
    with pytest.raises(LimitExceededError) as caught:
        DicomReader(path, limits=ReadLimits(max_plane_bytes=8 * 10 * 2 - 1))
    assert caught.value.path == path
    with pytest.raises(LimitExceededError):
        DicomReader(path, limits=ReadLimits(max_planes=2))


def test_a_structure_pydicom_cannot_follow_is_corrupt_with_the_cause(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "sp.dcm", _stack(y=16, x=32), tile=(16, 16), sparse=True)
    _edit(
        path,
        lambda ds: ds.PerFrameFunctionalGroupsSequence[1].__delattr__("PlanePositionSlideSequence"),
    )
    with pytest.raises(CorruptFileError) as caught:
        DicomReader(path)
    assert str(caught.value).startswith("sp.dcm: invalid DICOM structure: ")
    assert caught.value.path == path
    assert caught.value.detail is not None
    assert caught.value.detail.startswith("AttributeError(")


def test_a_plain_file_with_one_matrix_element_is_plain_frames(tmp_path: Path) -> None:
    frames = encoded_stack(1, 1, 2, 8, 10)[0, 0]
    path = write_dicom_frames(tmp_path / "f.dcm", frames)

    def half_matrix(ds: Dataset) -> None:
        ds.TotalPixelMatrixRows = 8
        ds.SeriesDescription = "  plain series "

    _edit(path, half_matrix)
    with open_image(path) as image:
        info = image.scenes()[0]
        assert info.shape == (1, 1, 2, 8, 10)
        assert info.name == "plain series"
        lazy = image.to_dask(0)
        assert lazy.chunks == ((1,), (1,), (1, 1), (8,), (10,))
        np.testing.assert_array_equal(lazy.compute()[0, 0], frames)


def test_two_frames_with_a_time_pointer_are_two_time_points(tmp_path: Path) -> None:
    frames = encoded_stack(1, 1, 2, 8, 10)[0, 0]
    path = write_dicom_frames(tmp_path / "t.dcm", frames)
    _edit(path, lambda ds: setattr(ds, "FrameIncrementPointer", 0x00181065))
    with open_image(path) as image:
        assert image.scenes()[0].shape == (2, 1, 1, 8, 10)
        np.testing.assert_array_equal(image.read_plane(0, 1, 0, 0), frames[1])


@pytest.mark.parametrize("value", [None, 0])
def test_absent_or_zero_paths_and_planes_are_one(tmp_path: Path, value: int | None) -> None:
    stack = _stack(y=16, x=32)
    path = write_dicom_wsi(tmp_path / "s.dcm", stack, tile=(16, 16))

    def sizes(ds: Dataset) -> None:
        for key in ("NumberOfOpticalPaths", "TotalPixelMatrixFocalPlanes"):
            if value is None:
                delattr(ds, key)
            else:
                setattr(ds, key, value)

    _edit(path, sizes)
    with open_image(path) as image:
        assert image.scenes()[0].shape == (1, 1, 1, 16, 32)
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 0])


def test_no_series_uid_no_pyramid(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 64, 48)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path, plane, levels=2, tile=(16, 16))
    for path in (*paths, tmp_path / "label.dcm"):
        _edit(path, lambda ds: ds.__delattr__("SeriesInstanceUID"))
    with open_image(paths[0]) as image:
        assert image.level_count() == 1
        assert image.metadata().vendor_metadata["associated_images"] == []


def test_a_slide_at_the_limits_opens(tmp_path: Path) -> None:
    from zstack_analyzer.errors import LimitExceededError
    from zstack_analyzer.limits import ReadLimits

    stack = _stack(c=2, z=1, y=16, x=32)  # two planes of 16 x 32 uint16, one tile each
    path = write_dicom_wsi(tmp_path / "s.dcm", stack, tile=(16, 32))
    exact = ReadLimits(max_plane_bytes=16 * 32 * 2, max_planes=2)
    with DicomReader(path, limits=exact) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 1, 0), stack[1, 0])
    with pytest.raises(LimitExceededError):
        DicomReader(path, limits=ReadLimits(max_plane_bytes=16 * 32 * 2 - 1))
    with pytest.raises(LimitExceededError):
        DicomReader(path, limits=ReadLimits(max_planes=1))


def test_to_dask_defaults_to_scene_0_level_0_and_grey_has_no_sample_axis(tmp_path: Path) -> None:
    """A grey slide's lazy array is T,C,Z,Y,X (no trailing S axis), read without arguments.

    The limits are exact for uint16 planes: the lazy array's size check uses the pixel type.
    """
    from zstack_analyzer.limits import ReadLimits

    stack = _stack(y=20, x=24)
    path = write_dicom_wsi(tmp_path / "s.dcm", stack, tile=(8, 16))
    reader = DicomReader(path, limits=ReadLimits(max_plane_bytes=20 * 24 * 2))
    try:
        array = reader.to_dask()
        assert array.shape == (1, 1, 1, 20, 24)
        assert array.chunks[3:] == ((8, 8, 4), (16, 8))
        np.testing.assert_array_equal(array.compute()[0], stack)
        assert reader.read_plane(0, 0, 0, 0).dtype == np.uint16  # assembled from 6 tiles
    finally:
        reader.close()


def test_an_rgb_planes_rows_are_not_counted_as_planes(tmp_path: Path) -> None:
    """Reading a whole RGB plane is one plane of Y x X x S bytes, whatever ``max_planes``.

    The old check passed (1, Y, X, S), whose last two axes (X, S) were taken as the plane,
    so the plane's Y rows counted as planes: a 48-row plane was refused under 47 planes.
    """
    from zstack_analyzer.errors import LimitExceededError
    from zstack_analyzer.limits import ReadLimits

    rgb = np.zeros((1, 1, 48, 64, 3), "uint8")
    rgb[0, 0, :, :, 0] = np.arange(64, dtype=np.uint8)
    path = write_dicom_wsi(tmp_path / "rgb.dcm", rgb, tile=(16, 16))
    with DicomReader(path, limits=ReadLimits(max_plane_bytes=48 * 64 * 3, max_planes=47)) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), rgb[0, 0])
    with pytest.raises(LimitExceededError, match=r"one plane of \(48, 64, 3\) uint8"):
        DicomReader(path, limits=ReadLimits(max_plane_bytes=48 * 64 * 3 - 1))


def test_a_header_the_metadata_cannot_follow_is_corrupt_with_the_cause(tmp_path: Path) -> None:
    """An empty Pixel Measures sequence (IndexError) is the file's fault, named and kept."""
    path = write_dicom_wsi(tmp_path / "s.dcm", _stack(y=20, x=24), tile=(8, 16))

    def empty_measures(ds: Dataset) -> None:
        shared = Dataset()
        shared.PixelMeasuresSequence = Sequence([])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])

    _edit(path, empty_measures)
    with DicomReader(path) as image, pytest.raises(CorruptFileError) as caught:
        image.metadata()
    assert str(caught.value).startswith("s.dcm: unreadable DICOM metadata: ")
    assert caught.value.path == path
    assert caught.value.detail is not None
    assert caught.value.detail.startswith("IndexError(")


def test_vendor_metadata_without_modality_or_sop_class(tmp_path: Path) -> None:
    """No Modality and no SOP Class: 'unknown' in the warning, both None, syntax still named."""
    frames = encoded_stack(1, 1, 1, 8, 10)[0, 0]
    path = write_dicom_frames(tmp_path / "f.dcm", frames)

    def strip(ds: Dataset) -> None:
        del ds.Modality
        del ds.SOPClassUID

    _edit(path, strip)
    with DicomReader(path) as image:
        md = image.metadata()
    assert "DICOM modality unknown is not microscopy: read as a plain image" in md.warnings
    assert md.vendor_metadata["modality"] is None
    assert md.vendor_metadata["sop_class"] is None
    assert md.vendor_metadata["transfer_syntax"] == str(
        pydicom.dcmread(path).file_meta.TransferSyntaxUID
    )


def test_a_microscopy_modality_is_enough_without_the_slide_sop_class(tmp_path: Path) -> None:
    frames = encoded_stack(1, 1, 1, 8, 10)[0, 0]
    path = write_dicom_frames(tmp_path / "f.dcm", frames, modality="SM")
    with DicomReader(path) as image:
        md = image.metadata()
    assert not [w for w in md.warnings if "not microscopy" in w]
    assert md.vendor_metadata["modality"] == "SM"
