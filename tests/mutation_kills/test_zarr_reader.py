"""Reading OME-Zarr (``zarr/reader.py``): stores written here with zarr, attribute by attribute.

Detection (``.zattrs``, ``zarr.json``, the size cap), the refusals and their messages,
axes in other orders and without T, C or Z, units to µm and seconds for every unit NGFF
names, scales of the dataset and of the multiscale, channels, names, collections (series
listed or counted), plates, pickling, and a store read over HTTP.
"""

from __future__ import annotations

import functools
import http.server
import json
import pickle
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr

from zstack_analyzer import open_image
from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError, UnsupportedFormatError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.zarr.reader import (
    SPACE_UNIT_UM,
    TIME_UNIT_S,
    OmeZarrReader,
    _ome_attrs,
    is_url,
    looks_like_ome_zarr,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

ZYX = [
    {"name": "z", "type": "space"},
    {"name": "y", "type": "space"},
    {"name": "x", "type": "space"},
]


def _axes(names: str, units: dict[str, str] | None = None) -> list[dict[str, str]]:
    units = units or {}
    return [{"name": a, **({"unit": units[a]} if a in units else {})} for a in names]


def _image(
    group: zarr.Group,
    levels: list[np.ndarray],
    *,
    axes: Any = None,
    scale: list[float] | None = None,
    top_scale: list[float] | None = None,
    extra: dict[str, Any] | None = None,
    name: str | None = None,
    chunks: tuple[int, ...] | None = None,
) -> None:
    """An NGFF image in ``group``: levels "0", "1", ... and its ``multiscales`` (0.4 layout)."""
    datasets = []
    for index, data in enumerate(levels):
        group.create_array(str(index), data=data, chunks=chunks or data.shape)
        entry: dict[str, Any] = {"path": str(index)}
        if scale is not None:
            entry["coordinateTransformations"] = [
                {"type": "translation", "translation": [9.0] * len(scale)},
                {"type": "scale", "scale": [s * 2**index for s in scale]},
            ]
        datasets.append(entry)
    multiscale: dict[str, Any] = {"version": "0.4", "datasets": datasets}
    if axes is not None:
        multiscale["axes"] = axes
    if top_scale is not None:
        multiscale["coordinateTransformations"] = [{"type": "scale", "scale": top_scale}]
    if name is not None:
        multiscale["name"] = name
    group.attrs.update({"multiscales": [multiscale], **(extra or {})})


def _store(path: Path, zarr_format: int = 2) -> zarr.Group:
    return zarr.open_group(str(path), mode="w", zarr_format=zarr_format)


STACK = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)  # c, z, y, x


def test_urls_and_attribute_nesting() -> None:
    assert is_url("http://host/a.zarr") and is_url("HTTPS://host/a.zarr")
    assert not is_url("ftp://host/a.zarr")
    assert not is_url("/data/http://x")
    assert not is_url(b"http://host")
    assert _ome_attrs({"ome": {"multiscales": [1]}, "zstack": 2}) == {
        "ome": {"multiscales": [1]},
        "multiscales": [1],
        "zstack": 2,
    }
    assert _ome_attrs({"ome": "0.5", "a": 1}) == {"ome": "0.5", "a": 1}


