"""CZI reader: synthetic files written with pylibCZIrw, checked against their exact pixels."""

from __future__ import annotations

import json
import os
import pickle
import struct
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.contract import assert_reader_contract
from tests.needs import unavailable
from tests.synthetic_czi import (
    replace_czi_xml,
    rich_czi_xml,
    write_czi_extra_dim,
    write_czi_mosaic,
    write_czi_rgb,
    write_czi_scenes,
    write_czi_stack,
)
from zstack_analyzer import (
    CorruptFileError,
    LimitExceededError,
    MetadataError,
    SceneNotFoundError,
    open_image,
)
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers._czi_xml import parse_czi_xml
from zstack_analyzer.readers.czi import CziReader
from zstack_analyzer.registry import detect_reader

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _pylibczirw() -> None:
    """pylibCZIrw is a declared dependency: its absence fails CI instead of hiding 30 tests."""
    import importlib.util

    if importlib.util.find_spec("pylibCZIrw") is None:
        unavailable("pylibCZIrw is not installed (pip install -e '.[czi]')")


# ---------------------------------------------------------------- file surgery
def _header(data: bytes) -> tuple[int, int]:
    """(directory position, metadata position) from a CZI file header."""
    return struct.unpack_from("<q", data, 84)[0], struct.unpack_from("<q", data, 92)[0]


def _first_entry(data: bytes) -> int:
    directory, _ = _header(data)
    return directory + 160


def _entry_dimension(data: bytes, entry: int, axis: str) -> int:
    """Offset of dimension ``axis`` in the directory entry at ``entry``."""
    count = struct.unpack_from("<i", data, entry + 28)[0]
    for k in range(count):
        offset = entry + 32 + 20 * k
        if data[offset : offset + 4].rstrip(b"\0").decode() == axis:
            return offset
    raise AssertionError(axis)


# ------------------------------------------------------------------- contract
def test_stack_contract_and_calibration(tmp_path: Path) -> None:
    path = tmp_path / "stack.czi"
    expected = write_czi_stack(
        path, t=2, c=3, z=4, voxel_um=(0.5, 0.5, 2.0), channel_names=["DAPI", "GFP", "RFP"]
    )
    assert_reader_contract(CziReader, path, expected)
    with open_image(path) as image:
        md = image.metadata(0)
        assert md.shape == (2, 3, 4, 24, 32)
        assert md.get_voxel_size_micrometers() == (0.5, 0.5, 2.0)
        assert md.provenance["physical_size.x_um"] == "CZI Scaling/Items/Distance[X]"
        assert [ch.name for ch in md.channels] == ["DAPI", "GFP", "RFP"]
        assert md.file_format == "CZI"
        assert md.bit_depth == 16
        assert md.warnings == []
        assert "<ImageDocument>" in image.raw_metadata()["xml"]
        json.dumps(md.vendor_metadata)


