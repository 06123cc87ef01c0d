"""The fallback reader's contract, file by file: what it claims, what it returns, what it refuses.

Small real inputs only: testdata-more files (Bio-Formats' own values in its MANIFEST) and
Bio-Formats' ``FakeReader`` (a ``.fake`` file's name sets sizes, pixel type, byte order,
interleaving). Every test uses the session's warm pool, except the one that checks a
reader's options reach a pool not yet started.
"""

from __future__ import annotations

import pickle
import shutil
from typing import TYPE_CHECKING

import numpy as np
import pytest

from zstack_analyzer.errors import (
    CorruptFileError,
    LimitExceededError,
    SceneNotFoundError,
    UnsupportedFormatError,
)
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers.bioformats.pool import PoolOptions, configure, pool_options
from zstack_analyzer.readers.bioformats.reader import BioformatsReader, _xml_1_0
from zstack_analyzer.storage.remote import RemoteObject, S3Location, S3Options

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.readers.bioformats.pool import WorkerPool

pytestmark = pytest.mark.xdist_group("bioformats")


def _fake(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"fake")
    return path


# ----------------------------------------------------------------------------- sniff
def test_sniff_claims_files_named_like_a_bioformats_format_only(tmp_path: Path) -> None:
    sniff = BioformatsReader.sniff
    assert sniff(b"x", tmp_path / "a.dm3")
    assert sniff(b"x", tmp_path / "A.DM3")  # any case
    assert not sniff(b"", tmp_path / "a.dm3")  # empty: nothing to read
    folder = tmp_path / "b.dm3"
    folder.mkdir()
    assert not sniff(b"x", folder)
    assert not sniff(b"x", tmp_path / "a.tif")  # a native reader's suffix
    assert not sniff(b"x", tmp_path / "a.unknownsuffix")
    assert not sniff(b"x", tmp_path / ("n" * 300 + ".dm3"))  # is_dir fails: name too long


def test_a_remote_object_is_refused_naming_it() -> None:
    remote = RemoteObject(S3Location("lab"), S3Options(), "images/ab.dm3", "ab.dm3")
    with pytest.raises(UnsupportedFormatError) as info:
        BioformatsReader(remote)
    assert str(info.value) == "ab.dm3: Bio-Formats reads local files only"
    assert info.value.path == remote.path


# ----------------------------------------------------------------------------- opening
def test_sizes_of_each_axis_and_series(bf_pool: WorkerPool, tmp_path: Path) -> None:
    path = _fake(
        tmp_path, "s&sizeX=5&sizeY=4&sizeZ=3&sizeC=2&sizeT=6&series=2&pixelType=int16.fake"
    )
    with BioformatsReader(path) as reader:
        assert [s.index for s in reader.scenes()] == [0, 1]
        assert reader.scene_info(1).shape == (6, 2, 3, 4, 5)
        assert reader.scene_info(0).dtype == "int16"
        raw = reader.raw_metadata()
        assert set(raw) == {"ome_xml", "reader", "format", "series", "used_files"}
        assert raw["reader"] == "FakeReader" == reader.reader_name
        assert raw["format"] == "Simulated data"
        assert raw["ome_xml"].startswith("<?xml") and "<Image" in raw["ome_xml"]
        assert len(raw["series"]) == 2 and raw["series"][1]["size_t"] == 6
        assert raw["used_files"] == [str(path)] == reader.used_files


def test_limits_and_options_are_kept_and_travel_with_a_pickle(
    bf_pool: WorkerPool, testdata_more: Path
) -> None:
    limits = ReadLimits(max_metadata_bytes=10**6)
    path = testdata_more / "gatan" / "test_STEM_image.dm3"
    with BioformatsReader(path, limits=limits) as reader:
        assert reader.limits == limits
        assert reader.options == pool_options()
        again = pickle.loads(pickle.dumps(reader))
        assert again.limits == limits
        assert again.options == reader.options
        assert again.scene_info(0).shape == reader.scene_info(0).shape
        again.close()
    # Options other than the running pool's travel too (a dask worker's pool starts with them).
    mine = PoolOptions(workers=5, heap_mb=pool_options().heap_mb + 1)
    with BioformatsReader(path, options=mine) as reader:
        again = pickle.loads(pickle.dumps(reader))
        assert again.options == mine
        again.close()