def test_detection_by_zattrs_and_zarr_json(tmp_path: Path) -> None:
    def folder(name: str, files: dict[str, str]) -> Path:
        path = tmp_path / name
        path.mkdir()
        for key, text in files.items():
            (path / key).write_text(text)
        return path

    for key in ("multiscales", "plate", "bioformats2raw.layout"):
        assert looks_like_ome_zarr(folder(f"v2-{key}", {".zattrs": json.dumps({key: 1})}))
        assert looks_like_ome_zarr(
            folder(f"v3-{key}", {"zarr.json": json.dumps({"attributes": {"ome": {key: 1}}})})
        )
        # zarr.json keeps its attributes under "attributes", not at its top.
        assert not looks_like_ome_zarr(folder(f"v3top-{key}", {"zarr.json": json.dumps({key: 1})}))
    assert looks_like_ome_zarr(folder("v2-ome", {".zattrs": '{"ome": {"multiscales": []}}'}))
    assert looks_like_ome_zarr(
        folder("both", {".zattrs": '{"other": 1}', "zarr.json": '{"attributes": {"plate": {}}}'})
    )
    assert not looks_like_ome_zarr(
        folder("v2-attributes", {".zattrs": '{"attributes": {"plate": 1}}'})
    )
    assert not looks_like_ome_zarr(folder("v3-bare", {"zarr.json": '{"zarr_format": 3}'}))
    assert not looks_like_ome_zarr(folder("plain", {".zattrs": '{"other": 1}'}))
    assert not looks_like_ome_zarr(folder("empty", {}))
    assert not looks_like_ome_zarr(folder("bad-json", {".zattrs": "{not json"}))
    assert not looks_like_ome_zarr(folder("a-list", {".zattrs": "[1, 2]"}))
    assert not looks_like_ome_zarr(folder("v3-list", {"zarr.json": '{"attributes": [1]}'}))
    assert not looks_like_ome_zarr(tmp_path / "missing")
    (tmp_path / "file.zarr").write_text('{"multiscales": 1}')
    assert not looks_like_ome_zarr(tmp_path / "file.zarr")
    folder_attrs = tmp_path / "dir-attrs"
    (folder_attrs / ".zattrs").mkdir(parents=True)
    assert not looks_like_ome_zarr(folder_attrs)
    # sniff: an empty head means a directory; a head means a zip.
    assert OmeZarrReader.sniff(b"", tmp_path / "v2-plate")
    assert not OmeZarrReader.sniff(b"", tmp_path / "plain")
    assert not OmeZarrReader.sniff(b"PK\x03\x04", tmp_path / "v2-plate")


def test_metadata_documents_of_64_mib_or_more_are_not_read(tmp_path: Path) -> None:
    cap = 64 * 1024 * 1024
    for size, expected in ((cap - 1, True), (cap, False)):
        path = tmp_path / f"s{size}"
        path.mkdir()
        text = '{"multiscales": 1}'
        (path / ".zattrs").write_text(text + " " * (size - len(text)))
        assert (path / ".zattrs").stat().st_size == size
        assert looks_like_ome_zarr(path) is expected


