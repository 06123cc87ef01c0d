"""The bioio plugin (zstack_analyzer.bioio) under bioio's own BioImage and plugin discovery.

Expected values come from the corpus's EXPECTED.json (reference readers), never from
the plugin; pixels are also compared with our library's own read of the same plane.
Headers for every scene, one plane per file: the whole corpus runs in seconds.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import entry_points, requires
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile
from bioio import BioImage, plugin_feasibility_report
from bioio.plugins import get_plugins
from bioio_base.exceptions import UnsupportedFileFormatError
from ome_types import OME, from_xml

import zstack_analyzer.bioio as zbioio
from tests.conftest import expected_entries
from tests.synthetic_lif import write_lif_elements
from tests.synthetic_tiff import write_ome_tiff, write_rgb
from zstack_analyzer import CorruptFileError, LimitExceededError, ReadLimits, open_image
from zstack_analyzer.metadata import ImageMetadata

if TYPE_CHECKING:
    from pathlib import Path

ENTRIES = expected_entries()
OK_ENTRIES = [e for e in ENTRIES if e["expect"] == "ok"]
UNSUPPORTED_ENTRIES = [e for e in ENTRIES if e["expect"] == "unsupported"]

#: The cases the issue names. Measured with bioio 3.6.0 + bioio-lif 2.0.1 + bioio-czi 3.0.1:
#: bioio-lif cannot read the XZ scan's pixels and makes an environment log scene 0 (then
#: fails to read it); bioio-czi reads this two-scene CZI right, as we do.
TWO_SCENE_CZI = "czi/xyz__multiple_images.czi"
LIF_XZ = "lif/testdata_2channel_xz.lif"


def _sig9(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.9g}")


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["path"] for e in entries]


def _expected_dims(scene: dict[str, Any]) -> dict[str, int]:
    sizes = dict(scene["sizes"])
    if "S" in sizes and sizes["S"] == 1:
        del sizes["S"]
    return sizes


def _expected_channel_names(scene: dict[str, Any], index: int) -> list[str]:
    return [
        name if name is not None else f"Channel:{index}:{c}"
        for c, name in enumerate(scene["channel_names"])
    ]


# ------------------------------------------------------------------------- corpus
@pytest.mark.realdata
@pytest.mark.parametrize("entry", OK_ENTRIES, ids=_ids(OK_ENTRIES))
def test_every_corpus_file_through_bioimage(entry: dict[str, Any], testdata: Path) -> None:
    path = testdata / entry["path"]
    img = BioImage(path, reader=zbioio.Reader)
    assert isinstance(img.reader, zbioio.Reader)
    with open_image(path) as reader:  # scene ids follow our reader's names (the plugin's rule)
        names = [info.name for info in reader.scenes()]
    assert len(names) == entry["n_scenes"]
    if all(names) and len(set(names)) == len(names):
        assert img.scenes == tuple(names)
    else:
        assert img.scenes == tuple(f"Image:{i}" for i in range(entry["n_scenes"]))
    for index, scene in enumerate(entry["scenes"]):
        img.set_scene(index)
        sizes = _expected_dims(scene)
        order = "TCZYXS" if "S" in sizes else "TCZYX"
        assert img.dims.order == order
        assert img.shape == tuple(sizes[d] for d in order)
        assert img.dtype == np.dtype(scene["dtype"])
        voxel = scene["voxel_size_um"]
        pps = img.physical_pixel_sizes
        assert (_sig9(pps.Z), _sig9(pps.Y), _sig9(pps.X)) == (voxel["z"], voxel["y"], voxel["x"])
        assert img.channel_names == _expected_channel_names(scene, index)
        assert isinstance(img.metadata, ImageMetadata)
        assert img.metadata.scene_index == index

    # One plane of scene 0, read through bioio's indexed path, against the reference
    # checksum and against our library's own read.
    img.set_scene(0)
    plane_order = "YXS" if img.dims.order.endswith("S") else "YX"
    plane = img.get_image_data(plane_order, T=0, C=0, Z=0)
    digest = hashlib.sha256(np.ascontiguousarray(plane).tobytes()).hexdigest()
    assert digest == entry["scene0_pixels"]["plane_t0_c0_z0_sha256"]
    with open_image(path) as reader:
        np.testing.assert_array_equal(plane, reader.read_plane(0, 0, 0, 0))

    # The OME model covers every scene and is valid against the OME schema.
    ome = img.ome_metadata
    assert isinstance(ome, OME)
    assert len(ome.images) == entry["n_scenes"]
    for image, scene in zip(ome.images, entry["scenes"], strict=True):
        px = image.pixels
        sizes = scene["sizes"]
        assert (px.size_t, px.size_z, px.size_y, px.size_x) == (
            sizes["T"],
            sizes["Z"],
            sizes["Y"],
            sizes["X"],
        )
        assert px.size_c == sizes["C"] * sizes.get("S", 1)
        assert [ch.name for ch in px.channels] == scene["channel_names"]
        voxel = scene["voxel_size_um"]
        assert _sig9(px.physical_size_x) == voxel["x"]
        z = voxel["z"]
        assert _sig9(px.physical_size_z) == (abs(z) if z else None)
    from_xml(ome.to_xml(), validate=True)


#: Beside the corpus's unsupported files (none since the Bio-Formats fallback reads the last
#: one), a file no reader claims, so refusal is always checked: a notebook export.
NOT_AN_IMAGE = {"path": "<written>/analysis.ipynb", "bytes": b'{"cells": [], "nbformat": 4}'}


@pytest.mark.realdata
@pytest.mark.parametrize(
    "entry", [*UNSUPPORTED_ENTRIES, NOT_AN_IMAGE], ids=_ids([*UNSUPPORTED_ENTRIES, NOT_AN_IMAGE])
)
def test_unsupported_corpus_files_are_not_claimed(
    entry: dict[str, Any], testdata: Path, tmp_path: Path
) -> None:
    if "bytes" in entry:
        path = tmp_path / entry["path"].rsplit("/", 1)[-1]
        path.write_bytes(entry["bytes"])
    else:
        path = testdata / entry["path"]
    assert not zbioio.Reader.is_supported_image(path)
    with pytest.raises(UnsupportedFileFormatError):
        BioImage(path, reader=zbioio.Reader)


# ---------------------------------------------------- files bioio itself gets wrong
@pytest.mark.realdata
def test_two_scene_czi_second_scene(testdata: Path) -> None:
    """xyz__multiple_images.czi (S=2): each scene selectable by id and index, its own pixels."""
    path = testdata / TWO_SCENE_CZI
    img = BioImage(path, reader=zbioio.Reader)
    assert img.scenes == ("Image:0", "Image:1")
    first = img.get_image_data("ZYX", T=0, C=0)
    img.set_scene("Image:1")
    assert img.current_scene_index == 1
    assert img.dims.order == "TCZYX"
    assert img.shape == (1, 1, 2, 251, 251)
    second = img.get_image_data("ZYX", T=0, C=0)
    with open_image(path) as reader:
        np.testing.assert_array_equal(second, np.asarray(reader.to_dask(1)[0, 0]))
        np.testing.assert_array_equal(first, np.asarray(reader.to_dask(0)[0, 0]))
    assert not np.array_equal(first, second)
    assert img.metadata.scene_index == 1


@pytest.mark.realdata
def test_lif_xz_line_scan(testdata: Path) -> None:
    """testdata_2channel_xz.lif: bioio-lif cannot read it; an XZ scan is Y=1, lines along Z."""
    path = testdata / LIF_XZ
    img = BioImage(path, reader=zbioio.Reader)
    assert img.scenes == ("xzt", "xzy", "xz")
    assert img.shape == (20, 2, 128, 1, 128)
    assert img.physical_pixel_sizes.Y is None
    frame = img.get_image_data("ZX", T=3, C=1, Y=0)
    with open_image(path) as reader:
        np.testing.assert_array_equal(frame, np.asarray(reader.to_dask(0)[3, 1, :, 0, :]))
    assert img.reader._xarray_data is None  # one frame read, not the whole scene
    assert img.standard_metadata.timelapse_interval == img.time_interval
    assert img.time_interval is not None
    img.set_scene("xz")
    assert img.shape == (1, 2, 512, 1, 512)
    assert img.get_image_dask_data("CZX", T=0, Y=0).shape == (2, 512, 512)


def test_lif_whose_first_element_is_an_environment_log(tmp_path: Path) -> None:
    """A LIF starting with an environment log (T only, no X): scene 0 is the image."""
    log = np.arange(2 * 30, dtype=np.uint16).reshape(2, 30)  # C, T
    stack = np.arange(3 * 2 * 8 * 10, dtype=np.uint16).reshape(3, 2, 8, 10)  # Z, C, Y, X
    path = write_lif_elements(
        tmp_path / "with_log.lif", [("EnvironmentalGraph", log, "CT"), ("cells", stack, "ZCYX")]
    )
    img = BioImage(path, reader=zbioio.Reader)
    assert img.scenes == ("cells",)
    assert img.shape == (1, 2, 3, 8, 10)
    assert img.physical_pixel_sizes == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(img.data[0], stack.transpose(1, 0, 2, 3))


# ------------------------------------------------------------------- discovery
def test_plugin_discovery_lists_our_reader(tmp_path: Path) -> None:
    stack = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(1, 2, 3, 4, 5)
    path = write_ome_tiff(tmp_path / "found.ome.tif", [stack])
    # bioio reads the plugin's bioio-base requirement by the entry point's name and refuses
    # every plugin when it is listed more than once (e.g. `dev` including `[bioio]`).
    requirements = [r for r in requires("zstack-analyzer") or [] if r.startswith("bioio-base")]
    assert len(requirements) == 1, requirements
    (entry,) = [ep for ep in entry_points(group="bioio.readers") if ep.name == "zstack-analyzer"]
    assert entry.load() is zbioio
    plugins = get_plugins(use_cache=False)
    for ext in (".czi", ".lif", ".nd2", ".ome.tif", ".tif", ".dcm"):
        assert "zstack-analyzer" in [p.entrypoint.name for p in plugins[ext]], ext
    report = plugin_feasibility_report(path)
    assert report["zstack-analyzer"].supported
    assert report["zstack-analyzer"].error is None
    img = BioImage(path)  # no reader= : found by bioio's discovery
    assert isinstance(img.reader, zbioio.Reader)
    np.testing.assert_array_equal(img.data, stack)


def test_not_ours_and_ours_but_broken(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not an image at all" * 10)
    assert not zbioio.Reader.is_supported_image(junk)
    with pytest.raises(UnsupportedFileFormatError):
        BioImage(junk, reader=zbioio.Reader)
    stack = np.ones((1, 1, 2, 64, 64), dtype=np.uint16)
    good = write_ome_tiff(tmp_path / "cut.ome.tif", [stack])
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    assert zbioio.Reader.is_supported_image(good)  # ours: it is an OME-TIFF
    with pytest.raises(CorruptFileError):
        zbioio.Reader(good).data  # noqa: B018  (reading is the test)


# ------------------------------------------------------------ synthetic details
def test_rgb_samples_are_bioio_s(tmp_path: Path) -> None:
    rgb = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    img = BioImage(write_rgb(tmp_path / "rgb.tif", rgb), reader=zbioio.Reader)
    assert img.dims.order == "TCZYXS"
    assert img.shape == (1, 1, 1, 6, 7, 3)
    np.testing.assert_array_equal(img.get_image_data("YXS"), rgb)
    ome = img.ome_metadata
    assert ome.images[0].pixels.size_c == 3
    assert ome.images[0].pixels.channels[0].samples_per_pixel == 3


def test_whole_array_lists_and_pyramid_levels(tmp_path: Path) -> None:
    stack = np.random.default_rng(1).integers(0, 4000, (2, 3, 2, 64, 48), dtype=np.uint16)
    path = tmp_path / "pyr.ome.tif"
    options: dict[str, Any] = {"tile": (32, 32), "photometric": "minisblack"}
    calibration = {"axes": "TCZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(stack, subifds=1, metadata=calibration, **options)
        tif.write(stack[..., ::2, ::2], subfiletype=1, metadata=None, **options)
    with zbioio.Reader(path) as reader:
        np.testing.assert_array_equal(reader.data, stack)
        np.testing.assert_array_equal(reader.dask_data.compute(), stack)
        picked = reader.get_image_data("CZYX", T=1, C=[0, 2])
        np.testing.assert_array_equal(picked, stack[1, [0, 2]])
        assert reader.resolution_levels == (0, 1)
        assert reader.physical_pixel_sizes == (None, 0.25, 0.25)
        reader.set_resolution_level(1)
        np.testing.assert_array_equal(reader.dask_data.compute(), stack[..., ::2, ::2])
        assert reader.physical_pixel_sizes == (None, 0.5, 0.5)


def test_eager_load_over_the_limit_is_refused(tmp_path: Path) -> None:
    stack = np.zeros((1, 1, 4, 64, 64), dtype=np.uint16)
    path = write_ome_tiff(tmp_path / "big.ome.tif", [stack])
    reader = zbioio.Reader(path, limits=ReadLimits(max_eager_bytes=1024))
    assert reader.dask_data.shape == stack.shape  # lazy still works
    with pytest.raises(LimitExceededError):
        reader.data  # noqa: B018
    reader.close()