def test_zstd_stack_contract(tmp_path: Path) -> None:
    path = tmp_path / "zstd.czi"
    expected = write_czi_stack(path, t=1, c=2, z=3, compression="zstd1:ExplicitLevel=1")
    assert_reader_contract(CziReader, path, expected)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_other_grey_dtypes(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / f"{dtype}.czi"
    expected = write_czi_stack(path, c=2, z=2, dtype=dtype)
    assert_reader_contract(CziReader, path, expected)
    with open_image(path) as image:
        assert image.metadata(0).dtype == dtype


def test_scenes_of_different_sizes(tmp_path: Path) -> None:
    path = tmp_path / "scenes.czi"
    layout = [(20, 30, (0, 0)), (10, 12, (100, 50)), (15, 40, (5, 200))]
    expected = write_czi_scenes(path, layout, c=2, z=2)
    assert_reader_contract(CziReader, path, expected[0])
    with open_image(path) as image:
        scenes = image.scenes()
        assert [(s.size_y, s.size_x) for s in scenes] == [(20, 30), (10, 12), (15, 40)]
        for index, stack in enumerate(expected):
            np.testing.assert_array_equal(image.to_dask(index).compute(), stack)
            np.testing.assert_array_equal(image.read_plane(index, 0, 1, 1), stack[0, 1, 1])
            md = image.metadata(index)
            assert md.scene_index == index
            assert md.shape == stack.shape
            assert md.get_voxel_size_micrometers() == (0.25, 0.25, 1.0)


def test_scene_indices_with_a_gap(tmp_path: Path) -> None:
    """S1 and S3 without S2 (a scene removed in ZEN): two scenes, in S order."""
    path = tmp_path / "gap.czi"
    expected = write_czi_scenes(path, [(10, 12, (0, 0)), (14, 8, (50, 0))], s_indices=[1, 3])
    assert_reader_contract(CziReader, path, expected[0])
    with open_image(path) as image:
        assert len(image.scenes()) == 2
        np.testing.assert_array_equal(image.to_dask(1).compute(), expected[1])


def test_mosaic_2x2_is_stitched(tmp_path: Path) -> None:
    path = tmp_path / "mosaic.czi"
    expected = write_czi_mosaic(path, tile=(20, 30), grid=(2, 2))
    assert_reader_contract(CziReader, path, expected)
    with open_image(path) as image:
        assert len(image.scenes()) == 1
        assert image.metadata(0).shape == (1, 1, 1, 40, 60)


def test_mosaic_without_scene_index_fills_gaps_with_zero(tmp_path: Path) -> None:
    path = tmp_path / "tiles.czi"
    expected = write_czi_mosaic(path, tile=(16, 24), grid=(2, 2), skip=(3,), with_scene=False, c=2)
    assert_reader_contract(CziReader, path, expected)
    with open_image(path) as image:
        plane = image.read_plane(0, 0, 1, 0)
        assert not plane[16:, 24:].any()
        assert plane[:16, :24].all()
        assert image.metadata(0).scene_name is None


@pytest.mark.parametrize("dtype", ["uint8", "uint16"], ids=["Bgr24", "Bgr48"])
def test_bgr_samples_are_reversed_to_rgb(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / "rgb.czi"
    expected = write_czi_rgb(path, dtype=dtype)
    assert_reader_contract(CziReader, path, expected)
    with open_image(path) as image:
        md = image.metadata(0)
        assert md.samples_per_pixel == 3
        assert md.dtype == dtype
        assert md.shape == (1, 1, 1, 16, 20, 3)
        assert md.physical_size.x_um == 1.5
        assert [ch.name for ch in md.channels] == [None]


def test_vendor_dimension_takes_index_zero(tmp_path: Path) -> None:
    path = tmp_path / "phases.czi"
    expected = write_czi_extra_dim(path, axis="H", size=3, z=2)
    assert_reader_contract(CziReader, path, expected)
    with open_image(path) as image:
        md = image.metadata(0)
        assert md.extra_dims == {"H": 3}
        assert image.scenes()[0].extra_dims == {"H": 3}
        assert any("dimension H" in w for w in md.warnings)


def test_indices_that_do_not_start_at_zero(tmp_path: Path) -> None:
    """T, C and Z indices from 1, 2 and 3 (libCZI keeps them as stored): plane 0 is the first stored.

    Before the fix the reader asked libCZI for C=0, which no subblock has: opening
    refused the file as corrupt (channel 0 "has an invalid pixel type"), and with C
    from 0 a Z from 3 read as "out-of-range" for z=0..2 and lost the last planes.
    """
    from pylibCZIrw import czi as pyczi

    expected = write_czi_stack(tmp_path / "unused.czi", t=2, c=2, z=3, y=6, x=8)
    path = tmp_path / "offset.czi"
    with pyczi.create_czi(str(path)) as writer:
        for t in range(2):
            for c in range(2):
                for z in range(3):
                    writer.write(expected[t, c, z], plane={"T": t + 1, "C": c + 2, "Z": z + 3})
        writer.write_metadata(channel_names={2: "first", 3: "second"})
    assert_reader_contract(CziReader, path, expected)
    with open_image(path) as image:
        assert image.metadata(0).shape == (2, 2, 3, 6, 8)
        np.testing.assert_array_equal(
            image.read_region(0, 1, 1, 2, (1, 4), (2, 7)), expected[1, 1, 2, 1:4, 2:7]
        )
    # The subblock of plane (0, 0, 0), stored as T=1 C=2 Z=3, cut: that plane is refused.
    data = bytearray(path.read_bytes())
    blocks = _subblock_positions(data)
    position = next(p for d, p in blocks if (d["T"], d["C"], d["Z"]) == (1, 2, 3))
    assert position != max(p for _, p in blocks)
    struct.pack_into("<q", data, position + 32 + 8, 10**12)  # its DataSize
    path.write_bytes(data)
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 1, 1, 2), expected[1, 1, 2])
        with pytest.raises(CorruptFileError, match=r"plane t=0 c=0 z=0: 1 subblock\(s\) end past"):
            image.read_plane(0, 0, 0, 0)


