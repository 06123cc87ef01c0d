"""OME-Zarr as input: what we write, what ome-zarr-py writes, collections, plates, URLs."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING

import numpy as np
import pytest
import zarr

from tests.omezarr.helpers import expected_level, ome_zarr_writer
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer import open_image
from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError, UnsupportedFormatError
from zstack_analyzer.registry import supported_formats
from zstack_analyzer.zarr.writer import convert

if TYPE_CHECKING:
    from pathlib import Path

CALIBRATED = {
    "PhysicalSizeX": 0.25,
    "PhysicalSizeY": 0.3,
    "PhysicalSizeZ": 1.5,
    "Channel": {"Name": ["DAPI", "GFP"]},
}


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_round_trip_of_our_own_output(tmp_path: Path, ngff: str) -> None:
    stack = encoded_stack(1, 2, 3, 700, 600)
    source = write_ome_tiff(tmp_path / "s.ome.tif", [stack], metadata=[CALIBRATED])
    convert(source, tmp_path / "s.ome.zarr", ngff=ngff)  # type: ignore[arg-type]
    with open_image(tmp_path / "s.ome.zarr") as reader:
        assert type(reader).__name__ == "OmeZarrReader"
        md = reader.metadata(0)
        assert md.file_format == "OME-Zarr"
        assert md.shape == (1, 2, 3, 700, 600)
        assert md.get_voxel_size_micrometers() == (0.25, 0.3, 1.5)
        assert [c.name for c in md.channels] == ["DAPI", "GFP"]
        assert md.pyramid_levels == [(700, 600), (350, 300)]
        assert reader.level_count(0) == 2
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 2), stack[0, 1, 2])
        np.testing.assert_array_equal(reader.to_dask(0, 1).compute(), expected_level(stack, 1))
        clone = pickle.loads(pickle.dumps(reader))
        np.testing.assert_array_equal(clone.read_plane(0, 0, 0, 1), stack[0, 0, 1])
        clone.close()
        with pytest.raises(SceneNotFoundError):
            reader.to_dask(0, 2)


def test_ome_zarr_py_output_with_other_axes_and_units(tmp_path: Path) -> None:
    from ome_zarr.io import parse_url

    write_image = ome_zarr_writer().write_image
    data = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)  # z, y, x
    out = tmp_path / "peer.ome.zarr"
    store = parse_url(str(out), mode="w").store  # type: ignore[union-attr]
    root = zarr.group(store=store)
    write_image(
        data,
        root,
        axes="zyx",
        axes_units={"z": "nanometer", "y": "millimeter", "x": "micrometer"},
        scale={"z": 500.0, "y": 0.0002, "x": 0.2},
        scale_factors=[],
    )
    with open_image(out) as reader:
        md = reader.metadata(0)
        assert md.shape == (1, 1, 3, 40, 50)
        x, y, z = md.get_voxel_size_micrometers()
        assert (x, y, z) == pytest.approx((0.2, 0.2, 0.5))
        np.testing.assert_array_equal(reader.to_dask(0).compute()[0, 0], data)


def test_bioformats2raw_collection_scenes(tmp_path: Path) -> None:
    stacks = [encoded_stack(1, 1, 2, 30, 40), encoded_stack(1, 2, 1, 20, 10)]
    source = write_ome_tiff(tmp_path / "two.ome.tif", stacks)
    convert(source, tmp_path / "two.ome.zarr", all_scenes=True)
    with open_image(tmp_path / "two.ome.zarr") as reader:
        assert [s.shape for s in reader.scenes()] == [(1, 1, 2, 30, 40), (1, 2, 1, 20, 10)]
        for index, stack in enumerate(stacks):
            np.testing.assert_array_equal(reader.to_dask(index).compute(), stack)
        md = reader.metadata(0)
        assert md.get_voxel_size_micrometers() == (None, None, None)
        assert any("voxel size unknown" in w for w in md.warnings)


def test_hcs_plate_wells_and_fields_are_scenes(tmp_path: Path) -> None:
    from ome_zarr.io import parse_url

    writer = ome_zarr_writer()
    write_image = writer.write_image
    write_plate_metadata, write_well_metadata = (
        writer.write_plate_metadata,
        writer.write_well_metadata,
    )

    out = tmp_path / "plate.ome.zarr"
    root = zarr.group(store=parse_url(str(out), mode="w").store)  # type: ignore[union-attr]
    write_plate_metadata(root, ["A", "B"], ["1"], ["A/1", "B/1"])
    expected = {}
    for row in ("A", "B"):
        well = root.require_group(row).require_group("1")
        write_well_metadata(well, [{"path": "0"}, {"path": "1"}])
        for field in range(2):
            data = np.full((2, 16, 16), 10 * (row == "B") + field, dtype=np.uint8)
            write_image(data, well.require_group(str(field)), axes="cyx", scale_factors=[])
            expected[f"{row}1 field {field}"] = data
    with open_image(out) as reader:
        names = [s.name for s in reader.scenes()]
        assert names == ["A1 field 0", "A1 field 1", "B1 field 0", "B1 field 1"]
        for index, name in enumerate(names):
            np.testing.assert_array_equal(reader.to_dask(index).compute()[0, :, 0], expected[name])


def test_formats_table_and_bad_directories(tmp_path: Path) -> None:
    assert any(f.name == "OME-Zarr" and f.available for f in supported_formats())
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w", zarr_format=2).create_array("a", shape=(2,), dtype="u1")
    with pytest.raises(UnsupportedFormatError):
        open_image(plain)
    broken = tmp_path / "broken.ome.zarr"
    broken.mkdir()
    (broken / ".zgroup").write_text('{"zarr_format": 2}')
    (broken / ".zattrs").write_text('{"multiscales": [{"datasets": [{"path": "0"}]}]}')
    with pytest.raises(CorruptFileError):
        open_image(broken)
