"""Imaris ``.ims`` reader: layout checks, regions, levels and metadata (mutation kills, seventh round).

References: files written with h5py by :func:`tests.synthetic_ims.write_ims` from the Imaris
5.5 layout (values that name their own (t, c, z, y, x)), then edited with h5py the way a
damaged or unusual file differs; and the helpers' documented readings of Imaris attributes
(arrays of single bytes holding text, colours "r g b" in 0..1, "YYYY-MM-DD HH:MM:SS.fff").
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.synthetic_ims import chars, ims_pixels, write_ims
from zstack_analyzer import CorruptFileError, SceneNotFoundError, open_image
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers import ims
from zstack_analyzer.readers.ims import HDF5_MAGIC, ImarisReader

if TYPE_CHECKING:
    from pathlib import Path

    import h5py

SHAPE = (6, 40, 52)


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three time points, two channels, three levels (Z halved: 6, 3, 1 planes)."""
    folder = tmp_path_factory.mktemp("ims")
    return write_ims(folder / "cells.ims", shape=SHAPE, times=3, channels=2, levels=3)


def _edit(path: Path, change: Callable[[h5py.File], object]) -> Path:
    import h5py

    with h5py.File(path, "a") as f:
        change(f)
    return path


if TYPE_CHECKING:
    from collections.abc import Callable


# ----------------------------------------------------------------------------- sniff
def test_sniff_wants_hdf5_and_an_ims_name_or_imaris_groups(tmp_path: Path) -> None:
    head = HDF5_MAGIC + b"\0" * 100
    assert ImarisReader.sniff(head, tmp_path / "a.IMS")
    assert not ImarisReader.sniff(head, tmp_path / "a.h5")
    assert ImarisReader.sniff(head + b"ImarisDataSet", tmp_path / "a.h5")
    assert not ImarisReader.sniff(b"\0" + head[1:] + b"ImarisDataSet", tmp_path / "a.ims")


# ----------------------------------------------------------------------------- reads
def test_every_plane_of_every_level_is_the_written_one(cells: Path) -> None:
    with open_image(cells) as image:
        assert image.level_count() == 3
        for t in range(3):
            for c in range(2):
                full = ims_pixels(t, c, SHAPE, "uint16")
                for z in (0, 3, 5):
                    np.testing.assert_array_equal(image.read_plane(0, t, c, z), full[z])
                # level 1 stores 3 planes (every 2nd), level 2 one plane (the first)
                lazy1 = image.to_dask(0, 1)
                assert lazy1.shape == (3, 2, 6, 20, 26)
                np.testing.assert_array_equal(np.asarray(lazy1[t, c, 5]), full[4, ::2, ::2])
                np.testing.assert_array_equal(np.asarray(lazy1[t, c, 1]), full[0, ::2, ::2])
                lazy2 = image.to_dask(0, 2)
                np.testing.assert_array_equal(np.asarray(lazy2[t, c, 5]), full[0, ::4, ::4])


def test_level_out_of_range_is_a_scene_error(cells: Path) -> None:
    with open_image(cells) as image:
        with pytest.raises(SceneNotFoundError, match="pyramid level 3 does not exist; it has 3"):
            image.to_dask(0, 3)
        with pytest.raises(SceneNotFoundError, match="pyramid level -1"):
            image.region_grid(0, -1)
        with pytest.raises(SceneNotFoundError):
            image.level_count(1)
        with pytest.raises(SceneNotFoundError):
            image.read_region(0, 0, 0, 0, (0, 1), (0, 1), level=3)