# ------------------------------------------------------------------- metadata
@pytest.mark.parametrize("decoy_scaling", [True, False], ids=["whole-xml", "fragments"])
def test_xml_mapping(tmp_path: Path, decoy_scaling: bool) -> None:
    path = tmp_path / "rich.czi"
    write_czi_scenes(path, [(12, 16, (0, 0)), (8, 8, (40, 0))], t=3, c=2)
    replace_czi_xml(path, rich_czi_xml(decoy_scaling=decoy_scaling))
    with open_image(path) as image:
        assert [s.name for s in image.scenes()] == ["First", "Second"]
        md = image.metadata(1)
        assert md.scene_name == "Second"
        # Metadata/Scaling, not the Experiment decoy (9 µm) or Processing's OriginalScaling (0.2 µm)
        assert md.get_voxel_size_micrometers() == (0.16, 0.16, 0.5)
        dapi, gfp = md.channels
        assert (dapi.name, gfp.name) == ("DAPI", "GFP")
        assert dapi.color == "#00A1FF"
        assert (dapi.excitation_nm, dapi.emission_nm) == (353.0, 465.0)
        assert dapi.exposure_ms == pytest.approx(2.0)
        assert gfp.exposure_ms == pytest.approx(150.0)
        assert gfp.fluorophore == "Alexa Fluor 488"
        assert dapi.illumination == "Epifluorescence"
        assert md.objective is not None
        assert md.objective.name == "Plan-Apochromat 63x/1.40 Oil"
        assert (md.objective.magnification, md.objective.numerical_aperture) == (63.0, 1.4)
        assert md.objective.immersion == "Oil"
        assert md.microscope is not None
        assert md.microscope.model == "Axio Observer.Z1 / 7"
        assert md.microscope.manufacturer == "Carl Zeiss"
        assert md.microscope.serial_number == "SN-42"
        assert md.microscope.software == "ZEN (blue edition)"
        assert md.microscope.software_version == "3.7.97.00000"
        assert md.acquired_at == datetime(2021, 6, 15, 6, 9, 43, 30481, tzinfo=UTC)
        assert md.acquired_at_local is None
        assert md.time_interval_s == 30.0
        assert md.significant_bits == 12
        assert md.warnings == []
        assert json.loads(json.dumps(md.vendor_metadata))["Application"]["Name"] == (
            "ZEN (blue edition)"
        )
        assert "Plan-Apochromat 63x" in image.raw_metadata()["xml"]