def test_refusals_and_their_messages(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        OmeZarrReader(tmp_path / "missing.ome.zarr")
    plain = _store(tmp_path / "plain.zarr")
    plain.attrs.update({"other": 1})
    with pytest.raises(UnsupportedFormatError) as caught:
        OmeZarrReader(tmp_path / "plain.zarr")
    assert str(caught.value) == (
        "plain.zarr: a zarr group without NGFF metadata (no multiscales, plate or "
        "bioformats2raw layout)"
    )
    empty = _store(tmp_path / "empty.ome.zarr")
    empty.attrs.update({"bioformats2raw.layout": 3})
    with pytest.raises(
        CorruptFileError, match=r"^empty\.ome\.zarr: an OME-Zarr with no image in it$"
    ) as caught:
        OmeZarrReader(tmp_path / "empty.ome.zarr")
    assert caught.value.path == tmp_path / "empty.ome.zarr"
    lost = _store(tmp_path / "lost.ome.zarr")
    lost.attrs.update({"multiscales": [{"datasets": [{"path": "0"}]}]})
    with pytest.raises(
        CorruptFileError, match=r"^lost\.ome\.zarr: unreadable OME-Zarr: "
    ) as caught:
        OmeZarrReader(tmp_path / "lost.ome.zarr")
    assert caught.value.detail == repr(caught.value.__cause__)
    assert caught.value.path == tmp_path / "lost.ome.zarr"
    nested = _store(tmp_path / "nested.ome.zarr")
    nested.attrs.update({"bioformats2raw.layout": 3})
    nested.create_group("0").attrs.update({"other": 1})
    with pytest.raises(CorruptFileError, match=r"^nested\.ome\.zarr: group 0 has no multiscales$"):
        OmeZarrReader(tmp_path / "nested.ome.zarr")
    root = _store(tmp_path / "root.ome.zarr")
    root.attrs.update({"multiscales": []})
    with pytest.raises(CorruptFileError, match=r"^root\.ome\.zarr: group / has no multiscales$"):
        OmeZarrReader(tmp_path / "root.ome.zarr")
    for index, axes in enumerate(["zyy", "qyx", "zy", "zx", ["c", "z", "y", "x", "w"][1:]]):
        bad = _store(tmp_path / f"axes{index}.ome.zarr")
        _image(bad, [np.zeros((2, 3, 4)[: len(axes)], dtype="u1")], axes=_axes("".join(axes)))
        with pytest.raises(CorruptFileError, match=r"unsupported NGFF axes"):
            OmeZarrReader(tmp_path / f"axes{index}.ome.zarr")


def test_axes_in_another_order_and_absent_ones(tmp_path: Path) -> None:
    """``z, c, y, x`` (no T) in 2 x 2 chunks reads as canonical T, C, Z, Y, X."""
    data = np.arange(4 * 3 * 6 * 5, dtype=np.uint8).reshape(4, 3, 6, 5)  # z, c, y, x
    group = _store(tmp_path / "zc.ome.zarr")
    _image(group, [data], axes=_axes("ZCYX"), chunks=(1, 1, 2, 2))
    with OmeZarrReader(tmp_path / "zc.ome.zarr") as reader:
        info = reader.scenes()[0]
        assert (info.size_t, info.size_c, info.size_z, info.size_y, info.size_x) == (1, 3, 4, 6, 5)
        array = reader.to_dask(0)
        assert array.shape == (1, 3, 4, 6, 5)
        assert array.chunks == ((1,), (1, 1, 1), (1, 1, 1, 1), (2, 2, 2), (2, 2, 1))
        np.testing.assert_array_equal(array.compute(), np.moveaxis(data, 1, 0)[None])
        np.testing.assert_array_equal(reader.read_plane(0, 0, 2, 3), data[3, 2])
        with pytest.raises(SceneNotFoundError, match=r"c=3 is out of range"):
            reader.read_plane(0, 0, 3, 0)


def test_axes_by_shape_when_none_are_given(tmp_path: Path) -> None:
    group = _store(tmp_path / "bare.ome.zarr")
    _image(group, [STACK])  # c, z, y, x: the last four of t, c, z, y, x
    with OmeZarrReader(tmp_path / "bare.ome.zarr") as reader:
        assert reader.scenes()[0].shape == (1, 2, 3, 4, 5)
        np.testing.assert_array_equal(reader.to_dask(0).compute()[0], STACK)
        md = reader.metadata(0)
        assert md.get_voxel_size_micrometers() == (None, None, None)
        assert md.warnings[:3] == [
            f"{axis}: no unit in the NGFF axes; voxel size unknown" for axis in "xyz"
        ]
    # Axes as plain names (NGFF 0.3): no units.
    named = _store(tmp_path / "named.ome.zarr")
    _image(named, [STACK[0]], axes=["z", "y", "x"], scale=[1.0, 2.0, 3.0])
    with OmeZarrReader(tmp_path / "named.ome.zarr") as reader:
        md = reader.metadata(0)
        assert md.shape == (1, 1, 3, 4, 5)
        assert md.get_voxel_size_micrometers() == (None, None, None)


@pytest.mark.parametrize(("unit", "factor"), sorted(SPACE_UNIT_UM.items()))
def test_every_space_unit_to_micrometres(tmp_path: Path, unit: str, factor: float) -> None:
    group = _store(tmp_path / "u.ome.zarr")
    units = {"z": unit, "y": unit, "x": unit}
    _image(group, [STACK[0]], axes=_axes("zyx", units), scale=[3.0, 2.0, 0.5])
    with OmeZarrReader(tmp_path / "u.ome.zarr") as reader:
        md = reader.metadata(0)
    expected = {"micrometer": 1.0, "nanometer": 1e-3, "angstrom": 1e-4, "picometer": 1e-6}
    expected |= {"millimeter": 1e3, "centimeter": 1e4, "meter": 1e6}
    assert factor == expected[unit]
    assert md.get_voxel_size_micrometers() == pytest.approx(
        (0.5 * factor, 2.0 * factor, 3.0 * factor)
    )
    assert md.provenance["physical_size.x_um"] == "NGFF scale"
    assert md.provenance["physical_size.z_um"] == "NGFF scale"
    assert not [w for w in md.warnings if "voxel size unknown" in w]


@pytest.mark.parametrize(("unit", "factor"), sorted(TIME_UNIT_S.items()))
def test_every_time_unit_to_seconds(tmp_path: Path, unit: str, factor: float) -> None:
    group = _store(tmp_path / "t.ome.zarr")
    data = np.zeros((3, 4, 5), dtype="u1")
    _image(group, [data], axes=_axes("tyx", {"t": unit, "y": "micrometer"}), scale=[1.5, 0.2, 0.3])
    with OmeZarrReader(tmp_path / "t.ome.zarr") as reader:
        md = reader.metadata(0)
    expected = {"millisecond": 1e-3, "second": 1.0, "minute": 60.0, "hour": 3600.0}
    assert factor == {**expected, "microsecond": 1e-6}[unit]
    assert md.time_interval_s == pytest.approx(1.5 * factor)
    assert md.provenance["time_interval_s"] == "NGFF scale"
    # x has no unit: unknown, with a warning; z is no axis at all: unknown, no warning.
    assert md.get_voxel_size_micrometers() == (None, pytest.approx(0.2), None)
    assert md.warnings == ["x: no unit in the NGFF axes; voxel size unknown"]


def test_no_interval_without_a_time_unit_or_scale(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), dtype="u1")
    for index, (units, scale) in enumerate(
        [({"t": "fortnight"}, [2.0, 1.0, 1.0]), ({"t": "second"}, None), ({}, [2.0, 1.0, 1.0])]
    ):
        group = _store(tmp_path / f"t{index}.ome.zarr")
        _image(group, [data], axes=_axes("tyx", units), scale=scale)
        with OmeZarrReader(tmp_path / f"t{index}.ome.zarr") as reader:
            md = reader.metadata(0)
        assert md.time_interval_s is None
        assert "time_interval_s" not in md.provenance
    # A unit without a scale, or an unknown unit: the size is unknown.
    group = _store(tmp_path / "noscale.ome.zarr")
    _image(
        group, [STACK[0]], axes=_axes("zyx", {"z": "furlong", "y": "micrometer", "x": "micrometer"})
    )
    with OmeZarrReader(tmp_path / "noscale.ome.zarr") as reader:
        md = reader.metadata(0)
    assert md.get_voxel_size_micrometers() == (None, None, None)
    assert [w.split(":")[0] for w in md.warnings] == ["x", "y", "z"]


