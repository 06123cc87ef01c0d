"""The foundation pieces: axes, limits, the metadata model, errors, registry and loader."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
import pytest
import tifffile

import zstack_analyzer
from tests.synthetic import encoded_stack
from zstack_analyzer import (
    CorruptFileError,
    ImageLoader,
    ImageLoadError,
    ImageMetadata,
    LimitExceededError,
    MetadataError,
    MissingDependencyError,
    PhysicalSize,
    ReadLimits,
    SceneNotFoundError,
    UnsupportedFormatError,
    ZstackError,
    open_image,
    supported_formats,
)
from zstack_analyzer.axes import canonical_shape, to_canonical
from zstack_analyzer.limits import check_declared_size

if TYPE_CHECKING:
    from pathlib import Path


def test_public_api_is_exactly_the_designed_one() -> None:
    expected = {
        "ImageLoader",
        "open_image",
        "supported_formats",
        "ImageMetadata",
        "ChannelInfo",
        "ObjectiveInfo",
        "MicroscopeInfo",
        "PhysicalSize",
        "SceneInfo",
        "ThumbnailGenerator",
        "ReadLimits",
        "ZstackError",
        "ImageLoadError",
        "UnsupportedFormatError",
        "CorruptFileError",
        "MetadataError",
        "LimitExceededError",
        "SceneNotFoundError",
        "MissingDependencyError",
    }
    assert set(zstack_analyzer.__all__) == expected
    for name in expected:
        assert getattr(zstack_analyzer, name) is not None


@pytest.mark.parametrize(
    ("exc", "bases"),
    [
        (ImageLoadError, (ZstackError,)),
        (UnsupportedFormatError, (ImageLoadError, ValueError)),
        (CorruptFileError, (ImageLoadError, ValueError)),
        (MetadataError, (ImageLoadError, ValueError)),
        (LimitExceededError, (ImageLoadError, ValueError)),
        (SceneNotFoundError, (ImageLoadError, IndexError)),
        (MissingDependencyError, (ImageLoadError, ImportError)),
    ],
)
def test_error_hierarchy_matches_design(exc: type[Exception], bases: tuple[type, ...]) -> None:
    assert issubclass(exc, bases)


def test_errors_carry_path_and_message() -> None:
    err = CorruptFileError("cells.czi: subblock 17 ends past end of file", path="/d/cells.czi")
    assert str(err) == "cells.czi: subblock 17 ends past end of file"
    assert err.path is not None
    assert err.path.name == "cells.czi"
    missing = MissingDependencyError("needs nd2", package="nd2")
    assert missing.detail == "pip install nd2"


def test_to_canonical_transposes_inserts_and_drops_vendor_axes() -> None:
    native = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)  # Z C M Y X
    out = to_canonical(native, "ZCMYX")
    assert out.shape == (1, 3, 2, 5, 6)
    np.testing.assert_array_equal(out[0, 1, 1], native[1, 1, 0])
    rgb = to_canonical(np.zeros((4, 5, 3)), "YXS")
    assert rgb.shape == (1, 1, 1, 4, 5, 3)
    lazy = to_canonical(da.zeros((3, 4, 5), chunks=1), "TYX")
    assert lazy.shape == (3, 1, 1, 4, 5)
    with pytest.raises(ValueError, match="do not match"):
        to_canonical(np.zeros((2, 2)), "ZYX")


def test_canonical_shape() -> None:
    assert canonical_shape({"Z": 5, "Y": 4, "X": 3}) == (1, 1, 5, 4, 3)
    assert canonical_shape({"Y": 4, "X": 3, "S": 3}) == (1, 1, 1, 4, 3, 3)


def test_declared_size_is_refused_before_allocation() -> None:
    limits = ReadLimits()
    tracemalloc.start()
    with pytest.raises(LimitExceededError, match="over the limit"):
        check_declared_size((1, 1, 1, 1_000_000, 1_000_000), "uint16", limits=limits, path="x.tif")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000
    with pytest.raises(LimitExceededError, match="negative"):
        check_declared_size((1, -1, 1), "uint8", limits=limits)
    assert check_declared_size((2, 3, 4, 5), "uint16", limits=limits) == 2 * 3 * 4 * 5 * 2


def test_metadata_memory_and_lazy_decision() -> None:
    md = ImageMetadata(
        filename="a.tif",
        file_format="TIFF",
        size_x=2048,
        size_y=2048,
        size_z=128,
        size_c=2,
        dtype="uint16",
        bit_depth=16,
        physical_size=PhysicalSize(x_um=0.1625, y_um=0.1625, z_um=0.5),
    )
    assert md.get_memory_size_mb() == pytest.approx(2048 * 2048 * 128 * 2 * 2 / 1024**2)
    assert md.should_use_lazy_loading()
    assert not md.should_use_lazy_loading(threshold_mb=4096)
    assert md.get_voxel_size_micrometers() == (0.1625, 0.1625, 0.5)
    unknown = ImageMetadata(
        filename="b", file_format="TIFF", size_x=1, size_y=1, dtype="uint8", bit_depth=8
    )
    assert unknown.get_voxel_size_micrometers() == (None, None, None)
    rgb = md.model_copy(update={"samples_per_pixel": 3, "size_z": 1, "size_c": 1})
    assert rgb.shape == (1, 1, 1, 2048, 2048, 3)


def test_missing_paths_and_unknown_content(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"test\.xyz"):
        open_image(tmp_path / "test.xyz")
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "absent.czi")
    with pytest.raises(UnsupportedFormatError, match="directory"):
        open_image(tmp_path)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        open_image(empty)
    text = tmp_path / "notes.tif"
    text.write_bytes(b"this is not an image at all\n" * 100)
    with pytest.raises(UnsupportedFormatError, match=r"notes\.tif"):
        open_image(text)


def test_supported_formats_lists_every_reader_with_availability() -> None:
    table = {f.name: f for f in supported_formats()}
    assert {"TIFF", "OME-TIFF", "ImageJ TIFF", "STK", "CZI", "ND2", "LIF"} <= set(table)
    assert ".czi" in table["CZI"].suffixes
    assert table["CZI"].required_packages == ("pylibCZIrw",)
    assert all(f.available for f in table.values())  # the dev install has every reader


@pytest.fixture
def ome_stack(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = encoded_stack(2, 3, 4, 16, 20)  # T C Z Y X
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        photometric="minisblack",
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.2,
            "PhysicalSizeY": 0.2,
            "PhysicalSizeZ": 1.5,
        },
    )
    return path, data


def test_loader_returns_czyx_of_the_timepoint_eager_and_lazy(
    ome_stack: tuple[Path, np.ndarray],
) -> None:
    path, data = ome_stack
    loader = ImageLoader()

    async def main() -> None:
        md = await loader.get_metadata(path)
        assert (md.size_t, md.size_c, md.size_z, md.size_y, md.size_x) == (2, 3, 4, 16, 20)
        eager, md2 = await loader.load_image(path, timepoint=1)
        assert isinstance(eager, np.ndarray)
        np.testing.assert_array_equal(eager, data[1])
        assert md2.physical_size.z_um == pytest.approx(1.5)
        lazy, _ = await loader.load_image(path, lazy=True)
        assert isinstance(lazy, da.Array)
        np.testing.assert_array_equal(lazy.compute(), data[0])
        del lazy

    # One loader serves several event loops, one after the other.
    asyncio.run(main())
    asyncio.run(main())


def test_loader_errors(ome_stack: tuple[Path, np.ndarray]) -> None:
    path, _ = ome_stack
    loader = ImageLoader(limits=ReadLimits(max_eager_bytes=1000))
    with pytest.raises(SceneNotFoundError):
        asyncio.run(loader.load_image(path, timepoint=2))
    with pytest.raises(SceneNotFoundError):
        asyncio.run(loader.load_image(path, position=1))
    with pytest.raises(LimitExceededError, match="lazy=True"):
        asyncio.run(loader.load_image(path, lazy=False))
    lazy, _ = asyncio.run(loader.load_image(path, lazy=True))
    assert lazy.shape == (3, 4, 16, 20)
    with pytest.raises(UnsupportedFormatError):
        asyncio.run(loader.get_metadata("test.xyz"))


def test_open_image_is_a_context_manager_that_closes(ome_stack: tuple[Path, np.ndarray]) -> None:
    path, data = ome_stack
    with open_image(path) as image:
        assert len(image.scenes()) == 1
        np.testing.assert_array_equal(image.read_plane(0, 1, 2, 3), data[1, 2, 3])
    assert image.closed


def test_image_metadata_for_scene_copies_the_scene_and_takes_overrides() -> None:
    from zstack_analyzer.metadata import SceneInfo

    first = SceneInfo(index=0, name="a", size_x=2, size_y=2, dtype="uint8")
    second = SceneInfo(
        index=1,
        name="pos 2",
        size_t=3,
        size_c=2,
        size_z=5,
        size_y=7,
        size_x=11,
        samples_per_pixel=3,
        dtype="uint16",
        extra_dims={"V": 4},
    )
    scenes = [first, second]
    md = ImageMetadata.for_scene(
        second,
        filename="b.nd2",
        file_format="ND2",
        scenes=scenes,
        physical_size=PhysicalSize(x_um=0.5),
    )
    assert (md.filename, md.file_format, md.scene_index, md.scene_name) == (
        "b.nd2",
        "ND2",
        1,
        "pos 2",
    )
    assert md.shape == (3, 2, 5, 7, 11, 3)
    assert (md.dtype, md.bit_depth, md.extra_dims) == ("uint16", 16, {"V": 4})
    assert md.scenes == scenes and md.scenes is not scenes
    assert md.physical_size.x_um == 0.5
    md.extra_dims["W"] = 2  # the copy is the metadata's own
    assert second.extra_dims == {"V": 4}
    # Explicit fields win over the scene's.
    other = ImageMetadata.for_scene(
        second, filename="b", file_format="X", scenes=[], scene_name=None, bit_depth=12
    )
    assert (other.scene_name, other.bit_depth) == (None, 12)


def test_vendor_json_safe_and_capped_vendor() -> None:
    import datetime
    import json

    from zstack_analyzer.vendor import TRUNCATION_MARK, capped_vendor, json_safe

    value = {
        "k\x00": np.int64(3),
        "f": [np.float32(0.5), float("nan"), float("-inf")],
        "b": b"a\x00b",
        "d": datetime.date(2020, 1, 2),
        "arr": np.arange(4, dtype=np.uint8),
        "flag": np.bool_(True),
    }
    assert json_safe(value) == {
        "k": 3,
        "f": [0.5, None, None],
        "b": "ab",
        "d": "2020-01-02",
        "arr": [0, 1, 2, 3],
        "flag": True,
    }
    capped = json_safe(
        {"s": "x" * 10, "l": list(range(10)), "a": np.zeros(10), "deep": [[[1]]]},
        max_string=4,
        max_items=4,
        max_depth=2,
    )
    assert capped == {
        "s": "xxxx" + TRUNCATION_MARK,
        "l": [0, 1, 2, 3],
        "a": "<array shape=[10] dtype=float64>",
        "deep": [[None]],
    }
    small = {"a": 1, "big": "y" * 300, "bigger": "z" * 300}
    assert capped_vendor(small) == small
    out = capped_vendor(small, max_bytes=400, drop_first=("big", "bigger"))
    assert out == {"a": 1, "bigger": "z" * 300, "truncated": True}
    assert len(json.dumps(out)) <= 400
    # The budget holds whatever drop_first lists: the remaining keys go too, largest first.
    assert capped_vendor(small, max_bytes=10, drop_first=("big", "bigger")) == {"truncated": True}
    assert capped_vendor(small, max_bytes=350) == {"a": 1, "big": "y" * 300, "truncated": True}
