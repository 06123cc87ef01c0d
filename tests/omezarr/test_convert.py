"""``convert``: OME-Zarr 0.4 and 0.5 written from our readers, validated and read back."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from tests.omezarr.helpers import (
    expected_level,
    first_multiscale,
    ngff_planes_from_loader,
    validate_image,
)
from tests.synthetic import encoded_stack
from tests.synthetic_czi import write_czi_scenes, write_czi_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer.errors import SceneNotFoundError
from zstack_analyzer.zarr.writer import convert

if TYPE_CHECKING:
    from pathlib import Path

CALIBRATED = {
    "PhysicalSizeX": 0.25,
    "PhysicalSizeY": 0.3,
    "PhysicalSizeZ": 1.5,
    "TimeIncrement": 2.0,
    "Channel": {"Name": ["DAPI", "GFP"]},
}


def _ome_zarr_py_node(path: Path) -> object:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    location = parse_url(str(path))
    assert location is not None
    nodes = list(Reader(location)())
    return nodes[0]


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_convert_validates_and_reads_back_identically(tmp_path: Path, ngff: str) -> None:
    stack = encoded_stack(2, 2, 3, 600, 700)
    source = write_ome_tiff(tmp_path / "cells.ome.tif", [stack], metadata=[CALIBRATED])
    out = tmp_path / "cells.ome.zarr"
    result = convert(source, out, ngff=ngff)  # type: ignore[arg-type]
    assert result.levels == [[(600, 700), (300, 350)]]

    group = zarr.open_group(str(out), mode="r")
    assert group.metadata.zarr_format == (2 if ngff == "0.4" else 3)
    multiscale = first_multiscale(validate_image(group, ngff), ngff)
    assert [a.name for a in multiscale.axes] == ["t", "c", "z", "y", "x"]
    assert [a.unit for a in multiscale.axes] == [
        "second",
        None,
        "micrometer",
        "micrometer",
        "micrometer",
    ]
    scales = [d.coordinateTransformations[0].scale for d in multiscale.datasets]
    assert scales[0] == [2.0, 1.0, 1.5, 0.3, 0.25]
    assert scales[1] == [2.0, 1.0, 1.5, 0.6, 0.5]

    expected = ngff_planes_from_loader(source)
    np.testing.assert_array_equal(expected, stack)
    np.testing.assert_array_equal(np.asarray(group["0"][:]), expected)
    np.testing.assert_array_equal(np.asarray(group["1"][:]), expected_level(expected, 1))
    assert group["0"].chunks == (1, 1, 1, 600, 700)

    node = _ome_zarr_py_node(out)
    data = node.data  # type: ignore[attr-defined]
    assert [d.shape for d in data] == [(2, 2, 3, 600, 700), (2, 2, 3, 300, 350)]
    np.testing.assert_array_equal(np.asarray(data[0][1, 0, 2]), expected[1, 0, 2])
    assert node.metadata["channel_names"] == ["DAPI", "GFP"]  # type: ignore[attr-defined]

    attrs = dict(group.attrs)
    ome = attrs if ngff == "0.4" else attrs["ome"]
    windows = [ch["window"] for ch in ome["omero"]["channels"]]
    assert len(windows) == 2
    from zstack_analyzer.render.colour import percentile_window

    for c, window in enumerate(windows):
        # Each channel's own window: 1-99 % of its own planes (first T, smallest level).
        # The channels' value ranges do not overlap here, so another channel's fails.
        own = expected_level(expected, 1)[0, c]
        assert own.min() <= window["start"] < window["end"] <= own.max()
        assert (window["start"], window["end"]) == pytest.approx(percentile_window(own))
        assert (window["min"], window["max"]) == (0, 65535)
    ours = attrs["zstack"]["metadata"]
    assert ours["file_format"] == "OME-TIFF"
    assert ours["physical_size"] == {"x_um": 0.25, "y_um": 0.3, "z_um": 1.5}
    assert "provenance" in ours


def test_uncalibrated_axes_get_scale_one_no_unit_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stack = encoded_stack(1, 1, 4, 40, 50)
    source = write_ome_tiff(tmp_path / "bare.ome.tif", [stack])
    with caplog.at_level(logging.WARNING, logger="zstack_analyzer.zarr.writer"):
        result = convert(source, tmp_path / "bare.ome.zarr")
    group = zarr.open_group(str(tmp_path / "bare.ome.zarr"), mode="r")
    multiscale = validate_image(group, "0.4").attributes.multiscales[0]
    assert [a.unit for a in multiscale.axes] == [None, None, None, None, None]
    assert multiscale.datasets[0].coordinateTransformations[0].scale == [1.0] * 5
    assert sorted(w.split(":")[0] for w in result.warnings) == ["x", "y", "z"]
    assert "states no voxel size" in caplog.text
    # One level only: 40 x 50 is below 512 px already.
    assert [d.path for d in multiscale.datasets] == ["0"]


def test_all_scenes_write_a_bioformats2raw_collection(tmp_path: Path) -> None:
    from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw

    stacks = [encoded_stack(1, 1, 2, 30, 40), encoded_stack(1, 2, 1, 20, 10)]
    source = write_ome_tiff(tmp_path / "two.ome.tif", stacks)
    out = tmp_path / "two.ome.zarr"
    result = convert(source, out, all_scenes=True)
    assert result.scenes == [0, 1]
    root = zarr.open_group(str(out), mode="r")
    BioFormats2Raw.from_zarr(root)
    assert dict(root["OME"].attrs)["series"] == ["0", "1"]
    assert (out / "OME" / "METADATA.ome.xml").read_text().lstrip().startswith("<?xml")
    for index, stack in enumerate(stacks):
        validate_image(root[str(index)], "0.4")
        np.testing.assert_array_equal(np.asarray(root[str(index)]["0"][:]), stack)


def test_czi_converts_and_opens_like_napari_would(tmp_path: Path) -> None:
    expected = write_czi_stack(
        tmp_path / "cells.czi",
        c=2,
        z=3,
        y=48,
        x=64,
        voxel_um=(0.1, 0.1, 0.4),
        channel_names=["DAPI", "FITC"],
    )
    out = tmp_path / "cells.ome.zarr"
    convert(tmp_path / "cells.czi", out, ngff="0.5")
    group = zarr.open_group(str(out), mode="r")
    multiscale = first_multiscale(validate_image(group, "0.5"), "0.5")
    np.testing.assert_allclose(
        multiscale.datasets[0].coordinateTransformations[0].scale, [1.0, 1.0, 0.4, 0.1, 0.1]
    )
    np.testing.assert_array_equal(np.asarray(group["0"][:]), expected)
    node = _ome_zarr_py_node(out)
    assert node.metadata["channel_names"] == ["DAPI", "FITC"]  # type: ignore[attr-defined]


def test_rgb_samples_become_channels(tmp_path: Path) -> None:
    import tifffile

    rgb = np.zeros((30, 40, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    rgb[5, 7] = (200, 100, 50)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    convert(tmp_path / "rgb.tif", tmp_path / "rgb.ome.zarr")
    group = zarr.open_group(str(tmp_path / "rgb.ome.zarr"), mode="r")
    validate_image(group, "0.4")
    data = np.asarray(group["0"][:])
    assert data.shape == (1, 3, 1, 30, 40)
    assert data[0, :, 0, 5, 7].tolist() == [200, 100, 50]
    assert data[0, :, 0, 0, 0].tolist() == [10, 20, 30]
    colours = [ch["color"] for ch in group.attrs["omero"]["channels"]]
    assert colours == ["FF0000", "00FF00", "0000FF"]


def test_large_tiled_plane_is_chunked_along_the_file_tiles(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 1, 4500, 600, dtype="uint8")
    source = write_ome_tiff(tmp_path / "tall.ome.tif", [stack], tile=(256, 256), compression="zlib")
    convert(source, tmp_path / "tall.ome.zarr")
    group = zarr.open_group(str(tmp_path / "tall.ome.zarr"), mode="r")
    validate_image(group, "0.4")
    assert group["0"].chunks == (1, 1, 1, 256, 256)
    assert [group[str(i)].shape[3:] for i in range(5)] == [
        (4500, 600),
        (2250, 300),
        (1125, 150),
        (563, 75),
        (282, 38),
    ]
    assert str(5) not in group
    np.testing.assert_array_equal(np.asarray(group["0"][:]), stack)
    # Chunk by chunk, level after level, gives exactly the whole-plane pyramid.
    for level in range(1, 5):
        np.testing.assert_array_equal(
            np.asarray(group[str(level)][:]), expected_level(stack, level)
        )


def test_convert_on_a_dask_distributed_cluster(tmp_path: Path) -> None:
    from distributed import LocalCluster

    stack = encoded_stack(1, 2, 3, 64, 80)
    source = write_ome_tiff(tmp_path / "c.ome.tif", [stack], metadata=[CALIBRATED])
    # No dashboard, and the scheduler's own HTTP server on a free port: with
    # dashboard_address=None alone it still takes dask's default 8787, and warns (an
    # error here) when another cluster has it.
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        ports = [
            sock.getsockname()[1]
            for sock in cluster.scheduler.http_server._sockets.values()  # type: ignore[attr-defined]
        ]
        assert ports and 8787 not in ports, ports
        convert(source, tmp_path / "c.ome.zarr", scheduler=cluster.scheduler_address)
    group = zarr.open_group(str(tmp_path / "c.ome.zarr"), mode="r")
    np.testing.assert_array_equal(np.asarray(group["0"][:]), stack)


def test_cli_convert_and_refusals(tmp_path: Path) -> None:
    from zstack_analyzer.cli import app

    stack = encoded_stack(1, 1, 2, 30, 40)
    source = write_ome_tiff(tmp_path / "s.ome.tif", [stack])
    out = tmp_path / "s.ome.zarr"
    runner = CliRunner()
    done = runner.invoke(app, ["convert", str(source), str(out), "--ngff", "0.5"])
    assert done.exit_code == 0, done.output
    assert "NGFF 0.5" in done.output
    assert "warning: x: the file states no voxel size" in done.output
    np.testing.assert_array_equal(np.asarray(zarr.open_group(str(out), mode="r")["0"][:]), stack)
    again = runner.invoke(app, ["convert", str(source), str(out)])
    assert again.exit_code == 2
    assert "already exists" in again.output
    bad_scene = runner.invoke(
        app, ["convert", str(source), str(tmp_path / "n.zarr"), "--scene", "3"]
    )
    assert bad_scene.exit_code == 2
    assert "scene 3 does not exist" in bad_scene.output
    with pytest.raises(SceneNotFoundError):
        convert(source, tmp_path / "m.zarr", scene=1)
    assert not (tmp_path / "m.zarr").exists()


def test_all_scenes_of_a_file_without_ome_xml_list_every_series(tmp_path: Path) -> None:
    """A CZI has no OME-XML of its own: the collection still lists each series in METADATA.ome.xml.

    Why it matters: napari-ome-zarr finds the series of a bioformats2raw collection
    through that file (``Image:N`` is group ``N``); without it nothing opens.
    """
    import ome_types
    from defusedxml import ElementTree

    write_czi_scenes(tmp_path / "two.czi", [(30, 40, (0, 0)), (20, 10, (100, 0))])
    out = tmp_path / "two.ome.zarr"
    convert(tmp_path / "two.czi", out, all_scenes=True)
    ome = ElementTree.fromstring((out / "OME" / "METADATA.ome.xml").read_bytes())
    ns = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
    pixels = [
        (image.get("ID"), p.get("SizeX"), p.get("SizeY"))
        for image in ome.findall("ome:Image", ns)
        for p in image.findall("ome:Pixels", ns)
    ]
    assert pixels == [("Image:0", "40", "30"), ("Image:1", "10", "20")]
    xml = (out / "OME" / "METADATA.ome.xml").read_text(encoding="utf-8")
    assert [i.name for i in ome_types.from_xml(xml, validate=True).images] == [
        "two.czi #1",
        "two.czi #2",
    ]