def test_scales_of_the_dataset_times_those_of_the_multiscale(tmp_path: Path) -> None:
    group = _store(tmp_path / "s.ome.zarr")
    units = {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
    _image(
        group,
        [STACK[0], STACK[0, :, ::2, ::2]],
        axes=_axes("zyx", units),
        scale=[2.0, 0.5, 0.25],
        top_scale=[3.0, 1.0, 4.0],
    )
    with OmeZarrReader(tmp_path / "s.ome.zarr") as reader:
        md = reader.metadata(0)
        assert md.get_voxel_size_micrometers() == pytest.approx((1.0, 0.5, 6.0))
        assert md.pyramid_levels == [(4, 5), (2, 3)]
        assert reader.level_count(0) == 2
        np.testing.assert_array_equal(reader.to_dask(0, 1).compute()[0, 0], STACK[0, :, ::2, ::2])
        for level in (-1, 2):
            with pytest.raises(SceneNotFoundError) as caught:
                reader.to_dask(0, level)
            assert caught.value.path == reader.path
            assert str(caught.value) == (
                f"s.ome.zarr: pyramid level {level} does not exist; scene 0 has 2"
            )
    # A multiscale scale without a dataset scale multiplies 1.
    only_top = _store(tmp_path / "top.ome.zarr")
    _image(only_top, [STACK[0]], axes=_axes("zyx", units), top_scale=[3.0, 1.5, 4.0])
    with OmeZarrReader(tmp_path / "top.ome.zarr") as reader:
        assert reader.metadata(0).get_voxel_size_micrometers() == pytest.approx((4.0, 1.5, 3.0))


def test_channels_names_and_dtype(tmp_path: Path) -> None:
    group = _store(tmp_path / "c.ome.zarr")
    omero = {
        "name": "from omero",
        "channels": [
            {"label": "DAPI", "color": "0000ff"},
            {"label": "GFP", "color": "00FF0"},
            {"label": "extra", "color": "ffffff"},
        ],
    }
    _image(group, [STACK.astype(">u2")], axes=_axes("czyx"), extra={"omero": omero})
    with OmeZarrReader(tmp_path / "c.ome.zarr") as reader:
        md = reader.metadata(0)
        assert [(c.index, c.name, c.color) for c in md.channels] == [
            (0, "DAPI", "#0000FF"),
            (1, "GFP", None),
        ]
        assert reader.scenes()[0].name == "from omero"
        assert reader.scenes()[0].dtype == "uint16"
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 2), STACK[1, 2])
    named = _store(tmp_path / "n.ome.zarr")
    _image(
        named,
        [STACK],
        axes=_axes("czyx"),
        name="own",
        extra={"omero": {"name": "other", "channels": [{"color": 255}]}},
    )
    with OmeZarrReader(tmp_path / "n.ome.zarr") as reader:
        assert reader.scenes()[0].name == "own"
        assert [(c.name, c.color) for c in reader.metadata(0).channels] == [(None, None)]
    unnamed = _store(tmp_path / "u.ome.zarr")
    _image(unnamed, [STACK], axes=_axes("czyx"))
    with OmeZarrReader(tmp_path / "u.ome.zarr") as reader:
        assert reader.scenes()[0].name is None
        assert reader.metadata(0).channels == [] or all(
            c.name is None for c in reader.metadata(0).channels
        )


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_collections_by_their_series_or_their_groups(tmp_path: Path, zarr_format: int) -> None:
    planes = [np.full((4, 5), i, dtype="u1") for i in range(4)]
    listed = _store(tmp_path / "listed.ome.zarr", zarr_format)
    ome = {"series": ["2", "0"]}
    if zarr_format == 2:
        listed.attrs.update({"bioformats2raw.layout": 3})
        listed.create_group("OME").attrs.update(ome)
    else:
        listed.attrs.update({"ome": {"version": "0.5", "bioformats2raw.layout": 3}})
        listed.create_group("OME").attrs.update({"ome": {"version": "0.5", **ome}})
    for i in range(3):
        _image(listed.create_group(str(i)), [planes[i]], axes=_axes("yx"))
    with OmeZarrReader(tmp_path / "listed.ome.zarr") as reader:
        assert [s.index for s in reader.scenes()] == [0, 1]
        assert [int(reader.read_plane(i, 0, 0, 0)[0, 0]) for i in range(2)] == [2, 0]
        raw = reader.raw_metadata()
        assert sorted(raw["scenes"]) == ["0", "2"]
        assert "bioformats2raw.layout" in json.dumps(raw["root"])
    counted = _store(tmp_path / "counted.ome.zarr", zarr_format)
    counted.attrs.update({"bioformats2raw.layout": 3})
    counted.create_group("OME")  # an OME group that lists no series: the groups are counted
    for i in (0, 1, 3):  # no "2": counting stops at the first gap
        _image(counted.create_group(str(i)), [planes[i]], axes=_axes("yx"))
    with OmeZarrReader(tmp_path / "counted.ome.zarr") as reader:
        assert [int(reader.read_plane(i, 0, 0, 0)[0, 0]) for i in range(len(reader.scenes()))] == [
            0,
            1,
        ]
        with pytest.raises(SceneNotFoundError):
            reader.to_dask(2)
        assert reader.level_count() == reader.level_count(0) == 1
        assert reader.to_dask().compute()[0, 0, 0, 0, 0] == 0
        assert reader.metadata() == reader.metadata(0)
        assert reader.metadata().size_x == 5