def test_naive_acquisition_time_is_kept_local(tmp_path: Path) -> None:
    path = tmp_path / "naive.czi"
    write_czi_scenes(path, [(8, 8, (0, 0))], c=2)
    replace_czi_xml(path, rich_czi_xml(scene_names=["A"], acquired="2020-12-15T10:24:08"))
    with open_image(path) as image:
        md = image.metadata(0)
        assert md.acquired_at is None
        assert md.acquired_at_local == datetime(2020, 12, 15, 10, 24, 8)
        assert any("time zone" in w for w in md.warnings)


def test_zero_scaling_is_unknown_and_unnamed_channels_are_none(tmp_path: Path) -> None:
    path = tmp_path / "bare.czi"
    write_czi_stack(path, c=2)
    with open_image(path) as image:
        md = image.metadata(0)
        assert md.get_voxel_size_micrometers() == (None, None, None)
        assert sum("no calibration" in w for w in md.warnings) == 3
        assert [ch.name for ch in md.channels] == [None, None]


def test_pickled_dask_array_and_threaded_compute(tmp_path: Path) -> None:
    path = tmp_path / "threads.czi"
    expected = write_czi_stack(path, t=2, c=2, z=8, y=64, x=48, compression="zstd1:ExplicitLevel=1")
    with open_image(path) as image:
        lazy = image.to_dask(0)
        for _ in range(3):
            got = lazy.compute(scheduler="threads", num_workers=4)
            np.testing.assert_array_equal(got, expected)
        clone = pickle.loads(pickle.dumps(lazy))
        np.testing.assert_array_equal(clone.compute(scheduler="sync"), expected)
        with pytest.raises(SceneNotFoundError):
            image.to_dask(0, level=1)
    del lazy, clone


# ------------------------------------------------------------------ bad input
def test_sniff() -> None:
    assert CziReader.sniff(b"ZISRAWFILE" + bytes(22), None)  # type: ignore[arg-type]
    assert not CziReader.sniff(b"II*\0", None)  # type: ignore[arg-type]
    assert not CziReader.sniff(b"", None)  # type: ignore[arg-type]
    assert not CziReader.sniff(None, None)  # type: ignore[arg-type]


def test_magic_then_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.czi"
    path.write_bytes(b"ZISRAWFILE" + np.random.default_rng(1).bytes(200_000))
    assert detect_reader(path) is CziReader
    with pytest.raises(CorruptFileError, match=r"random\.czi"):
        open_image(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated(tmp_path: Path, fraction: float) -> None:
    good = tmp_path / "good.czi"
    write_czi_stack(good, c=2, z=3)
    data = good.read_bytes()
    path = tmp_path / f"cut{int(fraction * 100)}.czi"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptFileError, match=path.name):
        open_image(path)


def test_directory_claims_too_many_subblocks(tmp_path: Path) -> None:
    path = tmp_path / "count.czi"
    write_czi_stack(path, z=2)
    data = bytearray(path.read_bytes())
    directory, _ = _header(data)
    struct.pack_into("<i", data, directory + 32, 2**31 - 1)
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match="subblocks"):
        open_image(path)


@pytest.mark.parametrize("size", [10**9, 1_000_000])
def test_subblock_claims_huge_plane(tmp_path: Path, size: int) -> None:
    path = tmp_path / "huge.czi"
    write_czi_stack(path)
    data = bytearray(path.read_bytes())
    entry = _first_entry(data)
    for axis in ("X", "Y"):
        offset = _entry_dimension(data, entry, axis)
        struct.pack_into("<i", data, offset + 8, size)  # Size
        struct.pack_into("<i", data, offset + 16, size)  # StoredSize
    path.write_bytes(data)
    with pytest.raises(LimitExceededError, match=r"huge\.czi"):
        open_image(path)


def test_subblock_claims_huge_index(tmp_path: Path) -> None:
    """A flipped Z coordinate would make Z span millions of planes: refused quickly."""
    path = tmp_path / "index.czi"
    write_czi_stack(path, z=2)
    data = bytearray(path.read_bytes())
    struct.pack_into("<i", data, _entry_dimension(data, _first_entry(data), "Z") + 4, 5_000_000)
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match="spans"):
        open_image(path)


