"""Micro-Manager MMStack reader: header, index maps, dataset members and metadata (mutation kills).

References: the layout of micro-manager.org "Micro-Manager File Formats" as
``tests/synthetic_mm.py`` writes it (tifffile's ``read_micromanager_metadata``
reads the same bytes), and the reader's documented rules (sizes from the index
maps, calibration from the summary else the first plane, a start time without
an offset is local time).
"""

from __future__ import annotations

import json
import struct
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.synthetic_mm import mm_pixels, write_mm_dataset, write_mm_file
from zstack_analyzer import CorruptFileError, LimitExceededError, MetadataError, open_image
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers.micromanager import (
    INDEX_MAP_BLOCK,
    INDEX_MAP_HEADER,
    SUMMARY_HEADER,
    MicroManagerReader,
    _argb,
    _position_labels,
    _timestamp,
    is_mm_head,
    read_mm_header,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

SHAPE = (6, 8)


def _planes(
    indices: list[tuple[int, int, int, int]], extra: dict[str, Any] | None = None
) -> list[tuple[tuple[int, int, int, int], np.ndarray, dict[str, Any]]]:
    out = []
    for c, z, t, p in indices:
        plane_json: dict[str, Any] = {
            "ChannelIndex": c,
            "SliceIndex": z,
            "FrameIndex": t,
            "PositionIndex": p,
        }
        plane_json.update(extra or {})
        out.append(((c, z, t, p), mm_pixels(c, z, t, p, SHAPE, "uint16"), plane_json))
    return out


def _header(bo: str, index_at: int, summary: bytes) -> bytes:
    magic = b"II" if bo == "<" else b"MM"
    return (
        magic
        + struct.pack(bo + "HI", 42, 0)
        + struct.pack(
            bo + "8I", INDEX_MAP_HEADER, index_at, 0, 0, 0, 0, SUMMARY_HEADER, len(summary)
        )
        + summary
    )


# ----------------------------------------------------------------------------- header
def test_head_needs_both_headers_and_a_byte_order() -> None:
    good = _header("<", 0, b"{}")
    assert is_mm_head(good[:40])
    assert is_mm_head(_header(">", 0, b"{}")[:40])
    assert not is_mm_head(good[:39])
    assert not is_mm_head(b"XX" + good[2:40])
    bad_index = bytearray(good[:40])
    struct.pack_into("<I", bad_index, 8, INDEX_MAP_HEADER + 1)
    assert not is_mm_head(bytes(bad_index))
    bad_summary = bytearray(good[:40])
    struct.pack_into("<I", bad_summary, 32, SUMMARY_HEADER + 1)
    assert not is_mm_head(bytes(bad_summary))


def test_big_endian_header_and_index_map(tmp_path: Path) -> None:
    summary = json.dumps({"Summary": {"Prefix": "be", "Frames": 2}}).encode()
    index_at = 40 + len(summary)
    rows = [(1, 2, 3, 0, 4096), (0, 0, 0, 1, 70000)]
    body = _header(">", index_at, summary) + struct.pack(">2I", INDEX_MAP_BLOCK, len(rows))
    for row in rows:
        body += struct.pack(">5I", *row)
    path = tmp_path / "be.tif"
    path.write_bytes(body)  # the index map ends the file: count * 20 fills it exactly
    got, table = read_mm_header(path, max_metadata_bytes=10_000)
    assert got == {"Prefix": "be", "Frames": 2}  # the {"Summary": ...} wrapper is taken off
    assert table is not None and table.dtype == np.uint64
    assert table.tolist() == [list(r) for r in rows]
    # The summary exactly at the metadata limit is read; one byte under it is refused.
    assert read_mm_header(path, max_metadata_bytes=len(summary))[0] == got
    with pytest.raises(CorruptFileError, match="summary claims"):
        read_mm_header(path, max_metadata_bytes=len(summary) - 1)


def test_index_map_at_the_last_8_bytes_with_no_rows(tmp_path: Path) -> None:
    summary = b'{"Prefix": "x"}'
    index_at = 40 + len(summary)
    path = tmp_path / "empty.tif"
    path.write_bytes(_header("<", index_at, summary) + struct.pack("<2I", INDEX_MAP_BLOCK, 0))
    got, rows = read_mm_header(path, max_metadata_bytes=1000)
    assert got == {"Prefix": "x"} and rows is not None and rows.shape == (0, 5)


@pytest.mark.parametrize(
    ("summary", "index_at", "tail", "message"),
    [
        (b"[1, 2]", 0, b"", "the Micro-Manager summary is not a JSON object"),
        (b"null", 0, b"", "the Micro-Manager summary is not a JSON object"),
        (b"{nope", 0, b"", "the Micro-Manager summary is not valid JSON"),
        (b'{"a": "\xff"}', 0, b"", "the Micro-Manager summary is not valid JSON"),
        (b"{}", 20, b"\0" * 16, "the index map offset 20 lies outside the file"),
        (b"{}", 40, b"\0" * 16, "no index map at byte 40"),
        (b"{}", 39, b"\0" * 16, "the index map offset 39 lies outside the file"),
        (b"{}", 47, b"\0" * 12, "the index map offset 47 lies outside the file"),
        (b"{}", 42, struct.pack("<2I", INDEX_MAP_BLOCK + 1, 0), "no index map at byte 42"),
        (b"{}", 42, struct.pack("<2I", INDEX_MAP_BLOCK, 1) + b"\0" * 19, "lists 1 planes"),
        (b"{}", 0xFFFFFFF0, b"\0" * 16, "the index map offset 4,294,967,280 lies outside"),
        (
            b"{}",
            42,
            struct.pack("<2I", INDEX_MAP_BLOCK, 0xFFFFFFFF) + b"\0" * 40,
            "lists 4,294,967,295 planes, more than the file holds",
        ),
    ],
)
def test_header_lies_are_typed_errors(
    tmp_path: Path, summary: bytes, index_at: int, tail: bytes, message: str
) -> None:
    path = tmp_path / "lie.tif"
    path.write_bytes(_header("<", index_at, summary) + tail)
    with pytest.raises(CorruptFileError, match=message):
        read_mm_header(path, max_metadata_bytes=1000)


def test_header_summary_up_to_the_file_end_and_not_a_mm_file(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    path.write_bytes(_header("<", 0, b'{"k": 1}'))
    assert read_mm_header(path, max_metadata_bytes=1000) == ({"k": 1}, None)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 36, len(data) - 39)  # one byte more than the file has
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="summary claims 9 bytes"):
        read_mm_header(path, max_metadata_bytes=1000)
    struct.pack_into("<I", data, 36, 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="summary claims 4,294,967,295 bytes"):
        read_mm_header(path, max_metadata_bytes=1000)
    path.write_bytes(b"II*\0" + b"\0" * 60)
    with pytest.raises(CorruptFileError, match=r"s\.tif: not a Micro-Manager file"):
        read_mm_header(path, max_metadata_bytes=1000)


