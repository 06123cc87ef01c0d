"""How a scene is described as NGFF (``zarr/ngff.py``, ``zarr/pyramid.py``, ``zarr/ome_xml.py``).

The writer and the virtual store both describe scenes through these functions, so a wrong
level size, scale, chunk, unit, title, window plane, label or colour shows in every
converted and every served OME-Zarr. Each test states the NGFF a viewer would read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from defusedxml import ElementTree as ET

from zstack_analyzer.metadata import ChannelInfo, ImageMetadata, PhysicalSize
from zstack_analyzer.zarr.ngff import (
    display_windows,
    multiscales_attrs,
    omero_attrs,
    scene_layout,
    scene_title,
    window_planes,
    zstack_attrs,
)
from zstack_analyzer.zarr.ome_xml import OME_NAMESPACE, collection_ome_xml
from zstack_analyzer.zarr.pyramid import chunk_shape_for, downsample2x, level_shapes


def _md(**kw: Any) -> ImageMetadata:
    base: dict[str, Any] = {
        "filename": "a.tif",
        "file_format": "TIFF",
        "size_x": 64,
        "size_y": 32,
        "dtype": "uint16",
        "bit_depth": 16,
    }
    base.update(kw)
    return ImageMetadata(**base)


# ----------------------------------------------------------------------------- pyramid


@pytest.mark.parametrize(
    ("size", "top", "shapes"),
    [
        ((2048, 1500), 512, [(2048, 1500), (1024, 750), (512, 375)]),
        ((300, 200), 512, [(300, 200)]),
        ((512, 512), 512, [(512, 512)]),
        ((513, 10), 512, [(513, 10), (257, 5)]),
        ((10, 1025), 512, [(10, 1025), (5, 513), (3, 257)]),
        ((0, -3), 512, [(1, 1)]),
        ((9, 9), 2, [(9, 9), (5, 5), (3, 3), (2, 2)]),
    ],
)
def test_level_shapes(size: tuple[int, int], top: int, shapes: list[tuple[int, int]]) -> None:
    assert level_shapes(*size, top=top) == shapes


def test_level_shapes_default_top_is_512() -> None:
    assert level_shapes(1024, 1024) == [(1024, 1024), (512, 512)]
    assert level_shapes(1026, 4) == [(1026, 4), (513, 2), (257, 1)]


@pytest.mark.parametrize(
    ("size", "tile", "chunk"),
    [
        ((2048, 2048), None, (2048, 2048)),
        ((4096, 100), None, (4096, 100)),
        ((4096, 4096), (256, 256), (4096, 4096)),
        ((4097, 100), None, (1024, 100)),
        ((100, 4097), None, (100, 1024)),
        ((8192, 8192), (512, 256), (512, 256)),
        ((8192, 8192), (64, 64), (64, 64)),
        ((8192, 8192), (63, 512), (1024, 1024)),
        ((8192, 8192), (512, 63), (1024, 1024)),
        ((5000, 300), (512, 512), (512, 300)),
        ((300, 5000), (512, 512), (300, 512)),
        ((0, 0), None, (1, 1)),
    ],
)
def test_chunk_shape_for(
    size: tuple[int, int], tile: tuple[int, int] | None, chunk: tuple[int, int]
) -> None:
    assert chunk_shape_for(*size, file_tile=tile) == chunk


def test_downsample_by_block_means_with_edges_replicated() -> None:
    plane = np.array([[0, 2, 4], [2, 4, 6]], dtype=np.uint8)
    assert downsample2x(plane).tolist() == [[2, 5]]
    odd = np.array([[1, 3, 5], [7, 9, 11], [13, 15, 17]], dtype=np.uint16)
    out = downsample2x(odd)
    assert out.dtype == np.uint16
    assert out.tolist() == [[5, 8], [14, 17]]
    tall = np.array([[10], [20], [31]], dtype=np.uint8)
    assert downsample2x(tall).tolist() == [[15], [31]]


def test_downsample_rounds_and_keeps_the_dtype_range() -> None:
    assert downsample2x(np.array([[0, 1], [1, 1]], dtype=np.uint8)).tolist() == [[1]]  # .75
    assert downsample2x(np.array([[0, 0], [1, 0]], dtype=np.uint8)).tolist() == [[0]]  # .25
    top = np.full((2, 2), 255, dtype=np.uint8)
    assert downsample2x(top).tolist() == [[255]]
    low = np.full((2, 2), -128, dtype=np.int8)
    assert downsample2x(low).tolist() == [[-128]]
    floats = np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)
    out = downsample2x(floats)
    assert out.dtype == np.float32
    assert out.tolist() == [[0.4375]]  # floats are not rounded


# ------------------------------------------------------------------------------ layout


def test_scene_layout_of_a_calibrated_stack() -> None:
    md = _md(
        size_x=3000,
        size_y=1200,
        size_z=5,
        size_c=2,
        size_t=3,
        physical_size=PhysicalSize(x_um=0.25, y_um=-0.5, z_um=2.0),
        time_interval_s=1.5,
    )
    layout = scene_layout(md, file_tile=(256, 256))
    assert layout.shape == (3, 2, 5, 1200, 3000)
    assert layout.dtype == np.dtype("uint16")
    assert layout.samples_per_pixel == 1
    assert layout.levels == [(1200, 3000), (600, 1500), (300, 750), (150, 375)]
    assert layout.chunk_yx == (1200, 3000)
    assert layout.scale == (1.5, 1.0, 2.0, 0.5, 0.25)
    assert layout.units == ("second", None, "micrometer", "micrometer", "micrometer")
    assert layout.warnings == []
    assert layout.level_shape(0) == (3, 2, 5, 1200, 3000)
    assert layout.level_shape(2) == (3, 2, 5, 300, 750)
    assert layout.level_chunks(0) == (1, 1, 1, 1200, 3000)
    assert layout.level_chunks(3) == (1, 1, 1, 150, 375)
    assert layout.level_scale(0) == [1.5, 1.0, 2.0, 0.5, 0.25]
    assert layout.level_scale(2) == [1.5, 1.0, 2.0, 2.0, 1.0]


def test_a_large_plane_is_chunked_by_the_file_tile() -> None:
    layout = scene_layout(_md(size_x=9000, size_y=5000), file_tile=(512, 256))
    assert layout.chunk_yx == (512, 256)
    assert layout.level_chunks(0) == (1, 1, 1, 512, 256)
    assert layout.level_chunks(len(layout.levels) - 1)[3:] == (
        min(512, layout.levels[-1][0]),
        min(256, layout.levels[-1][1]),
    )
    assert scene_layout(_md(size_x=9000, size_y=5000)).chunk_yx == (1024, 1024)


def test_rgb_samples_are_channels() -> None:
    layout = scene_layout(_md(size_c=2, samples_per_pixel=3, dtype="uint8", bit_depth=8))
    assert layout.shape[1] == 6
    assert layout.samples_per_pixel == 3
    assert scene_layout(_md(samples_per_pixel=0)).samples_per_pixel == 1


def test_sizes_not_stated_are_scale_one_with_a_warning() -> None:
    layout = scene_layout(_md(size_z=4, size_t=2))
    assert layout.scale == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert layout.units == (None, None, None, None, None)
    assert layout.warnings == [
        "t: the file states no time interval; scale 1 with no unit",
        "z: the file states no voxel size; scale 1 with no unit",
        "y: the file states no voxel size; scale 1 with no unit",
        "x: the file states no voxel size; scale 1 with no unit",
    ]
    # One time point: no interval needed, no warning; z is always named; 0 and NaN are unknown.
    one = scene_layout(
        _md(physical_size=PhysicalSize(x_um=0.0, y_um=float("nan"), z_um=None), time_interval_s=0)
    )
    assert one.units == (None, None, None, None, None)
    assert [w.split(":")[0] for w in one.warnings] == ["z", "y", "x"]
    inf = scene_layout(_md(size_t=3, time_interval_s=float("inf")))
    assert inf.units[0] is None
    assert inf.warnings[0].startswith("t: the file states no time interval")


def test_scene_titles() -> None:
    md = _md(filename="ab12.czi", scene_index=1)
    assert scene_title(md, name="cells.czi", scenes=3) == "cells.czi #2"
    assert scene_title(md, scenes=2) == "ab12.czi #2"
    assert scene_title(md) == "ab12.czi"
    assert scene_title(md, name="cells.czi") == "cells.czi"
    assert scene_title(_md(scene_name="Position 3"), name="x", scenes=5) == "Position 3"


@pytest.mark.parametrize(
    ("size_z", "samples", "planes"),
    [
        (1, 16, [0]),
        (3, 16, [0, 1, 2]),
        (10, 4, [0, 3, 6, 9]),
        (100, 4, [0, 33, 66, 99]),
        (16, 16, list(range(16))),
        (17, 16, [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16]),
        (5, 1, [0]),
        (5, 2, [0, 4]),
    ],
)
def test_window_planes(size_z: int, samples: int, planes: list[int]) -> None:
    assert window_planes(size_z, samples) == planes


def test_window_planes_default_to_16() -> None:
    assert len(window_planes(100)) == 16
    assert window_planes(100)[-1] == 99


def test_display_windows_sample_each_channel_on_its_planes() -> None:
    layout = scene_layout(_md(size_c=2, size_z=3))
    calls: list[tuple[int, int]] = []

    def read_plane(c: int, z: int) -> np.ndarray:
        calls.append((c, z))
        return np.arange(100, dtype=np.uint16).reshape(10, 10) * (c + 1) + 1000 * c

    windows = display_windows(layout, read_plane)
    assert calls == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert len(windows) == 2
    assert windows[0][0] < windows[0][1] <= 99
    assert 1000 <= windows[1][0] < windows[1][1] <= 1000 + 99 * 2


def test_multiscales_attrs() -> None:
    md = _md(
        size_x=1024,
        size_y=1024,
        size_z=3,
        physical_size=PhysicalSize(x_um=0.2, y_um=0.3, z_um=1.0),
    )
    layout = scene_layout(md)
    old = multiscales_attrs(layout, name="cells", version="0.4")["multiscales"]
    assert len(old) == 1
    entry = old[0]
    assert next(iter(entry)) == "version"
    assert entry["version"] == "0.4"
    assert entry["name"] == "cells"
    assert entry["type"] == "mean"
    assert entry["metadata"] == {"method": "2x2 block mean, rounded up at odd edges"}
    assert entry["axes"] == [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    assert entry["datasets"] == [
        {
            "path": "0",
            "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0, 0.3, 0.2]}],
        },
        {
            "path": "1",
            "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0, 0.6, 0.4]}],
        },
    ]
    new = multiscales_attrs(layout, name="cells", version="0.5")["multiscales"][0]
    assert "version" not in new
    assert {k: v for k, v in entry.items() if k != "version"} == new


# ------------------------------------------------------------------------------ omero


def test_omero_of_named_coloured_channels() -> None:
    md = _md(
        size_c=3,
        size_z=7,
        channels=[
            ChannelInfo(index=0, name="DAPI", color="#0000FF"),
            ChannelInfo(index=1, name="GFP", color="#00FF00"),
            ChannelInfo(index=2, color="#FF8000"),
        ],
    )
    block = omero_attrs(md, scene_layout(md), windows=[(10, 20), (30.5, 40)], name="cells")
    omero = block["omero"]
    assert omero["name"] == "cells"
    assert omero["version"] == "0.4"
    assert omero["rdefs"] == {"model": "color", "defaultT": 0, "defaultZ": 3}
    channels = omero["channels"]
    assert [c["label"] for c in channels] == ["DAPI", "GFP", "C2"]
    assert [c["color"] for c in channels] == ["0000FF", "00FF00", "FF8000"]
    for channel in channels:
        assert channel["active"] is True
        assert channel["coefficient"] == 1.0
        assert channel["family"] == "linear"
        assert channel["inverted"] is False
    assert channels[0]["window"] == {"min": 0.0, "max": 65535.0, "start": 10.0, "end": 20.0}
    assert channels[1]["window"] == {"min": 0.0, "max": 65535.0, "start": 30.5, "end": 40.0}
    # No window given for the third channel: the whole range.
    assert channels[2]["window"] == {"min": 0.0, "max": 65535.0, "start": 0.0, "end": 65535.0}


def test_omero_of_one_channel_without_colour_is_grey_and_titled_by_the_file() -> None:
    md = _md(filename="stack.tif", dtype="uint8", bit_depth=8)
    omero = omero_attrs(md, scene_layout(md))["omero"]
    assert omero["name"] == "stack.tif"
    assert omero["rdefs"]["model"] == "greyscale"
    assert omero["rdefs"]["defaultZ"] == 0
    assert [c["color"] for c in omero["channels"]] == ["FFFFFF"]
    assert [c["label"] for c in omero["channels"]] == ["C0"]
    assert omero["channels"][0]["window"] == {"min": 0.0, "max": 255.0, "start": 0.0, "end": 255.0}


def test_one_channel_that_states_a_colour_keeps_it() -> None:
    md = _md(channels=[ChannelInfo(index=0, name="mCherry", color="#FF0000")])
    assert omero_attrs(md, scene_layout(md))["omero"]["channels"][0]["color"] == "FF0000"
    by_emission = _md(channels=[ChannelInfo(index=0, emission_nm=520.0)])
    colour = omero_attrs(by_emission, scene_layout(by_emission))["omero"]["channels"][0]["color"]
    assert colour != "FFFFFF"
    assert len(colour) == 6


def test_omero_of_rgb_samples() -> None:
    md = _md(
        size_c=2,
        samples_per_pixel=3,
        dtype="uint8",
        bit_depth=8,
        channels=[ChannelInfo(index=0, name="brightfield")],
    )
    omero = omero_attrs(md, scene_layout(md))["omero"]
    assert [c["label"] for c in omero["channels"]] == [
        "brightfield R",
        "brightfield G",
        "brightfield B",
        "C1 R",
        "C1 G",
        "C1 B",
    ]
    assert [c["color"] for c in omero["channels"]] == ["FF0000", "00FF00", "0000FF"] * 2
    rgba = _md(samples_per_pixel=4, dtype="uint8", bit_depth=8)
    channels = omero_attrs(rgba, scene_layout(rgba))["omero"]["channels"]
    assert [c["label"] for c in channels] == ["C0 R", "C0 G", "C0 B", "C0 A"]
    assert [c["color"] for c in channels] == ["FF0000", "00FF00", "0000FF", "FFFFFF"]
    many = _md(samples_per_pixel=5, dtype="uint8", bit_depth=8)
    channels = omero_attrs(many, scene_layout(many))["omero"]["channels"]
    assert [c["label"] for c in channels] == ["C0 0", "C0 1", "C0 2", "C0 3", "C0 4"]
    assert {c["color"] for c in channels} == {"FFFFFF"}


def test_zstack_attrs_carry_the_metadata() -> None:
    md = _md(channels=[ChannelInfo(index=0, name="DAPI")], provenance={"size_x": "tag"})
    block = zstack_attrs(md)["zstack"]
    assert block["version"] == 1
    assert block["metadata"]["filename"] == "a.tif"
    assert block["metadata"]["channels"][0]["name"] == "DAPI"
    assert block["metadata"]["provenance"] == {"size_x": "tag"}


# ------------------------------------------------------------------------------ OME-XML


def test_collection_ome_xml_lists_every_series() -> None:
    first = _md(
        size_x=64,
        size_y=32,
        size_z=3,
        size_c=2,
        size_t=4,
        physical_size=PhysicalSize(x_um=0.25, y_um=0.5, z_um=2.0),
        time_interval_s=3.0,
    )
    second = _md(size_x=10, size_y=20, dtype="float32", bit_depth=32, samples_per_pixel=3)
    xml = collection_ome_xml(
        [("cells", scene_layout(first), ["DAPI"]), ("rgb", scene_layout(second), [])]
    )
    assert xml.startswith("<?xml")
    # OME is the default namespace (clients match the unprefixed form), never ns0: or another prefix.
    assert f'<OME xmlns="{OME_NAMESPACE}"' in xml
    assert "<Image " in xml
    assert "ns0:" not in xml
    ns = {"ome": OME_NAMESPACE}
    root = ET.fromstring(xml)
    assert root.tag == f"{{{OME_NAMESPACE}}}OME"
    assert root.get("Creator") == "zstack-analyzer"
    images = root.findall("ome:Image", ns)
    assert [(i.get("ID"), i.get("Name")) for i in images] == [
        ("Image:0", "cells"),
        ("Image:1", "rgb"),
    ]
    pixels = images[0].find("ome:Pixels", ns)
    assert pixels is not None
    assert pixels.attrib == {
        "ID": "Pixels:0",
        "DimensionOrder": "XYZCT",
        "Type": "uint16",
        "SizeX": "64",
        "SizeY": "32",
        "SizeZ": "3",
        "SizeC": "2",
        "SizeT": "4",
        "BigEndian": "false",
        "PhysicalSizeX": "0.25",
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": "0.5",
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": "2.0",
        "PhysicalSizeZUnit": "µm",
        "TimeIncrement": "3.0",
        "TimeIncrementUnit": "s",
    }
    assert [
        (c.get("ID"), c.get("Name"), c.get("SamplesPerPixel"))
        for c in pixels.findall("ome:Channel", ns)
    ] == [("Channel:0:0", "DAPI", "1"), ("Channel:0:1", "C1", "1")]
    assert pixels.find("ome:MetadataOnly", ns) is not None
    other = images[1].find("ome:Pixels", ns)
    assert other is not None
    assert other.get("Type") == "float"
    assert other.get("SizeC") == "3"
    assert other.get("ID") == "Pixels:1"
    assert "PhysicalSizeX" not in other.attrib
    assert "TimeIncrement" not in other.attrib
    assert [c.get("ID") for c in other.findall("ome:Channel", ns)] == [
        "Channel:1:0",
        "Channel:1:1",
        "Channel:1:2",
    ]


@pytest.mark.parametrize(
    ("dtype", "pixel_type"),
    [
        ("uint8", "uint8"),
        ("int8", "int8"),
        ("uint32", "uint32"),
        ("int16", "int16"),
        ("int32", "int32"),
        ("float64", "double"),
        ("bool", "bit"),
        ("uint64", "uint64"),
    ],
)
def test_pixel_types(dtype: str, pixel_type: str) -> None:
    layout = scene_layout(_md(dtype=dtype, bit_depth=8))
    root = ET.fromstring(collection_ome_xml([("x", layout, [])]))
    pixels = root.find(f"{{{OME_NAMESPACE}}}Image/{{{OME_NAMESPACE}}}Pixels")
    assert pixels is not None
    assert pixels.get("Type") == pixel_type


@pytest.mark.parametrize(
    ("dtype", "bits", "low", "high"),
    [
        ("uint16", 12, 0.0, 4095.0),
        ("uint16", 15, 0.0, 32767.0),
        ("uint16", 16, 0.0, 65535.0),
        ("uint16", None, 0.0, 65535.0),
        ("uint16", 0, 0.0, 65535.0),
        ("uint8", 8, 0.0, 255.0),
        ("uint8", 1, 0.0, 1.0),
        ("int16", 12, -32768.0, 32767.0),
        ("float32", 12, 0.0, 1.0),
    ],
)
def test_omero_value_range_from_significant_bits(
    dtype: str, bits: int | None, low: float, high: float
) -> None:
    md = _md(dtype=dtype, significant_bits=bits, size_c=2)
    for channel in omero_attrs(md, scene_layout(md))["omero"]["channels"]:
        assert channel["window"] == {"min": low, "max": high, "start": low, "end": high}


def test_two_channels_are_a_colour_model_and_more_bits_than_the_dtype_are_its_range() -> None:
    md = _md(size_c=2, significant_bits=17)
    omero = omero_attrs(md, scene_layout(md))["omero"]
    assert omero["rdefs"]["model"] == "color"
    assert {c["window"]["max"] for c in omero["channels"]} == {65535.0}


def test_two_samples_per_pixel_are_samples_of_one_channel() -> None:
    md = _md(samples_per_pixel=2, dtype="uint8", bit_depth=8)
    channels = omero_attrs(md, scene_layout(md))["omero"]["channels"]
    assert [c["label"] for c in channels] == ["C0 R", "C0 G"]
    assert [c["color"] for c in channels] == ["FF0000", "00FF00"]


def test_each_axis_keeps_its_own_unit() -> None:
    only_z = scene_layout(_md(size_z=3, physical_size=PhysicalSize(z_um=2.0)))
    assert only_z.units == (None, None, "micrometer", None, None)
    only_x = scene_layout(_md(size_z=3, physical_size=PhysicalSize(x_um=0.5, z_um=2.0)))
    assert only_x.units == (None, None, "micrometer", None, "micrometer")
    assert only_x.scale == (1.0, 1.0, 2.0, 1.0, 0.5)
