"""CZI structure checks, directory parses, layout and reads, pinned on small synthetic files.

Why: the CZI tests check whole files and a few kinds of damage; these pin each open-time
check at its bounds (the exact byte counts, the limits at and one under a file's own
figures), the directory parse's two paths on layouts writers do not make (another
dimension order, a multi-part entry, a position over 4 GB), the pixel types, and region
reads at and past a scene's edges. Each file is a few kB written by pylibCZIrw.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.synthetic_czi import (
    write_czi_extra_dim,
    write_czi_mosaic,
    write_czi_rgb,
    write_czi_scenes,
    write_czi_stack,
)
from zstack_analyzer import (
    CorruptFileError,
    LimitExceededError,
    SceneNotFoundError,
    UnsupportedFormatError,
)
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers.czi import (
    CziReader,
    _check_structure,
    _parse_directory,
    _parse_uniform,
    _parse_walk,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# --------------------------------------------------------------------- file surgery


def _header(data: bytes) -> tuple[int, int]:
    """(directory position, metadata position) of a CZI file header."""
    return struct.unpack_from("<q", data, 84)[0], struct.unpack_from("<q", data, 92)[0]


def _entries(data: bytes) -> list[tuple[int, dict[str, int]]]:
    """(offset, {axis: offset of its dimension entry}) of every directory entry."""
    directory, _ = _header(data)
    entry = directory + 160
    out = []
    for _ in range(struct.unpack_from("<i", data, directory + 32)[0]):
        count = struct.unpack_from("<i", data, entry + 28)[0]
        dims = {
            data[entry + 32 + 20 * k : entry + 36 + 20 * k].rstrip(b"\0").decode(): (
                entry + 32 + 20 * k
            )
            for k in range(count)
        }
        out.append((entry, dims))
        entry += 32 + 20 * count
    return out


def _directory_raw(data: bytes) -> tuple[bytes, int]:
    """The bytes after the directory header, and the entry count."""
    directory, _ = _header(data)
    return data[directory + 160 :], struct.unpack_from("<i", data, directory + 32)[0]


def _start(data: bytes, entry: dict[str, int], axis: str) -> int:
    return struct.unpack_from("<i", data, entry[axis] + 4)[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, np.ndarray]:
    """A 1 x 2 x 3 x 6 x 8 uint16 stack: six subblocks of one layout."""
    path = tmp_path_factory.mktemp("czi") / "stack.czi"
    expected = write_czi_stack(path, c=2, z=3, y=6, x=8)
    return path.read_bytes(), expected


def _write(tmp_path: Path, data: bytes, name: str = "f.czi") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _open(path: Path, **limits: int) -> CziReader:
    return CziReader(path, limits=ReadLimits(**limits)) if limits else CziReader(path)


# ------------------------------------------------------------------ the file header


def test_a_file_shorter_than_the_header_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ZISRAWFILE" + bytes(101))  # 111 bytes: one short of a header
    with pytest.raises(
        CorruptFileError, match=r"f\.czi: 111 bytes is too short for a CZI file"
    ) as caught:
        CziReader(path)
    assert caught.value.path == path


def test_another_magic_is_refused(tmp_path: Path, stack: tuple[bytes, np.ndarray]) -> None:
    data = bytearray(stack[0])
    data[:10] = b"ZISRAWFILF"
    with pytest.raises(CorruptFileError, match=r"not a CZI file \(no ZISRAWFILE segment"):
        CziReader(_write(tmp_path, bytes(data)))


def test_a_missing_file_is_a_corrupt_file_error(tmp_path: Path) -> None:
    with pytest.raises(
        CorruptFileError, match=r"absent\.czi: cannot read the CZI header"
    ) as caught:
        CziReader(tmp_path / "absent.czi")
    assert caught.value.path == tmp_path / "absent.czi"


def test_other_major_version_still_opens(tmp_path: Path, stack: tuple[bytes, np.ndarray]) -> None:
    data = bytearray(stack[0])
    struct.pack_into("<i", data, 48, 2)  # Major
    with CziReader(_write(tmp_path, bytes(data))) as reader:
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 2), stack[1][0, 1, 2])


@pytest.mark.parametrize("where", [0, -1], ids=["zero", "negative"])
def test_directory_position_zero_or_negative_is_refused(
    tmp_path: Path, stack: tuple[bytes, np.ndarray], where: int
) -> None:
    data = bytearray(stack[0])
    struct.pack_into("<q", data, 84, where)
    with pytest.raises(CorruptFileError, match=f"directory at offset {where} lies outside"):
        CziReader(_write(tmp_path, bytes(data)))


def test_directory_header_one_byte_past_the_end_is_refused(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """A directory whose 160-byte header would end one byte past the file's end."""
    data = bytearray(stack[0])
    size = len(data)
    struct.pack_into("<q", data, 84, size - 159)
    with pytest.raises(CorruptFileError, match=f"offset {size - 159} lies outside the file"):
        CziReader(_write(tmp_path, bytes(data)))
    # At size - 160 exactly the header fits: what follows decides (no entries fit).
    struct.pack_into("<q", data, 84, size - 160)
    with pytest.raises(CorruptFileError, match="no subblock directory segment"):
        CziReader(_write(tmp_path, bytes(data)))


def test_directory_at_the_very_end_holds_no_entries(tmp_path: Path) -> None:
    """A directory header that ends exactly at the end of the file: room for 0 entries."""
    head = bytearray(112)
    head[:10] = b"ZISRAWFILE"
    struct.pack_into("<q", head, 84, 112)
    directory = bytearray(160)
    directory[:15] = b"ZISRAWDIRECTORY"
    struct.pack_into("<i", directory, 32, 1)
    path = _write(tmp_path, bytes(head + directory))
    with pytest.raises(
        CorruptFileError, match="claims 1 subblocks; the file has room for at most 0"
    ):
        CziReader(path)


@pytest.mark.parametrize("count", [0, -3])
def test_no_entries_is_refused(tmp_path: Path, stack: tuple[bytes, np.ndarray], count: int) -> None:
    data = bytearray(stack[0])
    directory, _ = _header(data)
    struct.pack_into("<i", data, directory + 32, count)
    with pytest.raises(CorruptFileError, match=f"claims {count} subblocks; the file has room"):
        CziReader(_write(tmp_path, bytes(data)))


def test_entry_room_is_counted_in_32_byte_entries(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """The count may claim as many entries as 32-byte ones fit; one more is refused."""
    data = bytearray(stack[0])
    directory, _ = _header(data)
    room = (len(data) - directory - 160) // 32
    struct.pack_into("<i", data, directory + 32, room + 1)
    with pytest.raises(CorruptFileError, match=f"claims {room + 1} subblocks; .* at most {room}:"):
        CziReader(_write(tmp_path, bytes(data)))
    struct.pack_into("<i", data, directory + 32, room)
    # Within the room, the bytes past the real six entries are not entries: the parse refuses.
    with pytest.raises(CorruptFileError, match="subblock directory"):
        CziReader(_write(tmp_path, bytes(data)))


def test_subblock_count_limit_at_and_over(tmp_path: Path, stack: tuple[bytes, np.ndarray]) -> None:
    path = _write(tmp_path, stack[0])
    with pytest.raises(
        LimitExceededError, match=r"f\.czi: declares 6 subblocks, over the limit of 5"
    ):
        _open(path, max_planes=5)
    with _open(path, max_planes=6) as reader:
        assert reader.scenes()[0].size_z == 3


# ---------------------------------------------------------------- the metadata segment


def test_no_metadata_segment_opens_without_xml(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = bytearray(stack[0])
    struct.pack_into("<q", data, 92, 0)
    with CziReader(_write(tmp_path, bytes(data))) as reader:
        assert reader.raw_metadata() == {"xml": ""}
        md = reader.metadata(0)
        assert any("no metadata XML" in w for w in md.warnings)
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 1), stack[1][0, 0, 1])