# ----------------------------------------------------------------------------- members
def test_file_set_and_members_keep_to_the_prefix(tmp_path: Path) -> None:
    files = write_mm_dataset(tmp_path, prefix="r[1]", positions=2, frames=1, channels=1, slices=1)
    write_mm_dataset(tmp_path, prefix="other", positions=1, frames=1, channels=1, slices=1)
    (tmp_path / "r[1]_MMStack_notes.txt").write_text("not a member")
    (tmp_path / "r[1]_MMStack_Pos9.ome.tif").mkdir()  # a folder is no member
    limits = ReadLimits()
    fs = MicroManagerReader.file_set(files[1], limits)
    assert fs is not None
    assert fs.main == files[0]
    assert fs.names == tuple(sorted(p.name for p in files))
    assert MicroManagerReader.file_set(tmp_path / "r[1]_notes.tif", limits) is None
    with open_image(files[1]) as image:
        assert [s.name for s in image.scenes()] == ["Pos0", "Pos1"]
        assert image.raw_metadata()["files"] == [str(p) for p in files]
        assert image.raw_metadata()["micromanager_summary"]["Prefix"] == "r[1]"
        assert image.metadata(1).vendor_metadata["files"] == [p.name for p in files]


def test_a_file_whose_summary_names_another_prefix_opens_alone(tmp_path: Path) -> None:
    files = write_mm_dataset(tmp_path, prefix="run", positions=2, frames=1, channels=1, slices=1)
    renamed = tmp_path / "old_MMStack_Pos0.ome.tif"
    files[0].rename(renamed)
    write_mm_file(tmp_path / "old_MMStack_Pos1.ome.tif", _planes([(0, 0, 0, 1)]), {"Prefix": "run"})
    with open_image(renamed) as image:
        assert len(image.scenes()) == 1
        assert image.raw_metadata()["files"] == [str(renamed)]