def test_tight_limits_refuse_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "limits.czi"
    write_czi_stack(path, y=64, x=64)
    with pytest.raises(LimitExceededError):
        CziReader(path, limits=ReadLimits(max_plane_bytes=1024))


def test_directory_outside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dir.czi"
    write_czi_stack(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<q", data, 84, 10**12)
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match="outside the file"):
        open_image(path)


def test_metadata_claims_huge_xml(tmp_path: Path) -> None:
    path = tmp_path / "xml.czi"
    write_czi_stack(path)
    data = bytearray(path.read_bytes())
    _, metadata = _header(data)
    struct.pack_into("<i", data, metadata + 32, 2**31 - 1)
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match="metadata XML"):
        open_image(path)


def test_subblock_past_end_of_file_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "past.czi"
    write_czi_stack(path, z=2)
    data = bytearray(path.read_bytes())
    struct.pack_into("<q", data, _first_entry(data) + 6, 10**12)  # FilePosition
    path.write_bytes(data)
    # The subblock that lies last (here: past the end) is checked at open.
    with pytest.raises(CorruptFileError, match=r"past\.czi: subblock 0 \(.*Z=0.*\).* past the end"):
        open_image(path)


def test_subblock_data_past_end_is_refused_when_its_plane_is_read(tmp_path: Path) -> None:
    """A subblock inside the file whose data size runs past the end: opening checks only the
    last subblock (a constant cost), so the file opens; reading the damaged plane is refused,
    the other planes read whole."""
    path = tmp_path / "middle.czi"
    expected = write_czi_stack(path, c=2, z=3)
    data = bytearray(path.read_bytes())
    blocks = _subblock_positions(data)
    position = next(p for d, p in blocks if d.get("C") == 1 and d.get("Z") == 0)
    assert position != max(p for _, p in blocks)  # not the last subblock in the file
    struct.pack_into("<q", data, position + 32 + 8, 10**12)  # its DataSize
    path.write_bytes(data)
    with open_image(path) as image:
        assert image.metadata(0).size_z == 3
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), expected[0, 0, 0])
        np.testing.assert_array_equal(image.read_plane(0, 0, 1, 2), expected[0, 1, 2])
        with pytest.raises(
            CorruptFileError, match=r"middle\.czi: plane t=0 c=1 z=0: .*past the end"
        ):
            image.read_plane(0, 0, 1, 0)
        with pytest.raises(CorruptFileError, match="past the end"):
            image.read_region(0, 0, 1, 0, (0, 4), (0, 4))
        with pytest.raises(CorruptFileError, match="past the end"):
            image.to_dask(0).compute()


def _subblock_positions(data: bytes) -> list[tuple[dict[str, int], int]]:
    """(dimension starts, file position) of every subblock, from the directory."""
    return [(dims, position) for dims, position, _ in _entries(data)]


def _entries(data: bytes) -> list[tuple[dict[str, int], int, int]]:
    directory, _ = _header(data)
    entry = directory + 160
    out = []
    for _ in range(struct.unpack_from("<i", data, directory + 32)[0]):
        position = struct.unpack_from("<q", data, entry + 6)[0]
        count = struct.unpack_from("<i", data, entry + 28)[0]
        dims = {
            data[entry + 32 + 20 * k : entry + 36 + 20 * k]
            .rstrip(b"\0")
            .decode(): struct.unpack_from("<i", data, entry + 36 + 20 * k)[0]
            for k in range(count)
        }
        out.append((dims, position, entry))
        entry += 32 + 20 * count
    return out