@pytest.mark.parametrize(
    ("rows", "cols"),
    [((-5, 12), (3, 70)), ((30, 99), (-1, 4)), ((10, 5), (0, 52)), ((0, 40), (60, 70))],
)
def test_regions_are_clipped_to_the_plane(
    cells: Path, rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    plane = ims_pixels(2, 1, SHAPE, "uint16")[4]
    expected = plane[max(0, rows[0]) : max(0, rows[1]), max(0, cols[0]) : max(0, cols[1])]
    with open_image(cells) as image:
        region = image.read_region(0, 2, 1, 4, rows, cols)
        assert region.shape == expected.shape
        np.testing.assert_array_equal(region, expected)
        assert region.flags.c_contiguous
        low = image.read_region(0, 2, 1, 4, (-3, 7), (15, 99), level=2)
        np.testing.assert_array_equal(low, ims_pixels(2, 1, SHAPE, "uint16")[0, ::4, ::4][0:7, 15:])


def test_region_grid_is_the_chunk_clipped_to_the_level(tmp_path: Path) -> None:
    path = write_ims(
        tmp_path / "g.ims", shape=(4, 40, 52), times=1, channels=1, levels=3, chunks=(2, 8, 32)
    )
    with open_image(path) as image:
        assert image.region_grid(0, 0) == (8, 32)
        assert image.region_grid(0, 1) == (8, 26)  # level 1 is 20 x 26, its chunk 8 x 26
        assert image.region_grid(0, 2) == (8, 13)
    contiguous = write_ims(tmp_path / "c.ims", shape=(2, 8, 12), times=1, channels=1, levels=1)

    def unchunked(f: h5py.File) -> None:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        data = group["Data"][...]
        del group["Data"]
        group.create_dataset("Data", data=data)  # contiguous: no chunks

    _edit(contiguous, unchunked)
    with open_image(contiguous) as image:
        assert image.region_grid(0) == (8, 12)


def test_a_missing_channel_dataset_reads_as_zeros(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "gap.ims", shape=(2, 8, 12), times=3, channels=2, levels=1)
    _edit(path, lambda f: f.__delitem__("DataSet/ResolutionLevel 0/TimePoint 1/Channel 0/Data"))
    with open_image(path) as image:
        zeros = image.read_plane(0, 1, 0, 1)
        assert zeros.shape == (8, 12)
        assert zeros.dtype == np.uint16
        assert not zeros.any()
        assert image.read_region(0, 1, 0, 0, (2, 5), (-1, 30)).shape == (3, 12)
        np.testing.assert_array_equal(
            image.read_plane(0, 1, 1, 1), ims_pixels(1, 1, (2, 8, 12), "uint16")[1]
        )


def test_missing_last_plane_and_level_datasets_read_as_zeros(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "m.ims", shape=(2, 16, 24), times=2, channels=2, levels=2)

    def drop(f: h5py.File) -> None:
        del f["DataSet/ResolutionLevel 0/TimePoint 1/Channel 1/Data"]
        del f["DataSet/ResolutionLevel 1/TimePoint 0/Channel 0/Data"]

    _edit(path, drop)
    with open_image(path) as image:
        assert not image.read_plane(0, 1, 1, 1).any()
        assert image.read_plane(0, 1, 1, 1).shape == (16, 24)
        level = np.asarray(image.to_dask(0, 1)[0, 0, 0])
        assert level.shape == (8, 12)
        assert not level.any()
        assert image.region_grid(0, 1) == (8, 12)  # no dataset: the whole level plane
        np.testing.assert_array_equal(
            np.asarray(image.to_dask(0, 1)[1, 0, 0]),
            ims_pixels(1, 0, (2, 16, 24), "uint16")[0, ::2, ::2],
        )


def test_a_closed_reader_refuses_to_read(cells: Path) -> None:
    image = open_image(cells)
    lazy = image.to_dask(0)
    image.close()
    with pytest.raises(ValueError, match="closed"):
        np.asarray(lazy[0, 0, 0])


def test_big_endian_and_float_data_read_as_native(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "be.ims", shape=(2, 8, 12), times=1, channels=1, levels=1)
    values = ims_pixels(0, 0, (2, 8, 12), "uint16")

    def big_endian(f: h5py.File) -> None:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        del group["Data"]
        group.create_dataset("Data", data=values.astype(">u2"), chunks=(1, 8, 12))

    _edit(path, big_endian)
    with open_image(path) as image:
        assert image.scenes()[0].dtype == "uint16"
        plane = image.read_plane(0, 0, 0, 1)
        assert plane.dtype == np.dtype("uint16")
        assert plane.dtype.byteorder in "=|<"
        np.testing.assert_array_equal(plane, values[1])


# ----------------------------------------------------------------------------- layout refusals
def _replace_data(where: str, data: np.ndarray, **kw: object) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        group = f[where]
        del group["Data"]
        group.create_dataset("Data", data=data, **kw)

    return change


LAST = "DataSet/ResolutionLevel 0/TimePoint 1/Channel 1"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda f: f.__delitem__("DataSet"), "the Imaris group 'DataSet' is missing"),
        (
            lambda f: f.move("DataSet/ResolutionLevel 1", "DataSet/ResolutionLevel 2"),
            r"resolution levels \[0, 2\] are not numbered 0..1",
        ),
        (
            lambda f: f.move("DataSet/ResolutionLevel 0", "DataSet/ResolutionLevel 5"),
            "no ResolutionLevel 0 under /DataSet",
        ),
        (
            lambda f: f.move(
                "DataSet/ResolutionLevel 0/TimePoint 0/Channel 0",
                "DataSet/ResolutionLevel 0/TimePoint 0/Channel 3",
            ),
            "no Channel 0 under /DataSet/ResolutionLevel 0/TimePoint 0",
        ),
        (
            lambda f: f.move(
                "DataSet/ResolutionLevel 0/TimePoint 0", "DataSet/ResolutionLevel 0/X"
            ),
            "no TimePoint 0",
        ),
        (
            _replace_data(LAST, np.zeros((6, 40, 52), "u1")),
            "holds uint8, the image is uint16",
        ),
        (
            _replace_data(LAST, np.zeros((6, 40, 52), "c8")),
            "holds complex64",
        ),
        (
            _replace_data(LAST, np.zeros((40, 52), "u2")),
            "has 2 dimensions, not Z, Y, X",
        ),
        (
            _replace_data(
                "DataSet/ResolutionLevel 1/TimePoint 0/Channel 0", np.zeros((3, 20, 26), "u1")
            ),
            "ResolutionLevel 1/TimePoint 0/Channel 0/Data holds uint8",
        ),
        (_replace_data(LAST, np.zeros((6, 40, 51), "u2")), "smaller than the declared"),
        (_replace_data(LAST, np.zeros((6, 39, 64), "u2")), "smaller than the declared"),
        (_replace_data(LAST, np.zeros((5, 48, 64), "u2")), "smaller than the declared"),
    ],
)
def test_broken_layouts_are_typed_errors(
    tmp_path: Path, change: Callable[[h5py.File], object], words: str
) -> None:
    path = write_ims(tmp_path / "x.ims", shape=SHAPE, times=2, channels=2, levels=2)
    _edit(path, change)
    with pytest.raises(CorruptFileError, match=words) as caught:
        ImarisReader(path)
    assert caught.value.path == path