def test_members_that_cannot_join_are_skipped_with_a_reason(tmp_path: Path) -> None:
    summary = {"Prefix": "run", "Width": SHAPE[1], "Height": SHAPE[0]}
    main = write_mm_file(tmp_path / "run_MMStack_Pos0.ome.tif", _planes([(0, 0, 0, 0)]), summary)
    broken = tmp_path / "run_MMStack_Pos1.ome.tif"
    broken.write_bytes(b"II*\0" + b"\0" * 60)
    open_map = write_mm_file(
        tmp_path / "run_MMStack_Pos2.ome.tif", _planes([(0, 0, 0, 2)]), summary
    )
    data = bytearray(open_map.read_bytes())
    struct.pack_into("<I", data, 12, 0)
    open_map.write_bytes(bytes(data))
    write_mm_file(
        tmp_path / "run_MMStack_Pos3.ome.tif", _planes([(0, 0, 0, 3)]), {**summary, "Prefix": "z"}
    )
    joined = write_mm_file(tmp_path / "run_MMStack_Pos4.ome.tif", _planes([(0, 0, 0, 1)]), summary)
    with open_image(main) as image:
        assert len(image.scenes()) == 2
        assert image.raw_metadata()["files"] == [str(main), str(joined)]
        np.testing.assert_array_equal(
            image.read_plane(1, 0, 0, 0), mm_pixels(0, 0, 0, 1, SHAPE, "uint16")
        )
        warnings = image.metadata().warnings
    assert (
        f"dataset file {broken.name} skipped: {broken.name}: not a Micro-Manager file"
        in " ".join(warnings)
    )
    assert f"dataset file {open_map.name} skipped: its index map was never written" in warnings
    assert not any("Pos3" in w for w in warnings)


def test_member_without_prefix_in_its_summary_joins(tmp_path: Path) -> None:
    main = write_mm_file(
        tmp_path / "a_MMStack_Pos0.ome.tif", _planes([(0, 0, 0, 0)]), {"Prefix": "a"}
    )
    write_mm_file(tmp_path / "a_MMStack_Pos1.ome.tif", _planes([(0, 0, 0, 1)]), {})
    with open_image(main) as image:
        assert len(image.scenes()) == 2


# ----------------------------------------------------------------------------- plans
def test_planes_missing_from_the_maps_read_as_zeros_with_a_count(tmp_path: Path) -> None:
    path = write_mm_file(
        tmp_path / "g_MMStack_Pos0.ome.tif",
        _planes([(0, 0, 0, 0), (1, 2, 1, 0)]),
        {"Prefix": "g"},
    )
    with open_image(path) as image:
        assert image.scenes()[0].shape == (2, 2, 3, *SHAPE)
        assert not image.read_plane(0, 0, 1, 1).any()
        np.testing.assert_array_equal(
            image.read_plane(0, 1, 1, 2), mm_pixels(1, 2, 1, 0, SHAPE, "uint16")
        )
        warnings = image.metadata().warnings
    assert (
        "10 of 12 planes are in no index map (files missing or acquisition stopped): "
        "they read as zeros"
    ) in warnings
    assert not any("planned" in w for w in warnings)


def test_planned_sizes_larger_than_written_are_named(tmp_path: Path) -> None:
    summary = {"Frames": "x", "Slices": 2, "Channels": 4, "Positions": 3}
    path = write_mm_file(tmp_path / "p_MMStack_Pos0.ome.tif", _planes([(0, 0, 0, 0)]), summary)
    with open_image(path) as image:
        warnings = image.metadata().warnings
    assert (
        "the acquisition planned Slices=2, Channels=4, Positions=3 but the files hold "
        "Slices=1, Channels=1, Positions=1: sizes are what was written"
    ) in warnings


