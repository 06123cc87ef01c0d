"""``convert`` (``zarr/writer.py``) array by array and attribute by attribute, on disk.

What is pinned: the arrays of every level (names, shapes, chunks, dtype, codec, fill value,
chunk key layout of v2 and v3) and their pixels against the whole-plane pyramid, plane by
plane and chunk by chunk (a tall tiled plane of many T, C, Z), the group attributes of 0.4
and 0.5, the windows from the smallest level, warnings (result, metadata, log), progress
lines, refusals, and the bioformats2raw collection with its OME-XML.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import numpy as np
import pytest
import zarr

from tests.omezarr.helpers import expected_level
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer.errors import SceneNotFoundError
from zstack_analyzer.zarr.ngff import display_windows, scene_layout
from zstack_analyzer.zarr.writer import ConvertResult, convert

if TYPE_CHECKING:
    from pathlib import Path

NO_UNIT = [f"{axis}: the file states no voxel size; scale 1 with no unit" for axis in "zyx"]
#: A file of several time points also states no interval.
NO_UNIT_T = ["t: the file states no time interval; scale 1 with no unit", *NO_UNIT]
#: 1030 x 520 planes: three levels (1030 x 520, 515 x 260, 258 x 130), odd sizes below.
MID = encoded_stack(2, 2, 2, 1030, 520)
MID_LEVELS = [(1030, 520), (515, 260), (258, 130)]


def _json(path: Path) -> dict[str, object]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _windows(top: np.ndarray, path: Path) -> list[list[float]]:
    """The 1-99 % windows of the smallest level, per channel (``top`` is its T, C, Z, Y, X)."""
    from zstack_analyzer import open_image

    with open_image(path) as reader:
        layout = scene_layout(reader.metadata(0))
    return [list(w) for w in display_windows(layout, lambda c, z: top[0, c, z])]


def test_v2_levels_codec_chunk_keys_pixels_and_attributes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_ome_tiff(tmp_path / "mid.ome.tif", [MID])
    out = tmp_path / "mid.ome.zarr"
    lines: list[str] = []
    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.zarr.writer"):
        result = convert(source, out, progress=lines.append, workers=2)
    assert result == ConvertResult(out, "0.4", [0], [MID_LEVELS], NO_UNIT_T)
    assert lines == ["scene 0: 8 planes, 3 levels"]
    assert [r.getMessage() for r in caplog.records] == [
        f"mid.ome.tif scene 0: {w}" for w in NO_UNIT_T
    ]
    for level, (ny, nx) in enumerate(MID_LEVELS):
        meta = _json(out / str(level) / ".zarray")
        assert meta["shape"] == [2, 2, 2, ny, nx]
        assert meta["chunks"] == [1, 1, 1, ny, nx]
        assert meta["dtype"] == "<u2"
        assert meta["fill_value"] == 0
        assert meta["dimension_separator"] == "/"
        assert meta["compressor"] == {
            "id": "blosc",
            "cname": "lz4",
            "clevel": 5,
            "shuffle": 1,
            "blocksize": 0,
        }
        assert (out / str(level) / "1" / "1" / "1" / "0" / "0").is_file()
    assert not (out / "3").exists()
    group = zarr.open_group(str(out), mode="r")
    for level in range(3):
        np.testing.assert_array_equal(np.asarray(group[str(level)][:]), expected_level(MID, level))
    attrs = dict(group.attrs)
    assert sorted(attrs) == ["multiscales", "omero", "zstack"]
    assert attrs["multiscales"][0]["name"] == "Image0"  # the OME-TIFF's own name
    assert [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0", "1", "2"]
    assert attrs["multiscales"][0]["version"] == "0.4"
    assert attrs["omero"]["name"] == "Image0"
    windows = [[ch["window"]["start"], ch["window"]["end"]] for ch in attrs["omero"]["channels"]]
    assert windows == _windows(expected_level(MID, 2), source)
    assert attrs["zstack"]["version"] == 1
    assert attrs["zstack"]["metadata"]["warnings"] == [f"OME-Zarr: {w}" for w in NO_UNIT_T]


def test_v3_codec_dimension_names_chunk_keys_and_nested_attributes(tmp_path: Path) -> None:
    source = write_ome_tiff(tmp_path / "mid.ome.tif", [MID])
    out = tmp_path / "mid5.ome.zarr"
    result = convert(source, out, ngff="0.5")
    assert result.ngff == "0.5"
    assert result.levels == [MID_LEVELS]
    for level, (ny, nx) in enumerate(MID_LEVELS):
        meta = _json(out / str(level) / "zarr.json")
        assert meta["shape"] == [2, 2, 2, ny, nx]
        assert meta["dimension_names"] == ["t", "c", "z", "y", "x"]
        assert meta["fill_value"] == 0
        assert meta["data_type"] == "uint16"
        assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 1, ny, nx]  # type: ignore[index]
        blosc = [c for c in meta["codecs"] if c["name"] == "blosc"]  # type: ignore[union-attr]
        assert len(blosc) == 1
        config = blosc[0]["configuration"]
        assert (config["cname"], config["clevel"], config["shuffle"]) == ("lz4", 5, "shuffle")
        assert (out / str(level) / "c" / "1" / "0" / "1" / "0" / "0").is_file()
    group = zarr.open_group(str(out), mode="r")
    for level in range(3):
        np.testing.assert_array_equal(np.asarray(group[str(level)][:]), expected_level(MID, level))
    attrs = dict(group.attrs)
    assert sorted(attrs) == ["ome", "zstack"]
    assert attrs["ome"]["version"] == "0.5"
    assert sorted(attrs["ome"]) == ["multiscales", "omero", "version"]
    assert attrs["ome"]["multiscales"][0]["name"] == "Image0"
    windows = [
        [c["window"]["start"], c["window"]["end"]] for c in attrs["ome"]["omero"]["channels"]
    ]
    assert windows == _windows(expected_level(MID, 2), source)
    assert attrs["zstack"]["metadata"]["warnings"] == [f"OME-Zarr: {w}" for w in NO_UNIT_T]


def test_a_tall_tiled_plane_is_written_chunk_by_chunk_for_every_plane(tmp_path: Path) -> None:
    """4100 x 200 in 128 px tiles, C 2: every chunk of every level of every plane."""
    stack = encoded_stack(1, 2, 1, 4100, 200, dtype="uint8")
    source = write_ome_tiff(tmp_path / "tall.ome.tif", [stack], tile=(128, 128))
    out = tmp_path / "tall.ome.zarr"
    lines: list[str] = []
    result = convert(source, out, progress=lines.append, workers=2)
    assert lines == ["scene 0: tiled plane, 5 levels, chunk by chunk"]
    assert result.levels == [[(4100, 200), (2050, 100), (1025, 50), (513, 25), (257, 13)]]
    group = zarr.open_group(str(out), mode="r")
    for level in range(5):
        array = group[str(level)]
        assert array.chunks == (1, 1, 1, min(128, array.shape[3]), min(128, array.shape[4]))
        np.testing.assert_array_equal(np.asarray(array[:]), expected_level(stack, level))
    windows = [
        [ch["window"]["start"], ch["window"]["end"]] for ch in group.attrs["omero"]["channels"]
    ]
    assert windows == _windows(expected_level(stack, 4), source)
    # The second scene of a file, tiled and tall, is read from that scene.
    pair = write_ome_tiff(
        tmp_path / "pair.ome.tif",
        [encoded_stack(1, 1, 1, 20, 10, dtype="uint8"), stack[:, :1, :, :, :130]],
        tile=(128, 128),
    )
    convert(pair, tmp_path / "pair.ome.zarr", scene=1)
    second = zarr.open_group(str(tmp_path / "pair.ome.zarr"), mode="r")
    for level in (0, 1, 4):
        np.testing.assert_array_equal(
            np.asarray(second[str(level)][:]), expected_level(stack[:, :1, :, :, :130], level)
        )


def test_a_small_tiled_plane_and_a_large_striped_one_go_plane_by_plane(tmp_path: Path) -> None:
    small = encoded_stack(1, 1, 2, 300, 200)
    tiled = write_ome_tiff(tmp_path / "small.ome.tif", [small], tile=(64, 64))
    lines: list[str] = []
    convert(tiled, tmp_path / "small.ome.zarr", progress=lines.append)
    assert lines == ["scene 0: 2 planes, 1 levels"]
    np.testing.assert_array_equal(
        np.asarray(zarr.open_group(str(tmp_path / "small.ome.zarr"), mode="r")["0"][:]), small
    )
    tall = encoded_stack(1, 1, 1, 4100, 100, dtype="uint8")
    striped = write_ome_tiff(tmp_path / "striped.ome.tif", [tall])
    lines.clear()
    convert(striped, tmp_path / "striped.ome.zarr", progress=lines.append)
    assert lines == ["scene 0: 1 planes, 5 levels"]
    group = zarr.open_group(str(tmp_path / "striped.ome.zarr"), mode="r")
    assert group["0"].chunks == (1, 1, 1, 1024, 100)
    for level in range(5):
        np.testing.assert_array_equal(np.asarray(group[str(level)][:]), expected_level(tall, level))


def test_rgb_samples_are_channels_at_every_level(tmp_path: Path) -> None:
    import tifffile

    rgb = np.stack(
        [encoded_stack(1, 1, 1, 1030, 600, dtype="uint8")[0, 0, 0] + k * 50 for k in range(3)],
        axis=-1,
    )
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    convert(tmp_path / "rgb.tif", tmp_path / "rgb.ome.zarr", progress=None)
    group = zarr.open_group(str(tmp_path / "rgb.ome.zarr"), mode="r")
    planes = np.moveaxis(rgb, -1, 0)[None, :, None]
    for level in range(3):
        np.testing.assert_array_equal(
            np.asarray(group[str(level)][:]), expected_level(planes, level)
        )


def test_refusals_and_the_scene_chosen(tmp_path: Path) -> None:
    stacks = [encoded_stack(1, 1, 1, 30, 40), encoded_stack(1, 2, 1, 20, 10)]
    source = write_ome_tiff(tmp_path / "two.ome.tif", stacks)
    out = tmp_path / "one.ome.zarr"
    result = convert(source, out, scene=1)
    assert (result.scenes, result.levels) == ([1], [[(20, 10)]])
    np.testing.assert_array_equal(
        np.asarray(zarr.open_group(str(out), mode="r")["0"][:]), stacks[1]
    )
    with pytest.raises(
        FileExistsError, match=r"one\.ome\.zarr: already exists; choose a new output path"
    ):
        convert(source, out)
    for scene in (-1, 2):
        with pytest.raises(SceneNotFoundError) as caught:
            convert(source, tmp_path / f"s{scene}.zarr", scene=scene)
        assert str(caught.value) == f"two.ome.tif: scene {scene} does not exist; it has 2"
        assert not (tmp_path / f"s{scene}.zarr").exists()
    # With every scene the scene asked is ignored.
    every = convert(source, tmp_path / "all.ome.zarr", all_scenes=True, scene=7)
    assert every.scenes == [0, 1]


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_a_collection_of_an_ome_tiff_keeps_its_own_ome_xml(tmp_path: Path, ngff: str) -> None:
    import tifffile

    stacks = [encoded_stack(1, 1, 2, 30, 40), encoded_stack(1, 2, 1, 600, 10)]
    source = write_ome_tiff(tmp_path / "two.ome.tif", stacks)
    out = tmp_path / "two.ome.zarr"
    result = convert(source, out, all_scenes=True, ngff=ngff)  # type: ignore[arg-type]
    assert result.levels == [[(30, 40)], [(600, 10), (300, 5)]]
    assert result.warnings == [f"scene {i}: {w}" for i in (0, 1) for w in NO_UNIT]
    root = zarr.open_group(str(out), mode="r")
    if ngff == "0.4":
        assert dict(root.attrs) == {"bioformats2raw.layout": 3}
        assert dict(root["OME"].attrs) == {"series": ["0", "1"]}
    else:
        assert dict(root.attrs) == {"ome": {"version": "0.5", "bioformats2raw.layout": 3}}
        assert dict(root["OME"].attrs) == {"ome": {"version": "0.5", "series": ["0", "1"]}}
    for index, stack in enumerate(stacks):
        np.testing.assert_array_equal(np.asarray(root[str(index)]["0"][:]), stack)
    np.testing.assert_array_equal(np.asarray(root["1"]["1"][:]), expected_level(stacks[1], 1))
    with tifffile.TiffFile(source) as tif:
        own = tif.ome_metadata
    assert (out / "OME" / "METADATA.ome.xml").read_text(encoding="utf-8") == own


def test_a_collection_of_a_file_without_ome_xml_describes_each_scene(tmp_path: Path) -> None:
    import tifffile
    from defusedxml import ElementTree

    path = tmp_path / "pair.tif"
    tifffile.imwrite(path, encoded_stack(1, 1, 1, 20, 10)[0, 0, 0], metadata=None)
    tifffile.imwrite(path, encoded_stack(1, 1, 1, 30, 40)[0, 0, 0], append=True, metadata=None)
    out = tmp_path / "pair.ome.zarr"
    result = convert(path, out, all_scenes=True)
    assert result.scenes == [0, 1]
    root = zarr.open_group(str(out), mode="r")
    assert root["0"].attrs["multiscales"][0]["name"] == "pair.tif #1"
    assert root["1"].attrs["multiscales"][0]["name"] == "pair.tif #2"
    assert root["1"].attrs["omero"]["name"] == "pair.tif #2"
    ome = ElementTree.fromstring((out / "OME" / "METADATA.ome.xml").read_bytes())
    ns = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
    images = [
        (image.get("ID"), image.get("Name"), p.get("SizeX"), p.get("SizeY"))
        for image in ome.findall("ome:Image", ns)
        for p in image.findall("ome:Pixels", ns)
    ]
    assert images == [
        ("Image:0", "pair.tif #1", "10", "20"),
        ("Image:1", "pair.tif #2", "40", "30"),
    ]
    labels = [
        c.get("Name")
        for c in ome.iter("{http://www.openmicroscopy.org/Schemas/OME/2016-06}Channel")
    ]
    assert labels == [
        root["0"].attrs["omero"]["channels"][0]["label"],
        root["1"].attrs["omero"]["channels"][0]["label"],
    ]


def test_a_collection_of_a_file_that_is_no_tiff_describes_each_scene(tmp_path: Path) -> None:
    """A CZI reader has no TIFF to take OME-XML from: ours is written."""
    from tests.synthetic_czi import write_czi_scenes

    write_czi_scenes(tmp_path / "two.czi", [(30, 40, (0, 0)), (20, 10, (100, 0))])
    out = tmp_path / "two.ome.zarr"
    convert(tmp_path / "two.czi", out, all_scenes=True)
    xml = (out / "OME" / "METADATA.ome.xml").read_text(encoding="utf-8")
    assert 'Name="two.czi #1"' in xml and 'Name="two.czi #2"' in xml


def test_v3_bytes_are_shuffled_whatever_the_dtype(tmp_path: Path) -> None:
    """Byte shuffle, also for 8-bit data (zarr's own choice there would be bit shuffle)."""
    source = write_ome_tiff(
        tmp_path / "u8.ome.tif", [encoded_stack(1, 1, 1, 30, 40, dtype="uint8")]
    )
    convert(source, tmp_path / "u8.ome.zarr", ngff="0.5")
    meta = _json(tmp_path / "u8.ome.zarr" / "0" / "zarr.json")
    blosc = [c for c in meta["codecs"] if c["name"] == "blosc"]  # type: ignore[union-attr]
    assert blosc[0]["configuration"]["shuffle"] == "shuffle"