def test_plates_name_fields_by_well_and_skip_wells_without_fields(tmp_path: Path) -> None:
    root = _store(tmp_path / "plate.ome.zarr")
    root.attrs.update({"plate": {"wells": [{"path": "B/3"}, {"path": "A/1"}, {"path": "C/2"}]}})
    for well, fields in (("B/3", ["f0", "f1"]), ("A/1", ["x"]), ("C/2", [])):
        group = root.require_group(well)
        group.attrs.update({"well": {"images": [{"path": f} for f in fields]}})
        for index, field in enumerate(fields):
            _image(
                group.create_group(field),
                [np.full((4, 5), 10 * len(fields) + index, dtype="u1")],
                axes=_axes("yx"),
            )
    with OmeZarrReader(tmp_path / "plate.ome.zarr") as reader:
        assert [(s.index, s.name) for s in reader.scenes()] == [
            (0, "B3 field 0"),
            (1, "B3 field 1"),
            (2, "A1 field 0"),
        ]
        assert [int(reader.read_plane(i, 0, 0, 0)[0, 0]) for i in range(3)] == [20, 21, 10]
        assert sorted(reader.raw_metadata()["scenes"]) == ["A/1/x", "B/3/f0", "B/3/f1"]
    # A plate without wells, and wells without fields (no "well", no "images"): no image.
    for index, wells in enumerate([None, {"well": {}}, {}]):
        empty = _store(tmp_path / f"empty{index}.ome.zarr")
        if wells is None:
            empty.attrs.update({"plate": {}})
        else:
            empty.attrs.update({"plate": {"wells": [{"path": "A/1"}]}})
            empty.require_group("A/1").attrs.update(wells)
        with pytest.raises(CorruptFileError) as caught:
            OmeZarrReader(tmp_path / f"empty{index}.ome.zarr")
        assert str(caught.value) == f"empty{index}.ome.zarr: an OME-Zarr with no image in it"
    bad = _store(tmp_path / "bad.ome.zarr")
    bad.attrs.update({"plate": {"wells": [{"path": "A/1"}]}})
    bad.require_group("A/1").attrs.update({"well": {"images": [{"path": "0"}]}})
    bad.require_group("A/1/0").attrs.update({"other": 1})
    with pytest.raises(CorruptFileError, match=r"^bad\.ome\.zarr: group A/1/0 has no multiscales$"):
        OmeZarrReader(tmp_path / "bad.ome.zarr")