def test_summary_size_that_disagrees_with_the_planes_is_refused(tmp_path: Path) -> None:
    for width, height in [(SHAPE[1] + 1, SHAPE[0]), (SHAPE[1], SHAPE[0] + 1), (None, 99)]:
        summary: dict[str, Any] = {"Width": width, "Height": height}
        path = write_mm_file(tmp_path / "w_MMStack_Pos0.ome.tif", _planes([(0, 0, 0, 0)]), summary)
        with pytest.raises(MetadataError, match=f"the summary says {width} x {height} pixels"):
            open_image(path)
    only_width = write_mm_file(
        tmp_path / "v_MMStack_Pos0.ome.tif", _planes([(0, 0, 0, 0)]), {"Width": SHAPE[1]}
    )
    with pytest.raises(MetadataError, match=f"the planes hold {SHAPE[1]} x {SHAPE[0]}"):
        open_image(only_width)


def test_never_closed_file_needs_plane_indices(tmp_path: Path) -> None:
    def unclosed(name: str, extra: dict[str, Any]) -> Path:
        planes = _planes([(0, 0, 0, 0), (0, 1, 0, 0)])
        planes[1][2].update(extra)
        path = write_mm_file(tmp_path / name, planes, {})
        data = bytearray(path.read_bytes())
        struct.pack_into("<I", data, 12, 0)
        path.write_bytes(bytes(data))
        return path

    with pytest.raises(CorruptFileError, match="page 1 has no valid plane indices"):
        open_image(unclosed("a_MMStack_Pos0.ome.tif", {"SliceIndex": -1}))
    with pytest.raises(CorruptFileError, match="page 1 has no valid plane indices") as info:
        open_image(unclosed("b_MMStack_Pos0.ome.tif", {"FrameIndex": "x"}))
    assert info.value.path == tmp_path / "b_MMStack_Pos0.ome.tif"
    # Missing indices are 0 (a single-position, single-frame run leaves them out).
    path = unclosed("c_MMStack_Pos0.ome.tif", {})
    planes = _planes([(0, 0, 0, 0)])
    for key in ("ChannelIndex", "FrameIndex", "PositionIndex"):
        del planes[0][2][key]
    path = write_mm_file(tmp_path / "d_MMStack_Pos0.ome.tif", planes, {})
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 12, 0)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        assert image.scenes()[0].shape == (1, 1, 1, *SHAPE)
        warnings = image.metadata().warnings
    assert (
        "d_MMStack_Pos0.ome.tif has no index map (the acquisition did not close it): "
        "planes located from each page's MicroManagerMetadata"
    ) in warnings
    bad_json = tmp_path / "e_MMStack_Pos0.ome.tif"
    raw = bytearray(path.read_bytes())
    at = raw.index(b'{"SliceIndex"')
    raw[at] = ord("[")
    bad_json.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="page 0 has no readable MicroManagerMetadata"):
        open_image(bad_json)


# ----------------------------------------------------------------------------- metadata
def test_metadata_fallbacks(tmp_path: Path) -> None:
    planes = _planes(
        [(0, 0, t, 0) for t in range(3)] + [(1, 0, t, 0) for t in range(3)],
        {"PixelSizeUm": 0.2, "Exposure-ms": 0},
    )
    summary = {
        "ChNames": ["  ", 7],
        "ChColors": [-1],
        "Interval_ms": 250,
        "z-step_um": 2.0,
        "Time": "2024-01-02 03:04:05",
        "InitialPositionList": [{"label": "Here"}],
    }
    path = write_mm_file(tmp_path / "f_MMStack_Pos0.ome.tif", planes, summary)
    with open_image(path) as image:
        md = image.metadata()
    assert md.scene_name == "Here"
    assert (md.physical_size.x_um, md.physical_size.y_um) == (0.2, 0.2)
    assert md.physical_size.z_um is None  # one slice: no z step
    assert md.provenance["physical_size.x_um"] == "Micro-Manager plane metadata PixelSizeUm"
    assert md.provenance["physical_size.y_um"] == "Micro-Manager plane metadata PixelSizeUm"
    assert [(c.name, c.color, c.exposure_ms) for c in md.channels] == [
        (None, "#FFFFFF", None),
        (None, None, None),
    ]
    assert "channels[].name" not in md.provenance
    assert md.provenance["channels[].color"] == "Micro-Manager summary ChColors"
    assert "channels[].exposure_ms" not in md.provenance
    assert md.time_interval_s == 0.25
    assert md.provenance["time_interval_s"] == "Micro-Manager summary Interval_ms (as planned)"
    assert md.acquired_at is None
    assert md.acquired_at_local == datetime(2024, 1, 2, 3, 4, 5)
    assert md.provenance["acquired_at_local"] == "Micro-Manager summary StartTime"
    assert (
        "acquisition time zone unknown: acquired_at_local holds the time as written" in md.warnings
    )
    assert md.microscope is not None and md.microscope.software == "Micro-Manager"
    assert md.microscope.software_version is None
    assert md.vendor_metadata["first_plane"]["PixelSizeUm"] == 0.2