def test_a_reader_s_options_configure_a_pool_not_yet_started(
    bf_runtime: None, testdata_more: Path
) -> None:
    mine = PoolOptions(workers=1, heap_mb=200)
    previous = configure(PoolOptions(workers=1, heap_mb=199))  # no pool running now
    try:
        with BioformatsReader(testdata_more / "gatan" / "test_STEM_image.dm3", options=mine) as r:
            assert r.options is mine
            assert pool_options() == mine
    finally:
        configure(previous)


def test_the_metadata_limit_names_the_file(bf_pool: WorkerPool, testdata_more: Path) -> None:
    path = testdata_more / "gatan" / "test_STEM_image.dm3"
    with (
        BioformatsReader(path, limits=ReadLimits(max_metadata_bytes=100)) as reader,
        pytest.raises(LimitExceededError, match=r"^test_STEM_image\.dm3: OME-XML of "),
    ):
        reader.metadata(0)


def test_the_declared_size_counts_the_pixel_type(bf_pool: WorkerPool, tmp_path: Path) -> None:
    path = _fake(tmp_path, "p&sizeX=64&sizeY=64&pixelType=uint16.fake")  # 8 KiB a plane
    with BioformatsReader(path, limits=ReadLimits(max_plane_bytes=8192)) as reader:
        assert reader.scene_info(0).dtype == "uint16"
    with pytest.raises(LimitExceededError):
        BioformatsReader(path, limits=ReadLimits(max_plane_bytes=8191))