def test_a_data_set_that_is_a_group_or_an_image_group_that_is_a_dataset(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "g.ims", shape=(2, 8, 8), times=1, channels=1, levels=1)

    def data_as_group(f: h5py.File) -> None:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        del group["Data"]
        group.create_group("Data")

    _edit(path, data_as_group)
    with pytest.raises(
        CorruptFileError, match="Channel 0/Data is missing or not a dataset"
    ) as caught:
        ImarisReader(path)
    assert caught.value.path == path
    other = write_ims(tmp_path / "h.ims", shape=(2, 8, 8), times=1, channels=1, levels=1)

    def image_as_dataset(f: h5py.File) -> None:
        del f["DataSetInfo/Image"]
        f.create_dataset("DataSetInfo/Image", data=np.zeros(3))

    _edit(other, image_as_dataset)
    with pytest.raises(CorruptFileError, match="the Imaris group 'DataSetInfo/Image' is missing"):
        open_image(other)


def test_too_many_groups_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_ims(tmp_path / "many.ims", shape=(2, 8, 8), times=3, channels=1, levels=1)
    monkeypatch.setattr(ims, "MAX_GROUPS", 3)
    with open_image(path) as image:  # three time points: at the bound, allowed
        assert image.scenes()[0].size_t == 3
    monkeypatch.setattr(ims, "MAX_GROUPS", 2)
    with pytest.raises(
        CorruptFileError, match="3 groups under /DataSet/ResolutionLevel 0, over 2"
    ) as caught:
        ImarisReader(path)
    assert caught.value.path == path


def test_chunks_over_the_plane_limit_are_refused(tmp_path: Path) -> None:
    # planes of 16 x 16 uint16 (512 bytes) stored in chunks of 4 x 16 x 16 (2048 bytes)
    path = write_ims(
        tmp_path / "c.ims", shape=(6, 16, 16), times=1, channels=1, levels=1, chunks=(4, 16, 16)
    )
    with ImarisReader(path, limits=ReadLimits(max_plane_bytes=2048)) as image:
        assert image.level_count() == 1
    with pytest.raises(
        CorruptFileError, match="chunks of 2,048 bytes, over the plane limit"
    ) as caught:
        ImarisReader(path, limits=ReadLimits(max_plane_bytes=2047))
    assert caught.value.path == path