def test_metadata_from_summary_and_planes(tmp_path: Path) -> None:
    planes = [
        ((c, z, t, 0), mm_pixels(c, z, t, 0, SHAPE, "uint8"), js)
        for (c, z, t, js) in [
            (0, 0, 0, {"ElapsedTime-ms": 100.0, "Exposure-ms": 5, "PixelSizeUm": 9.0}),
            (0, 1, 0, {}),
            (1, 0, 0, {"Exposure-ms": 7.5}),
            (0, 0, 1, {"ElapsedTime-ms": "x"}),
            (0, 0, 2, {"ElapsedTime-ms": 1100.0}),
        ]
    ]
    summary = {
        "PixelSize_um": "0.5",
        "z-step_um": 0.75,
        "ChNames": [" A ", "B"],
        "ChColors": [65280, 16711680],
        "Interval_ms": 9000,
        "StartTime": "2024-03-01 12:30:05 -0200",
        "Time": "2000-01-01 00:00:00",
        "MicroManagerVersion": 2,
        "StagePositions": "not a list",
    }
    path = write_mm_file(tmp_path / "m_MMStack_Pos0.ome.tif", planes, summary)
    with open_image(path) as image:
        md = image.metadata()
        assert image.read_plane(0, 2, 0, 0).dtype == np.uint8
    assert md.scene_name is None
    assert (md.physical_size.x_um, md.physical_size.z_um) == (0.5, 0.75)
    assert md.provenance["physical_size.x_um"] == "Micro-Manager summary PixelSize_um"
    assert md.provenance["physical_size.z_um"] == "Micro-Manager summary z-step_um"
    assert [(c.name, c.color, c.exposure_ms) for c in md.channels] == [
        ("A", "#00FF00", 5.0),
        ("B", "#FF0000", 7.5),
    ]
    assert md.provenance["channels[].name"] == "Micro-Manager summary ChNames"
    assert md.provenance["channels[].exposure_ms"] == "Micro-Manager plane metadata Exposure-ms"
    assert md.time_interval_s == pytest.approx(0.5)  # (1100 - 100) ms over 2 intervals
    assert md.provenance["time_interval_s"] == (
        "Micro-Manager plane metadata ElapsedTime-ms (first to last frame)"
    )
    assert md.acquired_at is not None and md.acquired_at.isoformat() == "2024-03-01T14:30:05+00:00"
    assert md.acquired_at_local is None
    assert md.provenance["acquired_at"] == "Micro-Manager summary StartTime (with its UTC offset)"
    assert md.microscope is not None and md.microscope.software_version == "2"
    assert md.provenance["microscope.software"] == "Micro-Manager summary MicroManagerVersion"
    assert md.provenance["sizes"].startswith("Micro-Manager index maps")
    assert md.vendor_metadata["summary"]["ChNames"] == [" A ", "B"]


def test_zero_z_step_and_unordered_elapsed_times(tmp_path: Path) -> None:
    planes = _planes([(0, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0)])
    planes[0][2]["ElapsedTime-ms"] = 500.0
    planes[2][2]["ElapsedTime-ms"] = 500.0  # no time passed: not an interval
    summary = {"z-step_um": 0, "PixelSize_um": "inf", "Interval_ms": 0}
    path = write_mm_file(tmp_path / "z_MMStack_Pos0.ome.tif", planes, summary)
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.z_um is None and md.physical_size.x_um is None
    assert "physical_size.z_um" not in md.provenance
    assert "physical_size.x_um" not in md.provenance
    assert md.time_interval_s is None and "time_interval_s" not in md.provenance
    assert md.acquired_at is None and md.acquired_at_local is None
    assert "acquired_at" not in md.provenance and "acquired_at_local" not in md.provenance