def _subblock_data(data: bytes) -> list[tuple[dict[str, int], int, int]]:
    """(dimension starts, data offset, data size) of every subblock, from the directory."""
    directory, _ = _header(data)
    count = struct.unpack_from("<i", data, directory + 32)[0]
    entry = directory + 160
    out = []
    for _ in range(count):
        position = struct.unpack_from("<q", data, entry + 6)[0]
        dims_count = struct.unpack_from("<i", data, entry + 28)[0]
        dims = {
            data[entry + 32 + 20 * k : entry + 36 + 20 * k]
            .rstrip(b"\0")
            .decode(): struct.unpack_from("<i", data, entry + 36 + 20 * k)[0]
            for k in range(dims_count)
        }
        entry_size = 32 + 20 * dims_count
        entry += entry_size
        meta, _attach, size = struct.unpack_from("<iiq", data, position + 32)
        out.append((dims, position + 32 + max(256, 16 + entry_size) + meta, size))
    return out


def test_corrupt_zstd_data_is_a_corrupt_file_not_pixels(tmp_path: Path) -> None:
    """Random bytes in one plane's zstd stream: that plane raises, the intact one reads exactly."""
    path = tmp_path / "zstd.czi"
    expected = write_czi_stack(path, z=2, y=64, x=64, compression="zstd1:ExplicitLevel=1")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(7)
    ((start, size),) = [(o, n) for dims, o, n in _subblock_data(data) if dims["Z"] == 1]
    assert data[start + 3 : start + 7] == b"\x28\xb5\x2f\xfd"  # CZI zstd1 header, zstd magic
    data[start + 8 : start + size] = rng.bytes(size - 8)  # keep the headers: only the stream lies
    path.write_bytes(data)
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), expected[0, 0, 0])
        with pytest.raises(CorruptFileError, match="z=1"):
            image.read_plane(0, 0, 0, 1)


def _directory_first(data: bytes) -> bytes:
    """The same CZI with its subblock directory moved right after the file header, as ZEN writes it."""
    segments = []
    offset = 0
    while offset + 32 <= len(data):
        sid = data[offset : offset + 16].rstrip(b"\0")
        alloc = struct.unpack_from("<q", data, offset + 16)[0]
        segments.append((offset, sid, data[offset : offset + 32 + alloc]))
        offset += 32 + alloc
    order = sorted(
        segments, key=lambda seg: {b"ZISRAWFILE": 0, b"ZISRAWDIRECTORY": 1}.get(seg[1], 2)
    )
    moved, out, position = {}, [], 0
    for old, _, blob in order:
        moved[old] = position
        out.append(bytearray(blob))
        position += len(blob)
    blobs = {sid: blob for (_, sid, _), blob in zip(order, out, strict=True)}
    head = blobs[b"ZISRAWFILE"]
    for field in (84, 92, 104):
        value = struct.unpack_from("<q", head, field)[0]
        if value:
            struct.pack_into("<q", head, field, moved[value])
    directory = blobs[b"ZISRAWDIRECTORY"]
    entry = 160
    for _ in range(struct.unpack_from("<i", directory, 32)[0]):
        struct.pack_into(
            "<q", directory, entry + 6, moved[struct.unpack_from("<q", directory, entry + 6)[0]]
        )
        entry += 32 + 20 * struct.unpack_from("<i", directory, entry + 28)[0]
    if b"ZISRAWATTDIR" in blobs:
        attdir = blobs[b"ZISRAWATTDIR"]
        for k in range(struct.unpack_from("<i", attdir, 32)[0]):
            at = 32 + 256 + 128 * k + 12
            struct.pack_into("<q", attdir, at, moved[struct.unpack_from("<q", attdir, at)[0]])
    return b"".join(out)