def test_metadata_segment_outside_the_file(tmp_path: Path, stack: tuple[bytes, np.ndarray]) -> None:
    data = bytearray(stack[0])
    size = len(data)
    for where in (-1, size - 287):
        struct.pack_into("<q", data, 92, where)
        with pytest.raises(
            CorruptFileError,
            match=f"metadata segment at offset {where} lies outside the file \\({size} bytes\\)",
        ):
            CziReader(_write(tmp_path, bytes(data)))


def test_metadata_position_without_a_metadata_segment(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = bytearray(stack[0])
    directory, _ = _header(data)
    struct.pack_into("<q", data, 92, directory)
    with pytest.raises(CorruptFileError, match=f"no metadata segment at offset {directory}"):
        CziReader(_write(tmp_path, bytes(data)))


def _xml_size_at(data: bytes) -> tuple[int, int]:
    _, metadata = _header(data)
    return metadata + 32, struct.unpack_from("<i", data, metadata + 32)[0]


def test_xml_size_negative_or_one_past_the_end(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = bytearray(stack[0])
    field, _ = _xml_size_at(data)
    _, metadata = _header(data)
    room = len(data) - metadata - 288
    for size in (-1, room + 1):
        struct.pack_into("<i", data, field, size)
        with pytest.raises(CorruptFileError, match=f"the metadata XML claims {size} bytes, past"):
            CziReader(_write(tmp_path, bytes(data)))


def test_xml_up_to_the_end_of_the_file_is_read(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """A metadata segment moved to the end: its XML may end at the file's last byte, not past."""
    data = bytes(stack[0])
    _, metadata = _header(data)
    xml = b"<ImageDocument><Metadata><Information/><Scaling/></Metadata></ImageDocument>"
    segment = bytearray(data[metadata : metadata + 288]) + xml
    struct.pack_into("<i", segment, 32, len(xml))
    moved = bytearray(data + bytes(segment))
    struct.pack_into("<q", moved, 92, len(data))
    with CziReader(_write(tmp_path, bytes(moved))) as reader:
        assert reader.raw_metadata()["xml"] == xml.decode()
    struct.pack_into("<i", moved, len(data) + 32, len(xml) + 1)
    with pytest.raises(CorruptFileError, match=f"claims {len(xml) + 1} bytes, past the end"):
        CziReader(_write(tmp_path, bytes(moved)))


def test_xml_limit_at_and_over(tmp_path: Path, stack: tuple[bytes, np.ndarray]) -> None:
    path = _write(tmp_path, stack[0])
    _, size = _xml_size_at(stack[0])
    with pytest.raises(
        LimitExceededError,
        match=f"the metadata XML is {size:,} bytes, over the limit of {size - 1:,}",
    ):
        _open(path, max_metadata_bytes=size - 1)
    with _open(path, max_metadata_bytes=size) as reader:
        assert "<ImageDocument>" in reader.raw_metadata()["xml"]


def test_large_xml_is_read_whole_at_open(tmp_path: Path) -> None:
    """An XML longer than the header read (4 kB) is read in a second read, whole."""
    from tests.synthetic_czi import replace_czi_xml

    path = tmp_path / "big.czi"
    write_czi_stack(path, y=4, x=4)
    padding = "".join(f"<Note{i}>{'x' * 40}</Note{i}>" for i in range(200))
    replace_czi_xml(
        path,
        f"<ImageDocument><Metadata><Information/><Scaling/><Extra>{padding}</Extra>"
        "</Metadata></ImageDocument>",
    )
    structure = _check_structure(path, ReadLimits())
    assert structure.xml is not None
    assert structure.xml_size is not None and structure.xml_size > 8192
    text = structure.xml.rstrip(b"\0").decode().rstrip()
    assert text.endswith("</ImageDocument>")
    assert structure.xml_at == _header(path.read_bytes())[1] + 288
    with CziReader(path) as reader:
        assert reader.raw_metadata()["xml"].rstrip().endswith("</ImageDocument>")


def test_xml_read_later_when_not_read_at_open(tmp_path: Path) -> None:
    """The XML is read from the file on first use when opening did not keep it."""
    path = tmp_path / "later.czi"
    write_czi_stack(path, y=4, x=4)
    reader = CziReader(path)
    try:
        reader._xml_stored = None
        xml = reader.raw_metadata()["xml"]
        assert xml.startswith("<ImageDocument>") and xml.endswith("</ImageDocument>")
        assert "\0" not in xml
    finally:
        reader.close()


# ------------------------------------------------------------------ directory entries


def test_entry_malformed_schema_is_named(tmp_path: Path, stack: tuple[bytes, np.ndarray]) -> None:
    data = bytearray(stack[0])
    entry, _ = _entries(data)[2]
    data[entry : entry + 2] = b"DX"
    with pytest.raises(CorruptFileError, match="subblock directory entry 2 is malformed") as caught:
        CziReader(_write(tmp_path, bytes(data)))
    assert caught.value.path == tmp_path / "f.czi"


@pytest.mark.parametrize(("dimensions", "whole"), [(64, True), (65, False)])
def test_an_entry_may_hold_64_dimensions(
    tmp_path: Path, stack: tuple[bytes, np.ndarray], dimensions: int, whole: bool
) -> None:
    """The walk takes up to 64 dimension entries (libCZI's bound); 65 is malformed."""
    data = stack[0]
    (entry, dims), (second, _) = _entries(data)[:2]
    fixed = bytearray(data[entry : entry + 32])
    struct.pack_into("<i", fixed, 28, dimensions)
    own = data[entry + 32 : second]
    filler = struct.pack("<4siifi", b"B", 0, 1, 0.0, 1) * (dimensions - len(dims))
    raw = bytes(fixed) + own + filler
    path = tmp_path / "wide.czi"
    if whole:
        walk = _parse_walk(path, raw, 10**9, 1)
        assert walk.coords[0]["B"] == 0 and walk.statistics.box == (0, 0, 8, 6)
        assert walk.header_sizes == [16 + 32 + 20 * 64]
    else:
        with pytest.raises(CorruptFileError, match="entry 0 is malformed"):
            _parse_walk(path, raw, 10**9, 1)


@pytest.mark.parametrize("count", [65, -1])
def test_entry_dimension_count_out_of_range(
    tmp_path: Path, stack: tuple[bytes, np.ndarray], count: int
) -> None:
    data = bytearray(stack[0])
    entry, _ = _entries(data)[1]
    struct.pack_into("<i", data, entry + 28, count)
    with pytest.raises(CorruptFileError, match="entry 1 is malformed"):
        CziReader(_write(tmp_path, bytes(data)))


def test_directory_cut_inside_an_entry(stack: tuple[bytes, np.ndarray], tmp_path: Path) -> None:
    raw, count = _directory_raw(stack[0])
    entry_size = len(raw[: _entries(stack[0])[1][0] - _entries(stack[0])[0][0]])
    path = tmp_path / "cut.czi"
    with pytest.raises(CorruptFileError, match="entry 2 is malformed"):
        _parse_walk(path, raw[: 2 * entry_size + 40], 10**9, count)
    with pytest.raises(CorruptFileError, match="directory ends past the end of the file") as caught:
        _parse_walk(path, raw[: 2 * entry_size + 31], 10**9, count)
    assert caught.value.path == path
    # A third entry of no dimensions ends the bytes exactly: it is read, and has no X.
    bare = bytearray(raw[2 * entry_size : 2 * entry_size + 32])
    struct.pack_into("<i", bare, 28, 0)
    with pytest.raises(CorruptFileError, match="subblock 2 has no X or no Y extent"):
        _parse_walk(path, raw[: 2 * entry_size] + bytes(bare), 10**9, 3)
    assert _parse_uniform(path, raw[: 6 * entry_size - 1], 10**9, count) is None
    assert _parse_uniform(path, raw[:31], 10**9, count) is None


def _mixed(data: bytes) -> bytearray:
    """The same file with entry 1's dimensions in another order (swap its first two)."""
    out = bytearray(data)
    entry, _ = _entries(out)[1]
    first, second = entry + 32, entry + 52
    a, b = bytes(out[first : first + 20]), bytes(out[second : second + 20])
    out[first : first + 20], out[second : second + 20] = b, a
    return out


def test_dimensions_in_another_order_take_the_walk(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = _mixed(stack[0])
    raw, count = _directory_raw(bytes(data))
    path = tmp_path / "order.czi"
    assert _parse_uniform(path, raw, len(data), count) is None
    walk = _parse_walk(path, raw, len(data), count)
    assert sorted((d["C"], d["Z"]) for d in walk.coords) == [
        (c, z) for c in range(2) for z in range(3)
    ]
    assert _parse_directory(path, raw, len(data), count).coords == walk.coords
    with CziReader(_write(tmp_path, bytes(data))) as reader:
        for c in range(2):
            for z in range(3):
                np.testing.assert_array_equal(reader.read_plane(0, 0, c, z), stack[1][0, c, z])


def test_a_different_label_column_takes_the_walk(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """Entry 3 names its last dimension differently: no uniform layout."""
    data = bytearray(stack[0])
    _entry, dims = _entries(data)[3]
    last = max(dims.values())
    label = data[last : last + 4]
    data[last : last + 4] = b"R\0\0\0" if label != b"R\0\0\0" else b"I\0\0\0"
    raw, count = _directory_raw(bytes(data))
    assert _parse_uniform(tmp_path / "x.czi", raw, len(data), count) is None
    assert _parse_directory(tmp_path / "x.czi", raw, len(data), count).entries == count


def test_one_entry_of_another_schema_takes_the_walk(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = bytearray(stack[0])
    entry, _ = _entries(data)[4]
    data[entry : entry + 2] = b"DW"
    raw, count = _directory_raw(bytes(data))
    assert _parse_uniform(tmp_path / "x.czi", raw, len(data), count) is None
    with pytest.raises(CorruptFileError, match="entry 4 is malformed"):
        _parse_directory(tmp_path / "x.czi", raw, len(data), count)


def test_other_file_part_is_counted_but_not_checked(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """An entry of a multi-part document's other file: in the statistics, not in the checks."""
    data = bytearray(stack[0])
    entries = _entries(data)
    entry, _dims = entries[2]
    struct.pack_into("<i", data, entry + 14, 1)  # FilePart
    struct.pack_into("<q", data, entry + 6, 10**12)  # a position in the other file
    raw, count = _directory_raw(bytes(data))
    path = tmp_path / "part.czi"
    assert _parse_uniform(path, raw, len(data), count) is None
    walk = _parse_walk(path, raw, len(data), count)
    assert walk.entries == 6
    assert len(walk.positions) == 5 and len(walk.coords) == 5 and len(walk.header_sizes) == 5
    assert walk.statistics.bounds["Z"] == (0, 3)
    assert walk.statistics.bounds["C"] == (0, 2)
    with CziReader(_write(tmp_path, bytes(data), "part.czi")) as reader:
        assert reader.scenes()[0].size_z == 3
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), stack[1][0, 0, 0])


def test_a_position_over_4_gb_takes_the_walk(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = bytearray(stack[0])
    entry, _ = _entries(data)[0]
    struct.pack_into("<q", data, entry + 6, 2**32 + 64)
    raw, count = _directory_raw(bytes(data))
    path = tmp_path / "big.czi"
    assert _parse_uniform(path, raw, len(data), count) is None
    assert _parse_walk(path, raw, len(data), count).positions[0] == 2**32 + 64
    with pytest.raises(
        CorruptFileError, match=r"subblock 0 \(.*\), the last in the file, ends past"
    ) as caught:
        CziReader(_write(tmp_path, bytes(data), "big.czi"))
    assert caught.value.path == tmp_path / "big.czi"


def test_uniform_parse_of_exact_bytes_equals_the_walk(stack: tuple[bytes, np.ndarray]) -> None:
    """The uniform parse needs exactly entries x stride bytes; it reads every column right."""
    raw, count = _directory_raw(stack[0])
    (first, _), (second, _) = _entries(stack[0])[:2]
    stride = second - first
    from pathlib import Path

    path = Path("s.czi")
    uniform = _parse_uniform(path, raw[: count * stride], len(stack[0]), count)
    walk = _parse_walk(path, raw[: count * stride], len(stack[0]), count)
    assert uniform is not None
    assert uniform.positions == walk.positions
    assert uniform.header_sizes == walk.header_sizes == [max(256, 16 + stride)] * count
    assert uniform.coords == walk.coords
    assert sorted((d["C"], d["Z"]) for d in uniform.coords) == [
        (c, z) for c in range(2) for z in range(3)
    ]
    assert uniform.block == walk.block == (6, 8)
    assert uniform.statistics.bounds == walk.statistics.bounds
    assert uniform.statistics.bounds["C"] == (0, 2) and uniform.statistics.bounds["Z"] == (0, 3)
    assert uniform.statistics.box == walk.statistics.box == (0, 0, 8, 6)
    assert uniform.entries == walk.entries == 6
    assert uniform.file_size == walk.file_size == len(stack[0])


# --------------------------------------------------------------------- X and Y extents


@pytest.mark.parametrize("parse", ["uniform", "walk"])
@pytest.mark.parametrize(
    ("axis", "field", "value"),
    [("X", 8, 0), ("Y", 8, -2), ("X", 16, 0), ("Y", 16, -1)],
    ids=["x-size", "y-size", "x-stored", "y-stored"],
)
def test_empty_extent_of_a_later_entry_is_named(
    tmp_path: Path, stack: tuple[bytes, np.ndarray], parse: str, axis: str, field: int, value: int
) -> None:
    data = bytearray(stack[0] if parse == "uniform" else _mixed(stack[0]))
    _, dims = _entries(data)[4]
    struct.pack_into("<i", data, dims[axis] + field, value)
    raw, count = _directory_raw(bytes(data))
    size, stored = (
        struct.unpack_from("<i", data, dims[axis] + 8)[0],
        struct.unpack_from("<i", data, dims[axis] + 16)[0],
    )
    path = tmp_path / "e.czi"
    function: Callable[..., object] = _parse_uniform if parse == "uniform" else _parse_walk
    with pytest.raises(
        CorruptFileError,
        match=(
            rf"e\.czi: subblock 4 declares an empty or negative {axis} extent "
            rf"\(size {size}, stored {stored}\); the file is corrupt"
        ),
    ) as caught:
        function(path, raw, len(data), count)
    assert caught.value.path == path


@pytest.mark.parametrize("parse", ["uniform", "walk"])
def test_one_pixel_extents_are_accepted(tmp_path: Path, parse: str) -> None:
    path = tmp_path / "pixel.czi"
    expected = write_czi_stack(path, z=2, y=1, x=1)
    data = path.read_bytes()
    if parse == "walk":
        data = bytes(_mixed(data))
        path.write_bytes(data)
    raw, count = _directory_raw(data)
    assert (_parse_uniform(path, raw, len(data), count) is None) == (parse == "walk")
    with CziReader(path) as reader:
        assert reader.scenes()[0].shape == (1, 1, 2, 1, 1)
        np.testing.assert_array_equal(reader.to_dask(0).compute(), expected)


@pytest.mark.parametrize("parse", ["uniform", "walk"])
@pytest.mark.parametrize("axis", ["X", "Y"])
def test_an_entry_without_x_or_y_is_refused(
    tmp_path: Path, stack: tuple[bytes, np.ndarray], parse: str, axis: str
) -> None:
    data = bytearray(stack[0])
    for entry, dims in _entries(data):
        if parse == "uniform" or entry == _entries(data)[3][0]:
            data[dims[axis] : dims[axis] + 4] = b"Q\0\0\0"
    raw, count = _directory_raw(bytes(data))
    index = 0 if parse == "uniform" else 3
    with pytest.raises(
        CorruptFileError, match=f"subblock {index} has no X or no Y extent; the file is corrupt"
    ) as caught:
        _parse_directory(tmp_path / "n.czi", raw, len(data), count)
    assert caught.value.path == tmp_path / "n.czi"


# ---------------------------------------------------------------- statistics and layout


def _set_pixel_type(data: bytearray, code: int, entries: list[int] | None = None) -> None:
    for i, (entry, _) in enumerate(_entries(data)):
        if entries is None or i in entries:
            struct.pack_into("<i", data, entry + 2, code)


@pytest.mark.parametrize(
    ("code", "error", "match"),
    [
        (0xFF, CorruptFileError, "holds an invalid pixel type; the file is corrupt"),
        (10, UnsupportedFormatError, "CZI pixel type Gray64ComplexFloat is not supported"),
        (77, UnsupportedFormatError, "CZI pixel type code 77 is not supported"),
        (9, UnsupportedFormatError, r"Bgra32 is not supported \(supported: Gray8, Gray16, "),
    ],
)
def test_pixel_types_refused(
    tmp_path: Path, stack: tuple[bytes, np.ndarray], code: int, error: type, match: str
) -> None:
    data = bytearray(stack[0])
    _set_pixel_type(data, code)
    with pytest.raises(error, match=match) as caught:
        CziReader(_write(tmp_path, bytes(data)))
    assert caught.value.path == tmp_path / "f.czi"


def test_pixel_types_of_the_first_16_channels_are_compared(tmp_path: Path) -> None:
    """One channel: no comparison; channel 17 of 17 is not looked at (libCZI's lookups cost)."""
    path = tmp_path / "many.czi"
    write_czi_stack(path, c=17, y=2, x=2)
    data = bytearray(path.read_bytes())
    last = [i for i, (_, dims) in enumerate(_entries(data)) if _start(data, dims, "C") == 16]
    _set_pixel_type(data, 0, last)
    with CziReader(_write(tmp_path, bytes(data), "many.czi")) as reader:
        assert not [w for w in reader.metadata(0).warnings if "pixel types" in w]
    one = tmp_path / "one.czi"
    write_czi_stack(one, y=2, x=2)
    with CziReader(one) as reader:
        assert not [w for w in reader.metadata(0).warnings if "pixel types" in w]


def test_channels_of_different_pixel_types_warn(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = bytearray(stack[0])
    c1 = [i for i, (_, dims) in enumerate(_entries(data)) if _start(data, dims, "C") == 1]
    _set_pixel_type(data, 0, c1)  # channel 1 says Gray8, channel 0 Gray16
    with CziReader(_write(tmp_path, bytes(data))) as reader:
        md = reader.metadata(0)
        assert md.dtype == "uint16"
        assert (
            "channels have different pixel types ['Gray16', 'Gray8']: all read as Gray16"
            in md.warnings
        )
        assert md.vendor_metadata["pixel_type"] == "Gray16"


def test_pixel_type_of_a_channel_is_its_first_subblocks(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = bytearray(stack[0])
    entries = _entries(data)
    c1 = [i for i, (_, dims) in enumerate(entries) if _start(data, dims, "C") == 1]
    _set_pixel_type(data, 2, c1[1:])  # later subblocks of channel 1: Gray32Float
    raw, count = _directory_raw(bytes(data))
    for parse in (_parse_uniform, _parse_walk):
        stats = parse(tmp_path / "p.czi", raw, len(data), count).statistics  # type: ignore[union-attr]
        assert [stats.pixel_type(c) for c in range(3)] == ["Gray16", "Gray16", "Invalid"]


def test_pixel_type_without_channels(tmp_path: Path) -> None:
    """Entries without C: the first entry's pixel type."""
    path = tmp_path / "noc.czi"
    write_czi_extra_dim(path, axis="H", size=2, z=1)
    data = bytearray(path.read_bytes())
    for _entry, dims in _entries(data):
        if "C" in dims:
            data[dims["C"] : dims["C"] + 4] = b"V\0\0\0"
    _set_pixel_type(data, 0, [0])
    raw, count = _directory_raw(bytes(data))
    stats = _parse_walk(path, raw, len(data), count).statistics
    assert "C" not in stats.bounds
    assert [stats.pixel_type(c) for c in range(3)] == ["Gray8"] * 3


def test_a_channel_without_subblocks_has_an_invalid_pixel_type(tmp_path: Path) -> None:
    """C indices 0 and 2: channel 1 has no subblock, libCZI calls its pixel type invalid."""
    from pylibCZIrw import czi as pyczi

    path = tmp_path / "gap.czi"
    plane = np.arange(12, dtype=np.uint16).reshape(3, 4)
    with pyczi.create_czi(str(path)) as writer:
        for c in (0, 2):
            for z in range(2):
                writer.write(plane, plane={"C": c, "Z": z})
        writer.write_metadata()
    with CziReader(path) as reader:
        md = reader.metadata(0)
        assert md.size_c == 3
        assert (
            "channels have different pixel types ['Gray16', 'Invalid', 'Gray16']: "
            "all read as Gray16" in md.warnings
        )
        np.testing.assert_array_equal(reader.read_plane(0, 0, 2, 1), plane)
        assert not reader.read_plane(0, 0, 1, 0).any()  # no subblock: background


def test_entries_without_a_channel_among_entries_with_one(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """One entry's C renamed: the C interval comes from the entries that have a C."""
    data = bytearray(stack[0])
    entries = _entries(data)
    index = next(i for i, (_, dims) in enumerate(entries) if _start(data, dims, "C") == 1)
    _, dims = entries[index]
    data[dims["C"] : dims["C"] + 4] = b"V\0\0\0"
    raw, count = _directory_raw(bytes(data))
    walk = _parse_walk(tmp_path / "w.czi", raw, len(data), count)
    assert walk.statistics.bounds["C"] == (0, 2)
    assert walk.statistics.bounds["V"] == (1, 1)
    assert [walk.statistics.pixel_type(c) for c in range(2)] == ["Gray16", "Gray16"]
    # Every entry without C: no C interval at all.
    for _, dims in entries:
        data[dims["C"] : dims["C"] + 4] = b"V\0\0\0"
    raw, count = _directory_raw(bytes(data))
    assert "C" not in _parse_walk(tmp_path / "w.czi", raw, len(data), count).statistics.bounds


def test_a_dimension_spanning_more_indices_than_subblocks(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """Six subblocks: Z may span 6 indices (gaps allowed), not 7."""
    data = bytearray(stack[0])
    z0 = [dims for _, dims in _entries(data) if _start(data, dims, "Z") == 2]
    struct.pack_into("<i", data, z0[0]["Z"] + 4, 6)  # Z 0..6: seven indices
    with pytest.raises(
        CorruptFileError,
        match=(
            r"f\.czi: dimension Z spans 7 indices but the file holds only 6 subblocks; "
            "the subblock directory is corrupt"
        ),
    ) as caught:
        CziReader(_write(tmp_path, bytes(data)))
    assert caught.value.path == tmp_path / "f.czi"
    struct.pack_into("<i", data, z0[0]["Z"] + 4, 5)  # Z 0..5: six indices
    with CziReader(_write(tmp_path, bytes(data))) as reader:
        assert reader.scenes()[0].size_z == 6


def test_a_vendor_dimension_spanning_more_indices_than_subblocks(tmp_path: Path) -> None:
    path = tmp_path / "h.czi"
    write_czi_extra_dim(path, axis="H", size=2, z=1)
    data = bytearray(path.read_bytes())
    _, dims = _entries(data)[1]
    struct.pack_into("<i", data, dims["H"] + 4, 2)  # H 0..2 over two subblocks
    with pytest.raises(CorruptFileError, match="dimension H spans 3 indices"):
        CziReader(_write(tmp_path, bytes(data)))


def test_a_vendor_dimension_of_two(tmp_path: Path) -> None:
    path = tmp_path / "two.czi"
    expected = write_czi_extra_dim(path, axis="I", size=2, z=2)
    with CziReader(path) as reader:
        info = reader.scenes()[0]
        assert info.extra_dims == {"I": 2}
        md = reader.metadata(0)
        assert "CZI dimension I has 2 entries: index 0 is shown" in md.warnings
        np.testing.assert_array_equal(reader.to_dask(0).compute(), expected)


def test_shape_limits_at_and_under_the_plane(tmp_path: Path) -> None:
    path = tmp_path / "rgb.czi"
    expected = write_czi_rgb(path, y=5, x=7, dtype="uint16")
    plane = 5 * 7 * 3 * 2
    with pytest.raises(LimitExceededError):
        _open(path, max_plane_bytes=plane - 1)
    with _open(path, max_plane_bytes=plane) as reader:
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), expected[0, 0, 0])
    with pytest.raises(LimitExceededError):
        _open(path, max_dimension=6)
    with _open(path, max_dimension=7) as reader:
        assert reader.scenes()[0].shape == (1, 1, 1, 5, 7, 3)


def test_every_scene_passes_the_limits(tmp_path: Path) -> None:
    """The second scene is the larger: its size is checked too."""
    path = tmp_path / "two.czi"
    write_czi_scenes(path, [(4, 5, (0, 0)), (9, 11, (50, 0))])
    with pytest.raises(LimitExceededError):
        _open(path, max_plane_bytes=9 * 11 * 2 - 1)
    with _open(path, max_plane_bytes=9 * 11 * 2) as reader:
        assert [(s.size_y, s.size_x) for s in reader.scenes()] == [(4, 5), (9, 11)]


def test_scene_info_carries_the_layout(tmp_path: Path) -> None:
    path = tmp_path / "s.czi"
    write_czi_scenes(path, [(4, 5, (3, 2)), (6, 7, (50, 9))], t=2, c=3, z=1, s_indices=[2, 5])
    with CziReader(path) as reader:
        scenes = reader.scenes()
        assert [s.index for s in scenes] == [0, 1]
        assert [(s.size_t, s.size_c, s.size_z, s.size_y, s.size_x) for s in scenes] == [
            (2, 3, 1, 4, 5),
            (2, 3, 1, 6, 7),
        ]
        assert all(s.samples_per_pixel == 1 and s.dtype == "uint16" for s in scenes)
        assert all(s.extra_dims == {} for s in scenes)
        md = reader.metadata(1)
        assert md.vendor_metadata["scene_s_index"] == 5
        assert md.vendor_metadata["bounding_rectangle"] == [50, 9, 7, 6]
        assert reader.metadata(0).vendor_metadata["bounding_rectangle"] == [3, 2, 5, 4]


# ------------------------------------------------------------ subblocks past the end


def _data_size_fields(data: bytes) -> list[tuple[dict[str, int], int, int]]:
    """(starts, file position, DataSize field offset) of every subblock."""
    out = []
    for entry, dims in _entries(data):
        position = struct.unpack_from("<q", data, entry + 6)[0]
        starts = {axis: _start(data, dims, axis) for axis in dims}
        out.append((starts, position, position + 32 + 8))
    return out


def test_many_missing_subblocks_are_listed_five_and_counted(tmp_path: Path) -> None:
    """A mosaic plane of eight tiles, seven cut: five named, 'and 2 more'."""
    path = tmp_path / "tiles.czi"
    write_czi_mosaic(path, tile=(4, 6), grid=(2, 4))
    data = bytearray(path.read_bytes())
    blocks = _data_size_fields(data)
    last = max(p for _, p, _ in blocks)
    cut = [b for b in blocks if b[1] != last]
    assert len(cut) == 7
    for _, _, field in cut:
        struct.pack_into("<q", data, field, 10**12)
    with (
        CziReader(_write(tmp_path, bytes(data), "tiles.czi")) as reader,
        pytest.raises(CorruptFileError) as caught,
    ):
        reader.read_plane(0, 0, 0, 0)
    message = str(caught.value)
    assert message.startswith("tiles.czi: plane t=0 c=0 z=0: 7 subblock(s) end past the end")
    assert f"of the file ({len(data):,} bytes): subblock " in message
    assert message.count("subblock ") == 5  # "7 subblock(s)" has no trailing space
    assert message.count("), subblock ") == 4
    assert message.endswith(" and 2 more; the file is truncated")


def test_exactly_five_missing_are_all_named(tmp_path: Path) -> None:
    path = tmp_path / "tiles.czi"
    write_czi_mosaic(path, tile=(4, 6), grid=(2, 3))
    data = bytearray(path.read_bytes())
    blocks = _data_size_fields(data)
    last = max(p for _, p, _ in blocks)
    for _, position, field in blocks:
        if position != last:
            struct.pack_into("<q", data, field, 10**12)
    with (
        CziReader(_write(tmp_path, bytes(data), "tiles.czi")) as reader,
        pytest.raises(CorruptFileError, match=r"5 subblock\(s\) .*M=\d\); the file is truncated"),
    ):
        reader.read_plane(0, 0, 0, 0)


@pytest.mark.parametrize("field", [0, 4], ids=["metadata-size", "attachment-size"])
def test_negative_subblock_sizes_are_past_the_end(
    tmp_path: Path, stack: tuple[bytes, np.ndarray], field: int
) -> None:
    data = bytearray(stack[0])
    blocks = _data_size_fields(data)
    last = max(p for _, p, _ in blocks)
    starts, position, _ = next(b for b in blocks if b[1] != last and b[0]["C"] == 1)
    struct.pack_into("<i", data, position + 32 + field, -1)
    with CziReader(_write(tmp_path, bytes(data))) as reader:
        with pytest.raises(CorruptFileError, match=f"plane t=0 c=1 z={starts['Z']}: 1 subblock"):
            reader.read_plane(0, 0, 1, starts["Z"])
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), stack[1][0, 0, 0])


def test_a_subblock_ending_exactly_at_the_end_is_whole(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """The last subblock's data may end at the file's last byte; one byte more is a cut.

    pylibCZIrw writes the metadata and the directory after the subblocks, so the
    directory is parsed here with the file size set where the last subblock ends.
    """
    data = bytes(stack[0])
    path = _write(tmp_path, data)
    blocks = _data_size_fields(data)
    index = max(range(len(blocks)), key=lambda i: blocks[i][1])
    _, position, _ = blocks[index]
    meta, attach, size = struct.unpack_from("<iiq", data, position + 32)
    entry_size = _entries(data)[1][0] - _entries(data)[0][0]
    end = position + 32 + max(256, 16 + entry_size) + meta + attach + size
    raw, count = _directory_raw(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        for parse in (_parse_uniform, _parse_walk):
            exact = parse(path, raw, end, count)
            assert exact is not None
            assert exact.subblock_end(fd, index) == end
            exact.check_last(fd)
            short = parse(path, raw, end - 1, count)
            assert short is not None
            with pytest.raises(
                CorruptFileError,
                match=f"the last in the file, ends past the end of the file \\({end - 1:,} bytes\\)",
            ):
                short.check_last(fd)
    finally:
        os.close(fd)
    # Sizes split differently between data and attachment: the same end.
    moved = bytearray(data)
    struct.pack_into("<iiq", moved, position + 32, meta, attach + 8, size - 8)
    path = _write(tmp_path, bytes(moved), "moved.czi")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _parse_walk(path, raw, end, count).subblock_end(fd, index) == end
    finally:
        os.close(fd)
    # A last subblock with no metadata, attachment or data that ends the file is whole.
    empty = bytearray(data)
    struct.pack_into("<iiq", empty, position + 32, 0, 0, 0)
    header_end = position + 32 + max(256, 16 + entry_size)
    path = _write(tmp_path, bytes(empty), "empty.czi")
    fd = os.open(path, os.O_RDONLY)
    try:
        exact = _parse_walk(path, raw, header_end, count)
        assert exact.subblock_end(fd, index) == header_end
        exact.check_last(fd)
    finally:
        os.close(fd)


def test_subblock_position_zero_is_refused(tmp_path: Path, stack: tuple[bytes, np.ndarray]) -> None:
    data = bytearray(stack[0])
    blocks = _data_size_fields(data)
    last = max(p for _, p, _ in blocks)
    index, (starts, _, _) = next((i, b) for i, b in enumerate(blocks) if b[1] != last)
    entry, _ = _entries(data)[index]
    struct.pack_into("<q", data, entry + 6, 0)
    with (
        CziReader(_write(tmp_path, bytes(data))) as reader,
        pytest.raises(CorruptFileError, match=f"subblock {index} "),
    ):
        reader.read_plane(0, 0, starts["C"], starts["Z"])


def test_a_subblock_header_past_the_end_is_refused(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """A position whose subblock header would end past the file: the last subblock, refused."""
    data = bytearray(stack[0])
    entry, _ = _entries(data)[2]
    struct.pack_into("<q", data, entry + 6, len(data) - 20)
    with pytest.raises(CorruptFileError, match=r"subblock 2 \(S=0 T=0 C=\d Z=\d M=0\), the last"):
        CziReader(_write(tmp_path, bytes(data)))


def test_plane_checks_are_per_scene(tmp_path: Path) -> None:
    """A cut subblock of scene 0 does not refuse scene 1's plane of the same (t, c, z)."""
    path = tmp_path / "scenes.czi"
    expected = write_czi_scenes(path, [(4, 5, (0, 0)), (6, 7, (40, 0)), (3, 3, (80, 0))])
    data = bytearray(path.read_bytes())
    blocks = _data_size_fields(data)
    (_, _, field) = next(b for b in blocks if b[0]["S"] == 0)
    struct.pack_into("<q", data, field, 10**12)
    with CziReader(_write(tmp_path, bytes(data), "scenes.czi")) as reader:
        np.testing.assert_array_equal(reader.read_plane(1, 0, 0, 0), expected[1][0, 0, 0])
        with pytest.raises(CorruptFileError, match=r"plane t=0 c=0 z=0: 1 subblock\(s\)"):
            reader.read_plane(0, 0, 0, 0)
        with pytest.raises(CorruptFileError, match=r"\(S=0 .*\)"):
            reader.read_plane(0, 0, 0, 0)


# --------------------------------------------------------------------------- reads


@pytest.fixture(scope="module")
def scenes_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("czi") / "scenes.czi"
    expected = write_czi_scenes(path, [(12, 16, (0, 0)), (5, 6, (30, 40))], c=2, z=2)
    return path, expected


@pytest.mark.parametrize(
    ("rows", "cols"),
    [((1, 4), (2, 5)), ((-3, 2), (-1, 4)), ((3, 99), (4, 100)), ((0, 5), (0, 6))],
    ids=["inside", "negative", "past", "whole"],
)
def test_regions_of_an_offset_scene(
    scenes_file: tuple[Path, list[np.ndarray]], rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    path, expected = scenes_file
    plane = expected[1][0, 1, 1]
    with CziReader(path) as reader:
        region = reader.read_region(1, 0, 1, 1, rows, cols)
        want = plane[max(0, rows[0]) : rows[1], max(0, cols[0]) : cols[1]]
        assert region.dtype == np.uint16
        np.testing.assert_array_equal(region, want)


@pytest.mark.parametrize(
    ("rows", "cols", "shape"),
    [
        ((2, 2), (0, 4), (0, 4)),
        ((0, 3), (5, 5), (3, 0)),
        ((9, 12), (0, 2), (0, 2)),
        ((0, 2), (-5, 0), (2, 0)),
        ((4, 1), (0, 3), (0, 3)),
    ],
)
def test_empty_regions_are_zero_sized(
    scenes_file: tuple[Path, list[np.ndarray]],
    rows: tuple[int, int],
    cols: tuple[int, int],
    shape: tuple[int, int],
) -> None:
    path, _ = scenes_file
    with CziReader(path) as reader:
        region = reader.read_region(1, 0, 0, 0, rows, cols)
        assert region.shape == shape
        assert region.dtype == np.uint16


def test_empty_rgb_region_keeps_its_samples(tmp_path: Path) -> None:
    path = tmp_path / "rgb.czi"
    expected = write_czi_rgb(path, y=6, x=8)
    with CziReader(path) as reader:
        empty = reader.read_region(0, 0, 0, 0, (3, 3), (0, 8))
        assert empty.shape == (0, 8, 3) and empty.dtype == np.uint8
        region = reader.read_region(0, 0, 0, 0, (1, 4), (2, 7))
        np.testing.assert_array_equal(region, expected[0, 0, 0, 1:4, 2:7])
        assert region.flags.c_contiguous


def test_region_refuses_levels_and_planes_out_of_range(
    scenes_file: tuple[Path, list[np.ndarray]],
) -> None:
    path, _ = scenes_file
    with CziReader(path) as reader:
        with pytest.raises(
            SceneNotFoundError, match=r"scenes\.czi: level 1 does not exist; CZI"
        ) as caught:
            reader.read_region(0, 0, 0, 0, (0, 2), (0, 2), level=1)
        assert caught.value.path == path
        with pytest.raises(SceneNotFoundError, match="z=2 is out of range"):
            reader.read_region(0, 0, 0, 2, (0, 2), (0, 2))
        with pytest.raises(SceneNotFoundError, match="c=2 is out of range"):
            reader.read_region(0, 0, 2, 0, (50, 52), (0, 2))
        with pytest.raises(SceneNotFoundError, match="scene 2 does not exist"):
            reader.read_region(2, 0, 0, 0, (0, 2), (0, 2))
        with pytest.raises(
            SceneNotFoundError, match=r"level 2 does not exist; CZI scenes are read"
        ) as caught:
            reader.region_grid(0, level=2)
        assert caught.value.path == path
        with pytest.raises(SceneNotFoundError, match=r"level 1 does not exist"):
            reader.to_dask(1, level=1)
        with pytest.raises(SceneNotFoundError, match="t=1 is out of range"):
            reader.read_plane(1, 1, 0, 0)


def test_region_grid_is_the_block_within_the_scene(
    scenes_file: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    path, _ = scenes_file
    with CziReader(path) as reader:
        assert reader.region_grid(0) == (12, 16)
        assert reader.region_grid() == (12, 16)  # scene 0, level 0
        assert reader.region_grid(1) == (5, 6)  # the largest block is scene 0's
    tall = tmp_path / "tall.czi"
    write_czi_scenes(tall, [(20, 3, (0, 0)), (4, 9, (40, 0))])
    with CziReader(tall) as reader:
        assert reader.region_grid(0) == (20, 3)
        assert reader.region_grid(1) == (4, 9)


def test_planes_of_every_scene_and_dask(scenes_file: tuple[Path, list[np.ndarray]]) -> None:
    path, expected = scenes_file
    with CziReader(path) as reader:
        for s, stack in enumerate(expected):
            lazy = reader.to_dask(s)
            assert lazy.shape == stack.shape and lazy.dtype == np.uint16
            assert lazy.name.startswith("czi-")
            np.testing.assert_array_equal(lazy.compute(), stack)
            plane = reader.read_plane(s, 0, 1, 0)
            np.testing.assert_array_equal(plane, stack[0, 1, 0])
            assert plane.flags.c_contiguous and plane.flags.owndata | (plane.base is not None)
        assert reader.to_dask().shape == expected[0].shape  # scene 0 by default
        with pytest.raises(SceneNotFoundError, match="level 3 does not exist") as caught:
            reader.to_dask(0, level=3)
        assert caught.value.path == path


def test_a_file_without_t_still_checks_its_planes(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """Entries with no T dimension: their plane is T=0 for the check, and a cut is found."""
    data = bytearray(stack[0])
    for _, dims in _entries(data):
        data[dims["T"] : dims["T"] + 4] = b"B\0\0\0"
    with CziReader(_write(tmp_path, bytes(data), "not.czi")) as reader:
        assert reader.scenes()[0].shape == (1, 2, 3, 6, 8)
        assert reader.scenes()[0].extra_dims == {}  # B spans one index: no extra axis
    blocks = _data_size_fields(data)
    last = max(p for _, p, _ in blocks)
    starts, _, field = next(b for b in blocks if b[1] != last)
    struct.pack_into("<q", data, field, 10**12)
    with (
        CziReader(_write(tmp_path, bytes(data))) as reader,
        pytest.raises(CorruptFileError, match="past the end"),
    ):
        reader.read_plane(0, 0, starts["C"], starts["Z"])


def test_sniff_reads_only_the_magic() -> None:
    from pathlib import Path

    assert CziReader.sniff(b"ZISRAWFILE", Path("a.bin"))
    assert not CziReader.sniff(b"ZISRAWFIL", Path("a.czi"))
    assert not CziReader.sniff(b"XISRAWFILE" + bytes(6), Path("a.czi"))
    assert CziReader.sniff(memoryview(b"ZISRAWFILE\0\0"), Path("a.czi"))
    assert not CziReader.sniff(12, Path("a.czi"))  # type: ignore[arg-type]


def test_check_structure_closes_its_descriptor(
    stack: tuple[bytes, np.ndarray], tmp_path: Path
) -> None:
    if not os.path.isdir("/proc/self/fd"):
        return
    path = _write(tmp_path, stack[0], "fd.czi")
    _check_structure(path, ReadLimits())
    bad = bytearray(stack[0])
    struct.pack_into("<q", bad, 92, len(bad))
    broken = _write(tmp_path, bytes(bad), "broken.czi")
    with pytest.raises(CorruptFileError):
        _check_structure(broken, ReadLimits())
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert str(path) not in open_files and str(broken) not in open_files


def test_overlapping_scenes_read_only_their_own_subblocks(tmp_path: Path) -> None:
    """Scene 1's rectangle covers part of scene 0: its read takes only S=1's subblocks."""
    path = tmp_path / "overlap.czi"
    expected = write_czi_scenes(path, [(10, 12, (0, 0)), (10, 12, (4, 3))])
    with CziReader(path) as reader:
        for s in range(2):
            np.testing.assert_array_equal(reader.read_plane(s, 0, 0, 0), expected[s][0, 0, 0])


def test_channels_of_different_pixel_types_read_as_the_first(tmp_path: Path) -> None:
    """Gray16 then Gray8: every channel is read as Gray16 (one dtype for the array)."""
    from pylibCZIrw import czi as pyczi

    path = tmp_path / "mixed.czi"
    wide = np.arange(20, dtype=np.uint16).reshape(4, 5) * 1000
    narrow = np.arange(20, dtype=np.uint8).reshape(4, 5) + 3
    with pyczi.create_czi(str(path)) as writer:
        writer.write(wide, plane={"C": 0})
        writer.write(narrow, plane={"C": 1})
        writer.write_metadata()
    with CziReader(path) as reader:
        assert reader.metadata(0).dtype == "uint16"
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), wide)
        second = reader.read_plane(0, 0, 1, 0)
        assert second.dtype == np.uint16
        np.testing.assert_array_equal(second, narrow.astype(np.uint16))


def test_scene_rectangle_leaves_out_entries_without_s(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """One S index, one entry without S (moved 100 px right): the scene's box is S=0's only."""
    data = bytearray(stack[0])
    _, dims = _entries(data)[2]
    data[dims["S"] : dims["S"] + 4] = b"V\0\0\0"
    struct.pack_into("<i", data, dims["X"] + 4, 100)
    raw, count = _directory_raw(bytes(data))
    stats = _parse_walk(tmp_path / "s.czi", raw, len(data), count).statistics
    assert stats.box == (0, 0, 108, 6)
    assert stats.scenes == {0: (0, 0, 8, 6)}


def test_a_subblock_without_plane_dimensions_is_named_by_index(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    data = bytearray(stack[0])
    _, dims = _entries(data)[1]
    for axis, label in zip("STCZM", "RIHVB", strict=True):
        data[dims[axis] : dims[axis] + 4] = label.encode() + b"\0\0\0"
    raw, count = _directory_raw(bytes(data))
    walk = _parse_walk(tmp_path / "w.czi", raw, len(data), count)
    assert walk._where(1) == "subblock 1"
    assert walk._where(0) == "subblock 0 (S=0 T=0 C=0 Z=0 M=0)"


def test_a_libczi_failure_names_the_plane_and_keeps_libczis_words(tmp_path: Path) -> None:
    path = tmp_path / "zstd.czi"
    write_czi_stack(path, z=2, y=32, x=32, compression="zstd1:ExplicitLevel=1")
    data = bytearray(path.read_bytes())
    for entry, dims in _entries(data):
        if _start(data, dims, "Z") == 1:
            position = struct.unpack_from("<q", data, entry + 6)[0]
            meta, _, size = struct.unpack_from("<iiq", data, position + 32)
            entry_size = 32 + 20 * struct.unpack_from("<i", data, entry + 28)[0]
            start = position + 32 + max(256, 16 + entry_size) + meta
            data[start + 8 : start + size] = bytes(range(256)) * ((size - 8) // 256) + bytes(
                (size - 8) % 256
            )
    with (
        CziReader(_write(tmp_path, bytes(data), "zstd.czi")) as reader,
        pytest.raises(CorruptFileError) as caught,
    ):
        reader.read_plane(0, 0, 0, 1)
    error = caught.value
    assert str(error).startswith("zstd.czi: libCZI failed reading plane t=0 c=0 z=1: ")
    assert error.detail and error.detail != "None"
    assert str(error).endswith(error.detail)
    assert error.path == tmp_path / "zstd.czi"


def test_an_empty_region_of_a_cut_plane_reads_nothing(
    tmp_path: Path, stack: tuple[bytes, np.ndarray]
) -> None:
    """A region with no rows is empty before any subblock is looked at: no error, no read."""
    data = bytearray(stack[0])
    blocks = _data_size_fields(data)
    last = max(p for _, p, _ in blocks)
    starts, _, field = next(b for b in blocks if b[1] != last)
    struct.pack_into("<q", data, field, 10**12)
    with CziReader(_write(tmp_path, bytes(data))) as reader:
        c, z = starts["C"], starts["Z"]
        assert reader.read_region(0, 0, c, z, (2, 2), (0, 4)).shape == (0, 4)
        assert reader.read_region(0, 0, c, z, (0, 3), (5, 5)).shape == (3, 0)
        with pytest.raises(CorruptFileError, match="past the end"):
            reader.read_region(0, 0, c, z, (0, 1), (0, 1))


@pytest.mark.parametrize("axis", ["C", "Z"])
def test_a_file_without_c_or_z_checks_its_planes(tmp_path: Path, axis: str) -> None:
    """Entries with no C (or Z) dimension: plane index 0 for the check, and a cut is found."""
    path = tmp_path / "no.czi"
    expected = write_czi_stack(path, c=1 if axis == "C" else 2, z=3 if axis == "C" else 1, y=4, x=5)
    data = bytearray(path.read_bytes())
    for _, dims in _entries(data):
        data[dims[axis] : dims[axis] + 4] = b"B\0\0\0"
    # (libCZI itself refuses the planes: each subblock repeats its entry, with the axis.)
    with CziReader(_write(tmp_path, bytes(data), "no.czi")) as reader:
        assert reader.scenes()[0].shape == expected.shape
    blocks = _data_size_fields(data)
    last = max(p for _, p, _ in blocks)
    starts, _, field = next(b for b in blocks if b[1] != last)
    struct.pack_into("<q", data, field, 10**12)
    with (
        CziReader(_write(tmp_path, bytes(data), "no.czi")) as reader,
        pytest.raises(CorruptFileError, match="past the end"),
    ):
        reader.read_plane(0, 0, starts.get("C", 0), starts.get("Z", 0))


def test_the_largest_block_of_one_row_tiles(tmp_path: Path) -> None:
    """Tiles one row high stacked in two rows: the block a region read decodes is 1 x 4."""
    path = tmp_path / "rows.czi"
    write_czi_mosaic(path, tile=(1, 4), grid=(2, 1))
    raw, count = _directory_raw(path.read_bytes())
    size = path.stat().st_size
    assert _parse_walk(path, raw, size, count).block == (1, 4)
    with CziReader(path) as reader:
        assert reader.scenes()[0].shape[-2:] == (2, 4)
        assert reader.region_grid(0) == (1, 4)


def test_cut_subblocks_of_a_later_t_and_a_later_z(tmp_path: Path) -> None:
    path = tmp_path / "tz.czi"
    expected = write_czi_stack(path, t=2, z=2, y=4, x=5)
    data = bytearray(path.read_bytes())
    blocks = _data_size_fields(data)
    last = max(p for _, p, _ in blocks)
    for starts, position, field in blocks:
        if position != last and (starts["T"], starts["Z"]) in ((1, 0), (0, 1)):
            struct.pack_into("<q", data, field, 10**12)
    with CziReader(_write(tmp_path, bytes(data), "tz.czi")) as reader:
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 0), expected[0, 0, 0])
        for t, z in ((1, 0), (0, 1)):
            with pytest.raises(CorruptFileError, match=f"plane t={t} c=0 z={z}: 1 subblock"):
                reader.read_plane(0, t, 0, z)


def test_walk_labels_and_logical_sizes(tmp_path: Path, stack: tuple[bytes, np.ndarray]) -> None:
    """A label that is not ASCII is kept (replaced characters); boxes use logical sizes."""
    data = _mixed(stack[0])
    entries = _entries(data)
    _, dims = entries[3]
    struct.pack_into("<iii", data, dims["X"] + 4, 10, 8, 0)  # X start 10, size 8
    struct.pack_into("<i", data, dims["X"] + 16, 4)  # stored 4 (a pyramid subblock)
    struct.pack_into("<iii", data, dims["Y"] + 4, 2, 6, 0)
    struct.pack_into("<i", data, dims["Y"] + 16, 3)
    data[dims["M"] : dims["M"] + 4] = b"\xff\0\0\0"
    _, dims = entries[4]
    struct.pack_into("<i", data, dims["Y"] + 8, 20)  # Y size 20, stored 10: not full resolution
    struct.pack_into("<i", data, dims["Y"] + 16, 10)
    raw, count = _directory_raw(bytes(data))
    walk = _parse_walk(tmp_path / "w.czi", raw, len(data), count)
    assert walk.statistics.box == (0, 0, 18, 20)
    assert walk.coords[3]["\ufffd"] == 0
    assert walk.block == (6, 8)