def test_plane_metadata_as_bytes_or_broken(tmp_path: Path) -> None:
    (path,) = write_mm_dataset(tmp_path, positions=1, frames=1, channels=2, slices=1)
    raw = bytearray(path.read_bytes())
    second = raw.index(b'{"ChannelIndex": 1')
    raw[second] = ord("[")  # channel 1's plane JSON is no longer valid
    path.write_bytes(bytes(raw))
    with open_image(path) as image:
        md = image.metadata()
        assert image._plane_json(0, 0, 1, 0) == {}
        assert image._plane_json(0, 0, 0, 0)["Exposure-ms"] == 10.0
    assert [c.exposure_ms for c in md.channels] == [10.0, None]


# ----------------------------------------------------------------------------- helpers
def test_small_helpers() -> None:
    assert _argb(-1) == "#FFFFFF"
    assert _argb(-16776961) == "#0000FF"
    assert _argb(0x123456) == "#123456"
    assert _argb("x") is None
    assert _argb(None) is None
    assert _position_labels({"StagePositions": [{"Label": "A"}, "x", {"Label": ""}]}, 4) == [
        "A",
        None,
        None,
        None,
    ]
    assert _position_labels({"InitialPositionList": [{"label": 3}, {"Label": "B"}]}, 1) == ["3"]
    assert _position_labels({}, 2) == [None, None]
    assert _timestamp("2024-03-01 12:30:05.123 +0100") == datetime.fromisoformat(
        "2024-03-01T12:30:05.123+01:00"
    )
    assert _timestamp("2024-03-01 12:30:05 +0100") == datetime.fromisoformat(
        "2024-03-01T12:30:05+01:00"
    )
    assert _timestamp(" 2024-03-01 12:30:05.5 ") == datetime(2024, 3, 1, 12, 30, 5, 500000)
    assert _timestamp("2024-03-01 12:30:05") == datetime(2024, 3, 1, 12, 30, 5)
    assert _timestamp("01/03/2024") is None
    assert _timestamp("   ") is None
    assert _timestamp(5) is None


def test_errors_name_the_file(tmp_path: Path) -> None:
    summary = b"{}"
    path = tmp_path / "n_MMStack_Pos0.ome.tif"
    path.write_bytes(_header("<", 0, b"[1]"))
    with pytest.raises(CorruptFileError) as info:
        read_mm_header(path, max_metadata_bytes=1000)
    assert info.value.path == path
    path.write_bytes(_header("<", 42, summary) + struct.pack("<2I", INDEX_MAP_BLOCK, 0))
    with pytest.raises(CorruptFileError, match="the index map lists no planes") as info:
        open_image(path)
    assert info.value.path == path
    for index_at, tail in [(20, b"\0" * 16), (42, struct.pack("<2I", 1, 0)), (99, b"")]:
        path.write_bytes(_header("<", index_at, summary) + tail)
        with pytest.raises(CorruptFileError) as info:
            read_mm_header(path, max_metadata_bytes=1000)
        assert info.value.path == path
    path.write_bytes(_header("<", 42, summary) + struct.pack("<2I", INDEX_MAP_BLOCK, 9))
    with pytest.raises(CorruptFileError, match="more than the file holds") as info:
        read_mm_header(path, max_metadata_bytes=1000)
    assert info.value.path == path
    path.write_bytes(_header("<", 0, summary))
    with pytest.raises(CorruptFileError, match="summary claims") as info:
        read_mm_header(path, max_metadata_bytes=1)
    assert info.value.path == path
    path.write_bytes(b"II*\0" + b"\0" * 60)
    with pytest.raises(CorruptFileError) as info:
        read_mm_header(path, max_metadata_bytes=1000)
    assert info.value.path == path
    path.write_bytes(_header("<", 0, b"{x"))
    with pytest.raises(CorruptFileError) as info:
        read_mm_header(path, max_metadata_bytes=1000)
    assert info.value.path == path
    wide = write_mm_file(tmp_path / "w_MMStack_Pos0.ome.tif", _planes([(0, 0, 0, 0)]), {"Width": 1})
    with pytest.raises(MetadataError) as meta_info:
        open_image(wide)
    assert meta_info.value.path == wide