def test_a_truncated_raw_file_is_refused(
    bf_pool: WorkerPool, testdata_more: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "test_000_.SPE"
    cut.write_bytes((testdata_more / "spe" / "test_000_.SPE").read_bytes()[:-1])
    with pytest.raises(CorruptFileError, match="it is truncated"):
        BioformatsReader(cut)


# ----------------------------------------------------------------------------- metadata
def test_metadata_names_the_bioformats_reader_everywhere(
    bf_pool: WorkerPool, testdata_more: Path
) -> None:
    path = testdata_more / "gatan" / "test_STEM_image.dm3"
    with BioformatsReader(path) as reader:
        md = reader.metadata()
        assert md == reader.metadata(0)
        assert md.file_format == "Gatan Digital Micrograph (Bio-Formats)"
        assert md.provenance["file_format"] == "Bio-Formats GatanReader"
        assert md.provenance["sizes"] == "Bio-Formats GatanReader (series 0 sizes)"
        others = {k: v for k, v in md.provenance.items() if k not in ("file_format", "sizes")}
        assert others and all(v.startswith("Bio-Formats GatanReader (") for v in others.values())
        assert md.vendor_metadata["bioformats"] == {
            "reader": "GatanReader",
            "format": "Gatan Digital Micrograph",
            "used_files": ["test_STEM_image.dm3"],
        }
        assert md.warnings == []


def test_the_format_is_the_reader_s_that_read_it_not_the_name_s(
    bf_pool: WorkerPool, testdata_more: Path, tmp_path: Path
) -> None:
    """An FEI SEM TIFF is read by FEITiffReader; the first reader claiming .tif is InCell's.

    (Failed before the fix: the record said "InCell 1000/2000 (Bio-Formats)".)
    """
    with BioformatsReader(testdata_more / "fei-tiff" / "fei-sem-rbc.tif") as reader:
        assert reader.reader_name == "FEITiffReader"
        md = reader.metadata(0)
        assert md.file_format == "FEI TIFF (Bio-Formats)"
        assert md.provenance["file_format"] == "Bio-Formats FEITiffReader"
    # A name no reader claims: Bio-Formats finds the format by content, and that is the format.
    renamed = tmp_path / "stem.data"
    shutil.copyfile(testdata_more / "gatan" / "test_STEM_image.dm3", renamed)
    with BioformatsReader(renamed) as reader:
        assert reader.metadata(0).file_format == "Gatan Digital Micrograph (Bio-Formats)"


def test_control_characters_in_the_xml_are_dropped_with_a_warning(
    bf_pool: WorkerPool, testdata_more: Path
) -> None:
    with BioformatsReader(testdata_more / "nifti" / "anatomical.nii") as reader:
        _, dropped = _xml_1_0(reader.raw_metadata()["ome_xml"])
        if not dropped:
            pytest.fail("anatomical.nii's OME-XML no longer holds a forbidden reference")
        md = reader.metadata(0)
        assert md.warnings[-1] == (
            f"Bio-Formats' OME-XML held {dropped} character reference(s) XML 1.0 "
            "forbids (control characters copied from the file's text); dropped"
        )


def test_xml_1_0_keeps_what_xml_allows_and_counts_what_it_drops() -> None:
    # fmt: off
    kept = [
        "&#9;",
        "&#xA;",
        "&#13;",
        "&#32;",
        "&#x20;",
        "&#xD7FF;",
        "&#xE000;",
        "&#xFFFD;",
        "&#x10000;",
        "&#x10FFFF;",
        "&#65;",
        "&#x41;",
        "&#X41;",
    ]
    dropped = [
        "&#0;",
        "&#x8;",
        "&#11;",
        "&#xC;",
        "&#14;",
        "&#31;",
        "&#x1F;",
        "&#xD800;",
        "&#xDFFF;",
        "&#xFFFE;",
        "&#xFFFF;",
        "&#x110000;",
    ]
    for ref in kept:
        assert _xml_1_0(f"<a>{ref}</a>") == (f"<a>{ref}</a>", 0), ref
    for ref in dropped:
        assert _xml_1_0(f"<a>{ref}</a>") == ("<a></a>", 1), ref
    assert _xml_1_0("<a b='&#0;'>&#1;x&#2;</a>") == ("<a b=''>x</a>", 3)
    assert _xml_1_0("<a>&#x9;</a>") == ("<a>&#x9;</a>", 0)
    assert _xml_1_0("<a>&#x31;</a>") == ("<a>&#x31;</a>", 0)  # hex 31 is '1', not decimal 31


# ----------------------------------------------------------------------------- pixels
def test_the_lazy_array_has_the_file_s_dtype_and_name(bf_pool: WorkerPool, tmp_path: Path) -> None:
    path = _fake(tmp_path, "lazy&sizeX=6&sizeY=5&sizeZ=2&pixelType=uint16.fake")
    with BioformatsReader(path) as reader:
        lazy = reader.to_dask()
        assert lazy.dtype == np.uint16
        assert lazy.name.startswith("bioformats-lazy")
        np.testing.assert_array_equal(lazy[0, 0, 1].compute(), reader.read_plane(0, 0, 0, 1))


def test_region_grid_is_bioformats_tile_and_level_0_only(
    bf_pool: WorkerPool, tmp_path: Path
) -> None:
    path = _fake(tmp_path, "one&sizeX=1&sizeY=1.fake")
    with BioformatsReader(path) as reader:
        assert reader.region_grid() == (1, 1)
        with pytest.raises(SceneNotFoundError) as info:
            reader.region_grid(0, 1)
        assert str(info.value) == (
            "one&sizeX=1&sizeY=1.fake: level 1 does not exist; the fallback reads level 0 only"
        )
        assert info.value.path == path
        with pytest.raises(SceneNotFoundError):
            reader.to_dask(0, 1)
        with pytest.raises(SceneNotFoundError):
            reader.read_region(0, 0, 0, 0, (0, 1), (0, 1), level=1)


@pytest.mark.parametrize("samples", [1, 2, 3])
def test_empty_regions_have_the_right_shape_and_dtype(
    bf_pool: WorkerPool, tmp_path: Path, samples: int
) -> None:
    sizes = f"sizeC={samples}&rgb={samples}" if samples > 1 else "pixelType=uint16"
    path = _fake(tmp_path, f"e&sizeX=8&sizeY=6&{sizes}.fake")
    tail = (samples,) if samples > 1 else ()
    with BioformatsReader(path) as reader:
        dtype = reader.scene_info(0).dtype
        for rows, cols, shape in (
            ((2, 2), (0, 8), (0, 8)),
            ((4, 2), (0, 8), (0, 8)),
            ((0, 6), (3, 3), (6, 0)),
            ((0, 6), (5, 1), (6, 0)),
            ((7, 9), (0, 8), (0, 8)),
            ((2, 2), (3, 3), (0, 0)),
        ):
            region = reader.read_region(0, 0, 0, 0, rows, cols)
            assert region.shape == (*shape, *tail), (rows, cols)
            assert region.dtype == dtype


def test_interleaved_and_planar_rgb_decode_alike(bf_pool: WorkerPool, tmp_path: Path) -> None:
    sizes = "sizeX=7&sizeY=5&sizeC=3&rgb=3"
    planar = _fake(tmp_path, f"p&{sizes}&interleaved=false.fake")
    interleaved = _fake(tmp_path, f"p&{sizes}&interleaved=true.fake")
    with BioformatsReader(planar) as a, BioformatsReader(interleaved) as b:
        assert b.raw_metadata()["series"][0]["interleaved"] is True
        assert a.raw_metadata()["series"][0]["interleaved"] is False
        np.testing.assert_array_equal(a.read_plane(0, 0, 0, 0), b.read_plane(0, 0, 0, 0))
        np.testing.assert_array_equal(
            a.read_region(0, 0, 0, 0, (1, 4), (2, 6)), b.read_region(0, 0, 0, 0, (1, 4), (2, 6))
        )


def test_big_endian_pixels_come_back_native(bf_pool: WorkerPool, tmp_path: Path) -> None:
    big = _fake(tmp_path, "b&sizeX=9&sizeY=4&pixelType=uint16&little=false.fake")
    little = _fake(tmp_path, "b&sizeX=9&sizeY=4&pixelType=uint16&little=true.fake")
    with BioformatsReader(big) as a, BioformatsReader(little) as b:
        assert a.raw_metadata()["series"][0]["little_endian"] is False
        plane = a.read_plane(0, 0, 0, 0)
        assert plane.dtype == np.dtype("uint16") and plane.dtype.isnative
        np.testing.assert_array_equal(plane, b.read_plane(0, 0, 0, 0))


def test_a_file_deleted_after_opening_is_named_when_read(
    bf_pool: WorkerPool, tmp_path: Path
) -> None:
    path = _fake(tmp_path, "gone&sizeX=4&sizeY=4.fake")
    with BioformatsReader(path) as reader:
        path.unlink()
        with pytest.raises(FileNotFoundError, match=rf"^{path}: no such file"):
            reader.read_region(0, 0, 0, 0, (0, 2), (0, 2))


def test_scene_sizes_from_real_files(
    bf_pool: WorkerPool, testdata_more: Path, tmp_path: Path
) -> None:
    with BioformatsReader(testdata_more / "spe" / "test_000_.SPE") as reader:
        assert reader.scene_info(0).shape == (2, 1, 1, 32, 32)  # T = 2 (MANIFEST)
    copy = tmp_path / "toxo.dv"
    shutil.copyfile(testdata_more / "dv" / "toxo.dv", copy)
    with BioformatsReader(copy) as reader:
        assert reader.scene_info(0).shape == (1, 2, 17, 128, 128)  # C = 2 (MANIFEST)


def test_planes_and_regions_are_the_callers_to_change(
    bf_pool: WorkerPool, testdata_more: Path
) -> None:
    """Writable, as from every other reader (``tests/contract.py``).

    Regression: planes were views of the worker's answer bytes (read-only), so
    ``plane -= background`` raised "assignment destination is read-only" here only.
    """
    for name in ("gatan/test_STEM_image.dm3", "ics/testim.ics"):
        with BioformatsReader(testdata_more / name) as reader:
            plane = reader.read_plane(0, 0, 0, 0)
            region = reader.read_region(0, 0, 0, 0, (1, 3), (0, 2))
            assert plane.flags.writeable, name
            assert region.flags.writeable, name
            before = plane.copy()
            plane -= plane.min()  # what a user does with a background
            np.testing.assert_array_equal(plane, before - before.min())
            np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), before)  # not shared
