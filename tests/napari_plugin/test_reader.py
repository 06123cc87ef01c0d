"""The npe2 reader in a real napari viewer: ``viewer.open(path, plugin="zstack-analyzer")``.

On files of the shared corpus (a multi-channel time-lapse CZI, a two-scene CZI, a
multi-channel LIF, an 8-bit RGB TIFF) and a pyramidal OME-TIFF written here:
layer names, colours, shapes, scales and pixels are the library's.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml

from tests.synthetic_tiff import write_ome_pyramid

if TYPE_CHECKING:
    from collections.abc import Callable

PLUGIN = "zstack-analyzer"
MANIFEST = Path(__file__).resolve().parents[2] / "src/zstack_analyzer/napari/napari.yaml"


def _library(path: Path, scene: int = 0) -> tuple[Any, Any, list[np.ndarray]]:
    from zstack_analyzer import open_image

    with open_image(path) as reader:
        metadata = reader.metadata(scene)
        levels = [
            np.asarray(reader.to_dask(scene, level).compute())
            for level in range(reader.level_count(scene))
        ]
        return reader.scenes()[scene], metadata, levels


def _expected_scale(metadata: Any) -> list[float]:
    size = metadata.physical_size
    t = metadata.time_interval_s if metadata.time_interval_s else 1.0
    return [t, abs(size.z_um or 1.0), size.y_um or 1.0, size.x_um or 1.0]


def test_the_manifest_claims_every_suffix_the_library_reads() -> None:
    from zstack_analyzer.registry import known_suffixes

    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["name"] == PLUGIN
    (reader,) = manifest["contributions"]["readers"]
    patterns = {p.removeprefix("*") for p in reader["filename_patterns"]}
    assert patterns == set(known_suffixes())
    points = importlib.metadata.entry_points(group="napari.manifest")
    assert any(ep.name == PLUGIN for ep in points), "pip install -e . registers the manifest"


def test_get_reader_declines_what_the_library_does_not_read(tmp_path: Path) -> None:
    from zstack_analyzer.napari.reader import get_reader

    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    assert get_reader(str(text)) is None
    assert get_reader(str(tmp_path / "missing.czi")) is None


@pytest.mark.realdata
def test_a_multichannel_time_lapse_czi(
    make_napari_viewer: Callable[..., Any], testdata: Path
) -> None:
    path = testdata / "czi/CD_s_1_t_3_c_2_z_5.czi"
    info, metadata, (pixels,) = _library(path)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == [ch.name for ch in metadata.channels]
    assert len(layers) == info.size_c == 2
    for c, layer in enumerate(layers):
        assert layer.data.shape == (3, 5, 170, 240)
        assert not layer.multiscale
        assert list(layer.scale) == pytest.approx(_expected_scale(metadata))
        assert [str(u) for u in layer.units] == ["second", "micrometer", "micrometer", "micrometer"]
        np.testing.assert_array_equal(np.asarray(layer.data), pixels[:, c])
        lo, hi = layer.contrast_limits
        assert pixels[:, c].min() <= lo < hi <= pixels[:, c].max()
    # The file's channel colours (LED555 orange, LED470 green), not napari's grey.
    from zstack_analyzer.napari.layers import hex_colors
    from zstack_analyzer.zarr.ngff import scene_layout

    colours = hex_colors(metadata, scene_layout(metadata))
    for layer, colour in zip(layers, colours, strict=True):
        rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        assert list(layer.colormap.colors[-1][:3]) == pytest.approx(rgb, abs=1e-3)
    assert {tuple(layer.colormap.colors[-1][:3]) for layer in layers} != {(1.0, 1.0, 1.0)}


@pytest.mark.realdata
def test_every_scene_of_a_two_scene_czi(
    make_napari_viewer: Callable[..., Any], testdata: Path
) -> None:
    path = testdata / "czi/xyz__multiple_images.czi"
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 2  # one channel in each of two scenes
    assert [layer.visible for layer in layers] == [True, False]
    for scene, layer in enumerate(layers):
        info, metadata, (pixels,) = _library(path, scene)
        assert layer.name.startswith(f"xyz__multiple_images.czi #{scene + 1}: ")
        assert layer.metadata["scene"] == scene
        assert layer.data.shape == (info.size_t, info.size_z, info.size_y, info.size_x)
        assert list(layer.scale) == pytest.approx(_expected_scale(metadata))
        # T is uncalibrated here (one timepoint): scale 1, no invented unit.
        assert str(layer.units[0]) == "pixel"
        np.testing.assert_array_equal(np.asarray(layer.data), pixels[:, 0])


@pytest.mark.realdata
def test_a_multichannel_lif(make_napari_viewer: Callable[..., Any], testdata: Path) -> None:
    path = testdata / "lif/PR2729_frameOrderCombinedScanTypes.lif"
    info, metadata, (pixels,) = _library(path)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == info.size_c == 2
    names = [ch.name or f"C{ch.index}" for ch in metadata.channels] or ["C0", "C1"]
    assert [layer.name for layer in layers] == names
    for c, layer in enumerate(layers):
        assert layer.data.shape == (info.size_t, info.size_z, info.size_y, info.size_x)
        assert list(layer.scale) == pytest.approx(_expected_scale(metadata))
        np.testing.assert_array_equal(np.asarray(layer.data), pixels[:, c])


@pytest.mark.realdata
def test_an_8_bit_rgb_tiff_is_one_rgb_layer(
    make_napari_viewer: Callable[..., Any], testdata: Path
) -> None:
    path = testdata / "tiff/NikonTIF.tif"
    _info, _metadata, (pixels,) = _library(path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.rgb
    assert layer.data.shape == (1, 1, 731, 805, 3)
    np.testing.assert_array_equal(np.asarray(layer.data), pixels[:, 0])


def test_a_pyramidal_ome_tiff_is_a_multiscale_layer(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    stack = rng.integers(100, 4000, size=(1, 2, 3, 256, 192), dtype=np.uint16)
    path = write_ome_pyramid(tmp_path / "pyramid.ome.tif", stack, levels=3)
    _info, metadata, levels = _library(path)
    assert len(levels) == 3
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["C0", "C1"]
    for c, layer in enumerate(layers):
        assert layer.multiscale
        assert [tuple(level.shape) for level in layer.data] == [
            (1, 3, 256, 192),
            (1, 3, 128, 96),
            (1, 3, 64, 48),
        ]
        for level, expected in zip(layer.data, levels, strict=True):
            np.testing.assert_array_equal(np.asarray(level), expected[:, c])
        # Uncalibrated file: scale 1 on every axis, unit pixel, nothing invented.
        assert list(layer.scale) == [1.0, 1.0, 1.0, 1.0]
        # The window is the 1-99 % of the smallest level's planes.
        from zstack_analyzer.render.colour import percentile_window

        assert tuple(layer.contrast_limits) == pytest.approx(percentile_window(levels[-1][0, c, :]))
    assert metadata.physical_size.x_um is None


@pytest.mark.realdata
def test_16_bit_rgb_samples_become_channels(
    make_napari_viewer: Callable[..., Any], testdata: Path
) -> None:
    path = testdata / "imagej/hela-cells.tif"
    _info, _metadata, (pixels,) = _library(path)
    assert pixels.shape[-1] == 3 and pixels.dtype == np.uint16
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["C0 R", "C0 G", "C0 B"]
    for s, layer in enumerate(layers):
        assert not layer.rgb
        assert layer.data.shape == (1, 1, 512, 672)
        np.testing.assert_array_equal(np.asarray(layer.data), pixels[:, 0, ..., s])
        colour = [0.0, 0.0, 0.0]
        colour[s] = 1.0
        assert list(layer.colormap.colors[-1][:3]) == colour


def test_the_server_widget_docks_from_the_plugins_menu(
    make_napari_viewer: Callable[..., Any],
) -> None:
    from zstack_analyzer.napari.widget import ServerWidget

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Open from a zstack server")
    assert isinstance(widget, ServerWidget)
    widget.viewer.add_image(
        np.zeros((2, 2), dtype=np.uint8)
    )  # napari hands it a proxy of this viewer
    assert len(viewer.layers) == 1
    assert widget.open_selected() == []
    assert widget.status.value == "Search, then choose an image"