def test_index_map_pointing_at_no_ifd(tmp_path: Path) -> None:
    (path,) = write_mm_dataset(tmp_path, positions=1, frames=1, channels=1, slices=2)
    data = bytearray(path.read_bytes())
    (index_at,) = struct.unpack_from("<I", data, 12)
    original = bytes(data)
    struct.pack_into("<I", data, index_at + 8 + 16, len(data))  # one past the last byte
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=f"points to byte {len(data):,} of") as info:
        open_image(path)
    assert info.value.path == path
    data = bytearray(original)
    struct.pack_into("<I", data, index_at + 8 + 16, 4)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="points to byte 4 of run_MMStack_Pos0"):
        open_image(path)
    data = bytearray(original)
    struct.pack_into("<I", data, index_at + 8 + 16, 40)  # the summary JSON, no IFD
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="unreadable IFD at byte 40 of run_MMStack") as info:
        open_image(path)
    assert info.value.path == path
    assert info.value.detail


def test_plane_without_its_metadata_tag(tmp_path: Path) -> None:
    (path,) = write_mm_dataset(tmp_path, positions=1, frames=1, channels=2, slices=1)
    raw = bytearray(path.read_bytes())
    tag = struct.pack("<HH", 51123, 2)
    second = raw.index(tag, raw.index(tag) + 1)
    struct.pack_into("<H", raw, second, 51124)  # channel 1's page loses tag 51123
    path.write_bytes(bytes(raw))
    with open_image(path) as image:
        assert image._plane_json(0, 0, 1, 0) == {}
        assert [c.exposure_ms for c in image.metadata().channels] == [10.0, None]


def _unclose(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 12, 0)
    path.write_bytes(bytes(data))
    return path


def test_never_closed_file_positions_limits_and_missing_tags(tmp_path: Path) -> None:
    planes = _planes([(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1)])
    path = _unclose(write_mm_file(tmp_path / "u_MMStack_Pos0.ome.tif", planes, {}))
    with open_image(path) as image:
        assert [s.shape for s in image.scenes()] == [(2, 1, 1, *SHAPE)] * 2
        np.testing.assert_array_equal(
            image.read_plane(1, 1, 0, 0), mm_pixels(0, 0, 1, 1, SHAPE, "uint16")
        )
    with pytest.raises(CorruptFileError, match="over 2 pages without an index map") as info:
        open_image(path, limits=ReadLimits(max_planes=2))
    assert info.value.path == path
    raw = bytearray(path.read_bytes())
    struct.pack_into("<H", raw, raw.index(struct.pack("<HH", 51123, 2)), 51124)
    path.write_bytes(bytes(raw))
    with pytest.raises(
        CorruptFileError, match="page 0 has no readable MicroManagerMetadata"
    ) as info:
        open_image(path)
    assert info.value.path == path


def test_one_frame_has_no_interval(tmp_path: Path) -> None:
    path = write_mm_file(
        tmp_path / "i_MMStack_Pos0.ome.tif", _planes([(0, 0, 0, 0)]), {"Interval_ms": 100}
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.time_interval_s is None and "time_interval_s" not in md.provenance


def test_dataset_member_limit(tmp_path: Path) -> None:
    main = write_mm_file(tmp_path / "L_MMStack_Pos0.ome.tif", _planes([(0, 0, 0, 0)]), {})
    for k in range(1, 4096):
        (tmp_path / f"L_MMStack_Pos{k}.ome.tif").touch()
    limits = ReadLimits()
    fs = MicroManagerReader.file_set(main, limits)
    assert fs is not None and len(fs.names) == 4096
    with open_image(main) as image:  # exactly the limit: the empty members are skipped
        assert len(image.scenes()) == 1
    (tmp_path / "L_MMStack_Pos4096.ome.tif").touch()
    with pytest.raises(LimitExceededError, match="over 4,096 files in the dataset") as info:
        MicroManagerReader.file_set(main, limits)
    assert info.value.path == main
    with pytest.raises(LimitExceededError, match="4,097 files in the dataset, over 4,096") as info:
        open_image(main)
    assert info.value.path == main