# ----------------------------------------------------------------------------- sizes
def test_sizes_come_from_the_image_info_else_the_channel_group(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "s.ims", shape=(4, 16, 24), times=1, channels=1, levels=2)

    def no_image_sizes(f: h5py.File) -> None:
        for key in ("X", "Y", "Z"):
            del f["DataSetInfo/Image"].attrs[key]

    _edit(path, no_image_sizes)
    with open_image(path) as image:
        assert image.scenes()[0].shape == (1, 1, 4, 16, 24)
    # a declared size smaller than the stored data wins (Imaris pads to whole chunks)
    smaller = write_ims(tmp_path / "t.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    _edit(smaller, lambda f: f["DataSetInfo/Image"].attrs.__setitem__("X", chars(20)))
    with open_image(smaller) as image:
        assert image.scenes()[0].size_x == 20
        np.testing.assert_array_equal(
            image.read_plane(0, 0, 0, 2), ims_pixels(0, 0, (4, 16, 24), "uint16")[2, :, :20]
        )
    # a declared single plane is one plane, whatever the channel group says
    one = write_ims(tmp_path / "one.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    _edit(one, lambda f: f["DataSetInfo/Image"].attrs.__setitem__("Z", chars(1)))
    with open_image(one) as image:
        assert image.scenes()[0].size_z == 1
    # a zero declared size falls back to the channel group's
    zero = write_ims(tmp_path / "z.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    _edit(zero, lambda f: f["DataSetInfo/Image"].attrs.__setitem__("Y", chars(0)))
    with open_image(zero) as image:
        assert image.scenes()[0].size_y == 16


def test_no_image_info_at_all_uses_the_channel_group(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "n.ims", shape=(4, 16, 24), times=1, channels=2, levels=1)
    _edit(path, lambda f: f.__delitem__("DataSetInfo"))
    with open_image(path) as image:
        assert image.scenes()[0].shape == (1, 2, 4, 16, 24)
        assert image.scenes()[0].name is None
        md = image.metadata()
        assert md.physical_size.x_um is None
        assert [c.name for c in md.channels] == [None, None]
        assert md.acquired_at_local is None
        assert image.raw_metadata() == {"root": md.vendor_metadata["root"]}


@pytest.mark.parametrize(("axis", "stored"), [("X", "-1"), ("Y", "0"), ("Z", "0")])
def test_no_size_anywhere_is_corrupt(tmp_path: Path, axis: str, stored: str) -> None:
    path = write_ims(tmp_path / "n.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)

    def no_size(f: h5py.File) -> None:
        del f["DataSetInfo/Image"].attrs[axis]
        f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"].attrs[f"ImageSize{axis}"] = chars(
            stored
        )

    _edit(path, no_size)
    with pytest.raises(
        CorruptFileError, match=r"image size \(X, Y, Z\) is missing or not positive"
    ) as caught:
        ImarisReader(path)
    assert caught.value.path == path


def test_level_extents_fall_back_to_the_dataset_shape(tmp_path: Path) -> None:
    path = write_ims(
        tmp_path / "l.ims", shape=(4, 16, 24), times=1, channels=1, levels=2, chunks=(2, 8, 12)
    )

    def no_level_sizes(f: h5py.File) -> None:
        group = f["DataSet/ResolutionLevel 1/TimePoint 0/Channel 0"]
        group.attrs["ImageSizeX"] = chars(0)

    _edit(path, no_level_sizes)
    with open_image(path) as image:
        assert image.to_dask(0, 1).shape == (1, 1, 4, 8, 12)
        md = image.metadata()
        assert md.pyramid_levels == [(16, 24), (8, 12)]
        assert md.vendor_metadata["levels"] == [[4, 16, 24], [2, 8, 12]]


# ----------------------------------------------------------------------------- metadata
def test_metadata_of_the_written_file(cells: Path) -> None:
    with open_image(cells) as image:
        md = image.metadata()
        assert md.physical_size.x_um == pytest.approx(0.2)
        assert md.physical_size.y_um == pytest.approx(0.2)
        assert md.physical_size.z_um == pytest.approx(1.0)
        assert md.provenance["physical_size.z_um"] == (
            "Imaris DataSetInfo/Image (ExtMax2 - ExtMin2) / Z (um)"
        )
        assert md.provenance["sizes"].startswith("Imaris DataSetInfo/Image X, Y, Z")
        assert md.channels[1].excitation_nm == 488.0
        assert md.channels[0].emission_nm == 450.0
        assert md.channels[1].name == "GFP"
        assert md.acquired_at_local == datetime(2023, 5, 4, 10, 11, 12)
        assert md.time_interval_s == pytest.approx(60.0)
        assert md.provenance["time_interval_s"] == "Imaris TimeInfo TimePoint n (mean step)"
        assert md.provenance["channels[].name"] == "Imaris DataSetInfo/Channel c Name"
        assert md.provenance["channels[].color"].startswith("Imaris DataSetInfo/Channel c Color")
        assert md.provenance["acquired_at_local"].startswith("Imaris TimeInfo TimePoint1")
        assert md.warnings == [
            "acquisition time zone unknown: acquired_at_local holds the time as written",
            "pyramid levels with fewer Z planes serve plane z from their plane z * Z_level // Z",
        ]
        assert md.pyramid_levels == [(40, 52), (20, 26), (10, 13)]
        assert md.vendor_metadata["levels"] == [[6, 40, 52], [3, 20, 26], [1, 10, 13]]
        assert md.vendor_metadata["image"]["Name"] == "synthetic cells"
        assert md.vendor_metadata["root"]["ImarisVersion"] == "5.5.0"
        assert md.vendor_metadata["root"]["NumberOfDataSets"] == "1"
        # a copy per call: editing one does not change the next
        md.channels[0].name = "edited"
        assert image.metadata().channels[0].name == "DAPI"
        raw = image.raw_metadata()
        assert raw["TimeInfo"]["TimePoint3"] == "2023-05-04 10:13:12.000"
        assert raw["Channel 1"]["Color"] == "0 1 0"
        assert raw["root"]["ImarisDataSet"] == "ImarisDataSet"


def test_one_level_with_every_z_has_no_pyramid_and_no_z_warning(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "o.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    with open_image(path) as image:
        md = image.metadata()
        assert md.pyramid_levels == []
        assert md.time_interval_s is None
        assert "time_interval_s" not in md.provenance
        assert not any("fewer Z planes" in w for w in md.warnings)
    kept_z = write_ims(
        tmp_path / "k.ims", shape=(4, 16, 24), times=1, channels=1, levels=2, halve_z=False
    )
    with open_image(kept_z) as image:
        md = image.metadata()
        assert md.pyramid_levels == [(16, 24), (8, 12)]
        assert not any("fewer Z planes" in w for w in md.warnings)


def _image_attrs(**values: object) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        for key, value in values.items():
            if value is None:
                del f["DataSetInfo/Image"].attrs[key]
            else:
                f["DataSetInfo/Image"].attrs[key] = chars(value)

    return change


def test_extents_in_nanometres_and_unknown_units(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "nm.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    _edit(path, _image_attrs(Unit="nm", ExtMin0=-240, ExtMax0=2160))
    with open_image(path) as image:
        md = image.metadata()
        assert md.physical_size.x_um == pytest.approx(0.1)
        assert md.provenance["physical_size.x_um"].endswith("/ X (nm)")
        assert md.physical_size.y_um == pytest.approx(0.0002)
    odd = write_ims(tmp_path / "odd.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    _edit(odd, _image_attrs(Unit="furlong"))
    with open_image(odd) as image:
        md = image.metadata()
        assert md.physical_size.x_um is None
        assert md.physical_size.z_um is None
        assert "Imaris extent unit 'furlong' is unknown: pixel size unknown" in md.warnings
        assert not any(k.startswith("physical_size") for k in md.provenance)
    no_unit = write_ims(tmp_path / "nu.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    _edit(no_unit, _image_attrs(Unit=None))
    with open_image(no_unit) as image:
        md = image.metadata()
        assert md.physical_size.x_um == pytest.approx(0.2)  # micrometres by default
        assert md.provenance["physical_size.x_um"].endswith("(um)")


def test_extents_that_are_empty_reversed_or_missing_give_no_size(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "e.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    _edit(path, _image_attrs(ExtMax0=0, ExtMin1=10, ExtMax1=5, ExtMax2=None))
    with open_image(path) as image:
        md = image.metadata()
        assert md.physical_size.x_um is None
        assert md.physical_size.y_um is None
        assert md.physical_size.z_um is None
        assert not any(k.startswith("physical_size") for k in md.provenance)
    nan = write_ims(tmp_path / "nan.ims", shape=(4, 16, 24), times=1, channels=1, levels=1)
    _edit(nan, _image_attrs(ExtMax0="nan", ExtMin1="inf", ExtMin2="x"))
    with open_image(nan) as image:
        md = image.metadata()
        assert (md.physical_size.x_um, md.physical_size.y_um) == (None, None)
        assert md.physical_size.z_um is None


def test_a_single_plane_has_no_z_size(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "1z.ims", shape=(1, 16, 24), times=1, channels=1, levels=1)
    with open_image(path) as image:
        md = image.metadata()
        assert md.physical_size.x_um == pytest.approx(0.2)
        assert md.physical_size.z_um is None
        assert "physical_size.z_um" not in md.provenance


def test_channels_without_names_colours_or_wavelengths(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "ch.ims", shape=(2, 8, 8), times=1, channels=3, levels=1)

    def strip(f: h5py.File) -> None:
        for c in range(3):
            attrs = f[f"DataSetInfo/Channel {c}"].attrs
            attrs["Name"] = chars("")
            attrs["LSMExcitationWavelength"] = chars("0")
            attrs["LSMEmissionWavelength"] = chars("-5")
        f["DataSetInfo/Channel 0"].attrs["Color"] = chars("1 0.5")
        f["DataSetInfo/Channel 1"].attrs["Color"] = chars("red green blue")
        f["DataSetInfo/Channel 2"].attrs["Color"] = chars("")

    _edit(path, strip)
    with open_image(path) as image:
        md = image.metadata()
        assert [c.name for c in md.channels] == [None, None, None]
        assert [c.color for c in md.channels] == [None, None, None]
        assert [c.excitation_nm for c in md.channels] == [None, None, None]
        assert [c.emission_nm for c in md.channels] == [None, None, None]
        assert "channels[].name" not in md.provenance
        assert "channels[].color" not in md.provenance


def test_one_named_channel_is_enough_for_the_provenance(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "one.ims", shape=(2, 8, 8), times=1, channels=2, levels=1)

    def first_unnamed(f: h5py.File) -> None:
        f["DataSetInfo/Channel 0"].attrs["Name"] = chars("")
        f["DataSetInfo/Channel 0"].attrs["Color"] = chars("")

    _edit(path, first_unnamed)
    with open_image(path) as image:
        md = image.metadata()
        assert [c.name for c in md.channels] == [None, "GFP"]
        assert [c.color for c in md.channels] == [None, "#00FF00"]
        assert "channels[].name" in md.provenance
        assert "channels[].color" in md.provenance


def test_times_from_recording_date_and_uneven_or_missing_stamps(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "r.ims", shape=(2, 8, 8), times=3, channels=1, levels=1)

    def stamps(f: h5py.File) -> None:
        info = f["DataSetInfo/TimeInfo"].attrs
        del info["TimePoint1"]
        f["DataSetInfo/Image"].attrs["RecordingDate"] = chars("2021-01-02 03:04:05")

    _edit(path, stamps)
    with open_image(path) as image:
        md = image.metadata()
        assert md.acquired_at_local == datetime(2021, 1, 2, 3, 4, 5)
        assert md.time_interval_s is None  # one stamp is missing: no mean step
        assert md.provenance["acquired_at_local"].endswith("(or Image RecordingDate)")
    steps = write_ims(tmp_path / "s.ims", shape=(2, 8, 8), times=3, channels=1, levels=1)

    def uneven(f: h5py.File) -> None:
        info = f["DataSetInfo/TimeInfo"].attrs
        info["TimePoint2"] = chars("2023-05-04 10:11:13.500")
        info["TimePoint3"] = chars("2023-05-04 10:11:17.000")

    _edit(steps, uneven)
    with open_image(steps) as image:
        md = image.metadata()
        assert md.time_interval_s == pytest.approx(2.5)  # (17 - 12) / 2
        assert md.acquired_at_local == datetime(2023, 5, 4, 10, 11, 12)
    same = write_ims(tmp_path / "same.ims", shape=(2, 8, 8), times=2, channels=1, levels=1)
    _edit(
        same,
        lambda f: f["DataSetInfo/TimeInfo"].attrs.__setitem__(
            "TimePoint2", chars("2023-05-04 10:11:12.000")
        ),
    )
    with open_image(same) as image:
        assert image.metadata().time_interval_s is None  # no time passes: no interval
    nothing = write_ims(tmp_path / "no.ims", shape=(2, 8, 8), times=1, channels=1, levels=1)

    def no_dates(f: h5py.File) -> None:
        del f["DataSetInfo/TimeInfo"]
        f["DataSetInfo/Image"].attrs["RecordingDate"] = chars("1601-01-01 00:00:00.000")

    _edit(nothing, no_dates)
    with open_image(nothing) as image:
        md = image.metadata()
        assert md.acquired_at_local is None
        assert "acquired_at_local" not in md.provenance
        assert not any("time zone" in w for w in md.warnings)


def test_the_first_time_point_alone_gives_no_interval(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "t1.ims", shape=(2, 8, 8), times=2, channels=1, levels=1)
    _edit(path, lambda f: f["DataSetInfo/TimeInfo"].attrs.__delitem__("TimePoint2"))
    with open_image(path) as image:
        md = image.metadata()
        assert md.acquired_at_local == datetime(2023, 5, 4, 10, 11, 12)
        assert md.time_interval_s is None


# ----------------------------------------------------------------------------- helpers
def test_attribute_text_from_bytes_arrays_and_numbers() -> None:
    assert ims._text(b"abc\x00\x00") == "abc"
    assert ims._text(b"\xe9t\xe9") == "été"
    assert ims._text(chars("12.5")) == "12.5"
    assert ims._text(np.array([b"\xb5", b"m", b"\x00"], "S1")) == "µm"
    assert ims._text(np.array(3)) == "3"
    assert ims._text(np.array([1, 2, 3], "u4")) == "1 2 3"
    assert ims._text(np.array([[1.5], [2.0]])) == "1.5 2.0"
    assert ims._text("plain") == "plain"
    # only trailing NULs go: not letters or spaces
    assert ims._text(b"BOX \x00") == "BOX "
    assert ims._text(b"BOX\x00") == "BOX"
    assert ims._text(chars("BOX ")) == "BOX "
    assert ims._text(chars("BOX")) == "BOX"


def test_numbers_from_attributes() -> None:
    assert ims._int(None) is None
    assert ims._int(chars(" 42 ")) == 42
    assert ims._int(chars("7.9")) == 7
    assert ims._int(chars("abc")) is None
    assert ims._int(chars("inf")) is None
    assert ims._int(np.array([5], "u4")) == 5
    assert ims._float(" 2.5 ") == 2.5
    assert ims._float(None) is None
    assert ims._float("nan") is None
    assert ims._float("-inf") is None
    assert ims._float("x") is None
    assert ims._positive("0") is None
    assert ims._positive("0.5") == 0.5
    assert ims._positive("-1") is None
    assert ims._positive(None) is None


def test_colours_are_clamped_and_rounded() -> None:
    assert ims._colour("1 0.5 0") == "#FF8000"
    assert ims._colour("2 -1 0.2 0.9") == "#FF0033"
    assert ims._colour("0.001 0.998 1") == "#00FEFF"
    assert ims._colour("1 1") is None
    assert ims._colour("") is None
    assert ims._colour(None) is None
    assert ims._colour("1 x 0") is None


def test_timestamps_with_and_without_fractions() -> None:
    assert ims._timestamp(" 2023-05-04 10:11:12.250 ") == datetime(2023, 5, 4, 10, 11, 12, 250000)
    assert ims._timestamp("2023-05-04 10:11:12") == datetime(2023, 5, 4, 10, 11, 12)
    assert ims._timestamp("1900-01-01 00:00:00") == datetime(1900, 1, 1)
    assert ims._timestamp("1899-12-31 23:59:59") is None
    assert ims._timestamp("04/05/2023") is None
    assert ims._timestamp("") is None
    assert ims._timestamp(None) is None


def test_a_file_h5py_cannot_open_is_corrupt_with_the_cause(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "cut.ims", shape=(2, 8, 8), times=1, channels=1, levels=1)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(CorruptFileError) as caught:
        ImarisReader(path)
    assert str(caught.value).startswith("cut.ims: invalid Imaris (HDF5) structure: ")
    assert caught.value.path == path
    assert caught.value.detail is not None
    assert caught.value.detail.startswith("OSError(")


def test_a_closed_reader_says_so_instead_of_blaming_the_file(tmp_path: Path) -> None:
    """Before: metadata() raised CorruptFileError, raw_metadata() a bare KeyError, and
    region_grid() answered the whole-plane grid (a closed h5py file finds no node)."""
    path = write_ims(
        tmp_path / "c.ims", shape=(2, 16, 24), times=1, channels=1, levels=1, chunks=(1, 4, 8)
    )
    image = open_image(path)
    assert image.region_grid(0) == (4, 8)
    image.close()
    for call in (image.metadata, image.raw_metadata, lambda: image.region_grid(0)):
        with pytest.raises(ValueError, match=r"^c\.ims: the reader is closed$"):
            call()
    cached = open_image(path)
    expected = cached.metadata()
    cached.close()
    assert cached.metadata() == expected  # built before the close: no read needed


def test_defaults_and_names(cells: Path) -> None:
    with open_image(cells) as image:
        assert image.to_dask().shape == (3, 2, 6, 40, 52)
        assert image.to_dask().name.startswith("imarisreader-")
        assert image.region_grid() == (16, 16)
        with pytest.raises(SceneNotFoundError) as caught:
            image.to_dask(0, 7)
        assert caught.value.path == cells


def test_data_stored_in_another_file_is_refused_naming_this_one(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "ext.ims", shape=(2, 8, 8), times=1, channels=1, levels=1)
    (tmp_path / "other.bin").write_bytes(b"\x01" * 256)

    def external(f: h5py.File) -> None:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        del group["Data"]
        group.create_dataset(
            "Data", shape=(2, 8, 8), dtype="u2", external=[(str(tmp_path / "other.bin"), 0, 256)]
        )

    _edit(path, external)
    with pytest.raises(CorruptFileError, match="external or virtual") as caught:
        ImarisReader(path)
    assert caught.value.path == path


@pytest.mark.parametrize(
    "where", ["ResolutionLevel 0/TimePoint 0/Channel 0", "ResolutionLevel 1/TimePoint 1/Channel 1"]
)
def test_an_external_link_to_another_files_data_is_refused(tmp_path: Path, where: str) -> None:
    """Before: the link was followed, and the pixels of any HDF5 file the server can read came back."""
    import h5py

    path = write_ims(tmp_path / "link.ims", shape=(2, 8, 8), times=2, channels=2, levels=2)
    with h5py.File(tmp_path / "secret.h5", "w") as f:
        f.create_dataset("data", data=np.full((2, 8, 8), 4242, "u2"))

    def link(f: h5py.File) -> None:
        group = f[f"DataSet/{where}"]
        del group["Data"]
        group["Data"] = h5py.ExternalLink(str(tmp_path / "secret.h5"), "/data")

    _edit(path, link)
    with pytest.raises(CorruptFileError, match="links into another file; refused") as caught:
        ImarisReader(path)
    assert caught.value.path == path


def test_the_first_time_point_wins_over_the_recording_date_and_short_steps_count(
    tmp_path: Path,
) -> None:
    path = write_ims(tmp_path / "w.ims", shape=(2, 8, 8), times=3, channels=1, levels=1)

    def dates(f: h5py.File) -> None:
        f["DataSetInfo/Image"].attrs["RecordingDate"] = chars("2020-01-01 00:00:00.000")
        info = f["DataSetInfo/TimeInfo"].attrs
        info["TimePoint2"] = chars("2023-05-04 10:11:12.250")
        info["TimePoint3"] = chars("2023-05-04 10:11:12.500")

    _edit(path, dates)
    with open_image(path) as image:
        md = image.metadata()
        assert md.acquired_at_local == datetime(2023, 5, 4, 10, 11, 12)
        assert md.time_interval_s == pytest.approx(0.25)  # steps under a second are steps