def test_an_image_root_and_its_raw_metadata(tmp_path: Path) -> None:
    group = _store(tmp_path / "one.ome.zarr")
    _image(group, [STACK], axes=_axes("czyx"), extra={"zstack": {"k": 1}})
    with OmeZarrReader(tmp_path / "one.ome.zarr") as reader:
        raw = reader.raw_metadata()
        assert raw["root"]["zstack"] == {"k": 1}
        assert list(raw["scenes"]) == ["/"]
        assert raw["scenes"]["/"]["zstack"] == {"k": 1}


def test_an_unreadable_chunk_names_its_plane(tmp_path: Path) -> None:
    group = _store(tmp_path / "broken.ome.zarr")
    group.create_array("0", data=STACK, chunks=(1, 1, 4, 5), compressors=None)
    group.attrs.update({"multiscales": [{"axes": _axes("czyx"), "datasets": [{"path": "0"}]}]})
    (tmp_path / "broken.ome.zarr" / "0" / "1.2.0.0").write_bytes(b"\x00short")
    with OmeZarrReader(tmp_path / "broken.ome.zarr") as reader:
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 1), STACK[1, 1])
        with pytest.raises(CorruptFileError) as caught:
            reader.read_plane(0, 0, 1, 2)
        assert str(caught.value).startswith("broken.ome.zarr: cannot read plane t=0 c=1 z=2: ")
        assert caught.value.detail == repr(caught.value.__cause__)
        assert caught.value.path == reader.path