@pytest.mark.parametrize("fraction", [1 / 3, 1 / 2, 0.95])
def test_truncated_czi_is_refused_naming_missing_planes(tmp_path: Path, fraction: float) -> None:
    """ZEN and libCZI write the directory first: a cut file still lists every subblock."""
    path = tmp_path / "stack.czi"
    write_czi_stack(path, t=2, c=2, z=3, y=64, x=80)
    data = _directory_first(path.read_bytes())
    directory, _ = _header(data)
    cut = int(len(data) * fraction)
    assert directory < cut  # the directory survives the cut: only the extents tell
    path.write_bytes(data[:cut])
    # The subblock that lies last in the file is checked at open: a cut always reaches it.
    with pytest.raises(
        CorruptFileError, match=r"subblock \d+ \(.*Z=\d.*\).* ends past the end of the file"
    ):
        open_image(path)


def test_region_reads_equal_the_stitched_plane(tmp_path: Path) -> None:
    path = tmp_path / "mosaic.czi"
    expected = write_czi_mosaic(path, tile=(16, 24), grid=(2, 2), with_scene=False, c=2)
    with open_image(path) as image:
        grid = image.region_grid(0)
        assert grid == (16, 24)
        for c in range(2):
            plane = expected[0, c, 0]
            region = image.read_region(0, 0, c, 0, (5, 27), (7, 40))
            np.testing.assert_array_equal(region, plane[5:27, 7:40])


def test_xml_entities_are_never_expanded(tmp_path: Path) -> None:
    """libCZI re-serialises the XML (dropping the DTD); our parser refuses entities anyway."""
    path = tmp_path / "xxe.czi"
    expected = write_czi_stack(path)
    data = bytearray(path.read_bytes())
    _, metadata = _header(data)
    old_size = struct.unpack_from("<i", data, metadata + 32)[0]
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<ImageDocument><Metadata><Information/><Scaling/></Metadata>&e;</ImageDocument>"
    )
    assert len(xml) <= old_size
    start = metadata + 288
    data[start : start + old_size] = xml + b" " * (old_size - len(xml))
    struct.pack_into("<i", data, metadata + 32, len(xml))
    path.write_bytes(data)
    with open_image(path) as image:
        md = image.metadata(0)
        assert "root:" not in json.dumps(md.vendor_metadata)
        assert "root:" not in image.raw_metadata()["xml"]
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), expected[0, 0, 0])
    with pytest.raises(MetadataError, match="entities"):
        parse_czi_xml(xml.decode(), path=path)
    with pytest.raises(MetadataError, match="not well-formed"):
        parse_czi_xml("<ImageDocument><Metadata>", path=path)


def test_broken_xml_fails_metadata_but_not_pixels(tmp_path: Path) -> None:
    path = tmp_path / "broken.czi"
    expected = write_czi_stack(path, z=2)
    data = bytearray(path.read_bytes())
    _, metadata = _header(data)
    xml = b"<ImageDocument><Metadata><Information><Image>"
    struct.pack_into("<i", data, metadata + 32, len(xml))
    data[metadata + 288 : metadata + 288 + len(xml)] = xml
    path.write_bytes(data)
    with open_image(path) as image:
        for _ in range(2):
            with pytest.raises(MetadataError, match=r"broken\.czi"):
                image.metadata(0)
        assert len(image.scenes()) == 1
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), expected[0, 0, 1])


def test_closed_before_any_pixel_read_refuses_reads(tmp_path: Path) -> None:
    """libCZI's readers are made by the first pixel read: a reader closed before one makes none."""
    path = tmp_path / "early.czi"
    write_czi_stack(path, z=2)
    image = open_image(path)
    assert image.metadata(0).size_z == 2
    image.close()
    for _ in range(2):
        with pytest.raises(ValueError, match="closed"):
            image.read_plane(0, 0, 0, 1)


def test_no_handle_left_after_close(tmp_path: Path) -> None:
    path = tmp_path / "close.czi"
    write_czi_stack(path, z=3)
    image = open_image(path)
    image.read_plane(0, 0, 0, 2)
    image.close()
    image.close()
    assert image.closed
    with pytest.raises(ValueError, match="closed"):
        image.read_plane(0, 0, 0, 0)
    if os.path.isdir("/proc/self/fd"):
        open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
        assert str(path) not in open_files