def test_pickling_keeps_the_location_and_the_fsspec_options(tmp_path: Path) -> None:
    group = _store(tmp_path / "p.ome.zarr")
    _image(group, [STACK], axes=_axes("czyx"))
    limits = ReadLimits(max_plane_bytes=1 << 20)
    with OmeZarrReader(
        tmp_path / "p.ome.zarr", storage_options={"headers": {"A": "b"}}, limits=limits
    ) as reader:
        assert reader.storage_options == {"headers": {"A": "b"}}
        assert reader.location == str(tmp_path / "p.ome.zarr")
        clone = pickle.loads(pickle.dumps(reader))
        assert clone.storage_options == {"headers": {"A": "b"}}
        assert clone.limits == limits
        np.testing.assert_array_equal(clone.read_plane(0, 0, 1, 0), STACK[1, 0])
        clone.close()
    with OmeZarrReader(tmp_path / "p.ome.zarr") as reader:
        clone = pickle.loads(pickle.dumps(reader))
        assert clone.storage_options == {}
        assert clone.location == reader.location
        clone.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The folder ``tmp_path/www`` over HTTP on a free loopback port."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(www))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_over_http_is_named_by_its_last_segment(tmp_path: Path, served: str) -> None:
    group = _store(tmp_path / "www" / "web.ome.zarr")
    _image(group, [STACK], axes=_axes("czyx"))
    url = f"{served}/web.ome.zarr/"
    with OmeZarrReader(url) as reader:
        assert reader.path == Path("web.ome.zarr")
        assert reader.location == url
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 2), STACK[1, 2])
    with open_image(url) as reader:
        assert type(reader).__name__ == "OmeZarrReader"
    # Only slashes are stripped from the URL's end, not the name's own letters.
    _image(_store(tmp_path / "www" / "planeX"), [STACK], axes=_axes("czyx"))
    with OmeZarrReader(f"{served}/planeX/") as reader:
        assert reader.path == Path("planeX")
    with pytest.raises(FileNotFoundError):
        OmeZarrReader(f"{served}/nothing.ome.zarr")
    (tmp_path / "www" / "junk.ome.zarr").mkdir()
    (tmp_path / "www" / "junk.ome.zarr" / ".zgroup").write_text("{not json")
    with pytest.raises(CorruptFileError, match=r"^junk\.ome\.zarr: unreadable OME-Zarr: "):
        OmeZarrReader(f"{served}/junk.ome.zarr")


def test_a_zipped_store_is_sniffed_by_its_head_and_read(tmp_path: Path) -> None:
    import zipfile

    folder = tmp_path / "z.ome.zarr"
    _image(_store(folder), [STACK], axes=_axes("czyx"))
    packed = tmp_path / "z.ome.zarr.zip"
    with zipfile.ZipFile(packed, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
    head = packed.read_bytes()[:512]
    assert OmeZarrReader.sniff(head, packed)
    assert not OmeZarrReader.sniff(b"", packed)
    with OmeZarrReader(packed) as reader:
        assert reader.path.name == "z.ome.zarr.zip"
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 2), STACK[1, 2])


def test_arrays_of_other_stores_scenes_and_levels_never_share_dask_keys(tmp_path: Path) -> None:
    """Computed together, every array keeps its own chunks (dask merges equal names)."""
    import dask
    import dask.array as da

    for name, offset in (("a", 0), ("b", 100)):
        root = _store(tmp_path / f"{name}.ome.zarr")
        root.attrs.update({"bioformats2raw.layout": 3})
        for scene in range(2):
            plane = (np.arange(8 * 6, dtype="u1").reshape(8, 6) + offset + 10 * scene).astype("u1")
            _image(root.create_group(str(scene)), [plane, plane[::2, ::2]], axes=_axes("yx"))
    with OmeZarrReader(tmp_path / "a.ome.zarr") as a, OmeZarrReader(tmp_path / "b.ome.zarr") as b:
        stacked = da.stack([a.to_dask(0), a.to_dask(1), b.to_dask(0), b.to_dask(1)]).compute()
        assert [int(v) for v in stacked[:, 0, 0, 0, 0, 0]] == [0, 10, 100, 110]
        full, half = dask.compute(a.to_dask(1, 0), a.to_dask(1, 1))
        assert full.shape[3:] == (8, 6) and half.shape[3:] == (4, 3)
        np.testing.assert_array_equal(half[0, 0, 0], full[0, 0, 0, ::2, ::2])


def test_a_chunk_over_the_decode_budget_is_refused_by_name(tmp_path: Path) -> None:
    from zstack_analyzer.budget import DecodeBudget, decode_scope
    from zstack_analyzer.errors import LimitExceededError

    _image(_store(tmp_path / "big.ome.zarr"), [STACK], axes=_axes("czyx"))
    with OmeZarrReader(tmp_path / "big.ome.zarr") as reader:
        with (
            decode_scope(DecodeBudget(block_bytes=16)),
            pytest.raises(LimitExceededError) as caught,
        ):
            reader.read_plane(0, 0, 0, 0)
        assert "big.ome.zarr" in str(caught.value)
        assert caught.value.path == reader.path


def test_the_default_scene_is_the_first(tmp_path: Path) -> None:
    root = _store(tmp_path / "pair.ome.zarr")
    root.attrs.update({"bioformats2raw.layout": 3})
    small = np.full((4, 5), 1, dtype="u1")
    large = np.full((6, 8), 2, dtype="u1")
    _image(root.create_group("0"), [small], axes=_axes("yx"))
    _image(root.create_group("1"), [large, large[::2, ::2]], axes=_axes("yx"))
    with OmeZarrReader(tmp_path / "pair.ome.zarr") as reader:
        assert (reader.level_count(), reader.level_count(1)) == (1, 2)
        assert (reader.metadata().size_x, reader.metadata(1).size_x) == (5, 8)
        assert reader.to_dask().shape == (1, 1, 1, 4, 5)


def test_the_plane_size_limit_counts_the_stored_dtype(tmp_path: Path) -> None:
    """4 x 5 planes of uint16 are 40 bytes: under a 100-byte limit, over a 30-byte one."""
    from zstack_analyzer.errors import LimitExceededError

    _image(_store(tmp_path / "lim.ome.zarr"), [STACK], axes=_axes("czyx"))
    with OmeZarrReader(tmp_path / "lim.ome.zarr", limits=ReadLimits(max_plane_bytes=100)) as r:
        assert r.scenes()[0].shape == (1, 2, 3, 4, 5)
    with pytest.raises(LimitExceededError):
        OmeZarrReader(tmp_path / "lim.ome.zarr", limits=ReadLimits(max_plane_bytes=30))


def test_fsspec_options_reach_the_server(tmp_path: Path) -> None:
    """A server that answers only requests with the bearer header given in storage_options."""
    www = tmp_path / "www"
    _image(_store(www / "private.ome.zarr"), [STACK], axes=_axes("czyx"))

    class Guarded(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != "Bearer secret":
                self.send_error(401)
                return
            super().do_GET()

        def do_HEAD(self) -> None:
            if self.headers.get("Authorization") != "Bearer secret":
                self.send_error(401)
                return
            super().do_HEAD()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Guarded, directory=str(www))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/private.ome.zarr"
        options = {"headers": {"Authorization": "Bearer secret"}}
        with OmeZarrReader(url, storage_options=options) as reader:
            np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 2), STACK[1, 2])
        with pytest.raises((CorruptFileError, FileNotFoundError)):
            OmeZarrReader(url)
    finally:
        server.shutdown()
        server.server_close()
