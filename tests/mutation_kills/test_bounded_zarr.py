"""Zarr reads that cannot decode more than they declare (``zarr/bounded.py``), piece by piece.

Honest data must come back byte for byte (across the 1 MiB inflate steps, every codec), and
each kind of lie must be refused with its own typed error: a zip member over the cap, one that
inflates past or short of its declared size, a bad CRC, a codec whose output (or header)
passes the chunk's size. The budget a chunked read reserves is the chunks it touches.
"""

from __future__ import annotations

import asyncio
import struct
import zipfile
import zlib
from typing import TYPE_CHECKING, Any

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.abc.store import RangeByteRequest

from tests.bombs import lying_zip
from zstack_analyzer.budget import DecodeBudget, decode_scope
from zstack_analyzer.errors import CorruptFileError, LimitExceededError
from zstack_analyzer.zarr.bounded import (
    BoundedZipStore,
    BudgetedArray,
    _BoundedCodec,
    _zstd_content_size,
    guard_codecs,
    read_member,
)

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1 << 20


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("size", [0, 1, 4096, MiB - 1, MiB, MiB + 1, 2 * MiB + 77])
def test_honest_members_come_back_whole(tmp_path: Path, compression: int, size: int) -> None:
    data = np.random.default_rng(size).integers(0, 4, size, dtype=np.uint8).tobytes()
    path = _zip(tmp_path / "a.zip", {"m": data}, compression)
    with zipfile.ZipFile(path) as archive:
        assert read_member(archive, "m", size, path=path) == data
        assert read_member(archive, "m", 4 * MiB, path=str(path)) == data


def test_a_member_over_the_cap_is_refused_before_inflating(tmp_path: Path) -> None:
    path = _zip(tmp_path / "a.zip", {"chunk/0": b"x" * 5000})
    with zipfile.ZipFile(path) as archive, pytest.raises(LimitExceededError) as info:
        read_member(archive, "chunk/0", 4999, path=path)
    text = str(info.value)
    assert text.startswith("a.zip: member 'chunk/0' declares 5,000 bytes, over the limit of 4,999")
    assert str(info.value.path) == str(path)
    long = "d/" + "x" * 100
    path = _zip(tmp_path / "b.zip", {long: b"x" * 10})
    with zipfile.ZipFile(path) as archive, pytest.raises(LimitExceededError) as info:
        read_member(archive, long, 9, path=str(path))
    assert str(info.value).startswith(f"b.zip: member {long[:80]!r} declares")  # name only


def test_a_missing_member_is_a_key_error(tmp_path: Path) -> None:
    path = _zip(tmp_path / "a.zip", {"m": b"x"})
    with zipfile.ZipFile(path) as archive, pytest.raises(KeyError):
        read_member(archive, "other", 100, path=path)


@pytest.mark.parametrize("inflates_to", [4096 + 600, 64 * 1024, 3 * MiB])
def test_a_member_inflating_past_its_declared_size_is_refused(
    tmp_path: Path, inflates_to: int
) -> None:
    path = lying_zip(tmp_path / "lying.zip", declared=4096, inflates_to=inflates_to)
    with zipfile.ZipFile(path) as archive, pytest.raises(CorruptFileError) as info:
        read_member(archive, "0/0/0", 4 * MiB, path=path)
    assert str(info.value).startswith("lying.zip: member '0/0/0' ")
    assert "4,096 bytes" in str(info.value)
    assert str(info.value.path) == str(path)


def test_a_member_inflating_short_of_its_declared_size_is_refused(tmp_path: Path) -> None:
    path = lying_zip(tmp_path / "short.zip", declared=8192, inflates_to=4096)
    with zipfile.ZipFile(path) as archive, pytest.raises(CorruptFileError) as info:
        read_member(archive, "0/0/0", 4 * MiB, path=path)
    assert "'0/0/0'" in str(info.value)
    assert "8,192" in str(info.value)


def test_a_member_failing_its_crc_is_refused(tmp_path: Path) -> None:
    data = bytes(range(256)) * 16
    path = _zip(tmp_path / "crc.zip", {"m": data}, zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    at = raw.find(data)
    raw[at + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as archive, pytest.raises(CorruptFileError) as info:
        read_member(archive, "m", 4 * MiB, path=path)
    assert str(info.value).startswith(
        "crc.zip: member 'm' does not inflate to the 4,096 bytes its zip entry declares ("
    )
    assert "CRC" in str(info.value.detail)
    assert str(info.value.path) == str(path)


def _zarr_zip(tmp_path: Path) -> tuple[Path, np.ndarray]:
    values = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30)
    folder = tmp_path / "image.zarr"
    array = zarr.open_array(
        str(folder), mode="w", shape=values.shape, chunks=(16, 16), dtype="uint16", zarr_format=2
    )
    array[...] = values
    members = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return _zip(tmp_path / "image.zarr.zip", members, zipfile.ZIP_STORED), values


def test_bounded_zip_store_reads_a_zarr_array(tmp_path: Path) -> None:
    path, values = _zarr_zip(tmp_path)
    store = BoundedZipStore(path, mode="r")
    array = zarr.open_array(store, mode="r", zarr_format=2)
    np.testing.assert_array_equal(array[...], values)
    assert (
        asyncio.run(store.get("no/such/key", zarr.core.buffer.default_buffer_prototype())) is None
    )
    whole = asyncio.run(store.get(".zarray", zarr.core.buffer.default_buffer_prototype()))
    part = asyncio.run(
        store.get(".zarray", zarr.core.buffer.default_buffer_prototype(), RangeByteRequest(2, 9))
    )
    assert part is not None
    assert whole is not None
    assert part.to_bytes() == whole.to_bytes()[2:9]


def test_bounded_zip_store_applies_its_member_cap(tmp_path: Path) -> None:
    path, _ = _zarr_zip(tmp_path)
    store = BoundedZipStore(path, mode="r")
    zarr.open_array(store, mode="r", zarr_format=2)
    prototype = zarr.core.buffer.default_buffer_prototype()
    sizes = {i.filename: i.file_size for i in zipfile.ZipFile(path).infolist()}
    big = max((k for k in sizes if k[0].isdigit()), key=sizes.__getitem__)
    store.member_cap = sizes[big] - 1
    with pytest.raises(LimitExceededError, match="over the limit") as info:
        asyncio.run(store.get(big, prototype))
    # The message names the zip by its file name only: it reaches HTTP clients as the
    # problem's detail, and an in-place zip's folder on the server is not theirs to see.
    assert str(info.value).startswith(f"{path.name}: member ")
    assert str(path.parent) not in str(info.value)
    assert str(info.value.path) == str(path)
    store.member_cap = sizes[big]
    member = asyncio.run(store.get(big, prototype))
    assert member is not None
    assert len(member.to_bytes()) == sizes[big]


# ------------------------------------------------------------------------------- codecs

DATA = np.arange(1000, dtype=np.uint8).tobytes()


@pytest.mark.parametrize(
    "inner",
    [
        numcodecs.Zlib(),
        numcodecs.GZip(),
        numcodecs.Blosc(),
        numcodecs.LZ4(),
        numcodecs.Zstd(),
        numcodecs.BZ2(),
    ],
    ids=lambda c: c.codec_id,
)
def test_every_codec_decodes_up_to_the_declared_size(inner: Any) -> None:
    encoded = inner.encode(DATA)
    codec = _BoundedCodec(inner, len(DATA), "img.zarr")
    assert codec.codec_id == inner.codec_id
    assert _BoundedCodec(object(), 1, "x").codec_id is None
    for buf in (encoded, np.frombuffer(encoded, dtype=np.uint8), memoryview(encoded)):
        assert bytes(memoryview(codec.decode(buf)).cast("B")) == DATA
    assert bytes(memoryview(inner.decode(codec.encode(DATA))).cast("B")) == DATA
    assert codec.get_config() == inner.get_config()
    assert repr(codec) == f"Bounded({inner!r}, max_out=1000)"
    small = _BoundedCodec(inner, len(DATA) - 1, "img.zarr")
    with pytest.raises(LimitExceededError) as info:
        small.decode(encoded)
    text = str(info.value)
    assert text.startswith(f"img.zarr: a chunk's {inner.codec_id} data decodes to ")
    assert "past the 999 bytes the chunk declares; refused" in text
    assert str(info.value.path) == "img.zarr"


@pytest.mark.parametrize(
    "inner", [numcodecs.Blosc(), numcodecs.LZ4(), numcodecs.Zstd()], ids=lambda c: c.codec_id
)
def test_a_declared_size_is_refused_before_decoding(inner: Any) -> None:
    """The header's size is refused before the inner codec runs (its message names the size)."""
    encoded = inner.encode(DATA)

    class Exploding:
        codec_id = inner.codec_id

        def decode(self, buf: Any, out: Any = None) -> Any:
            raise AssertionError("decoded although the header declares too much")

    with pytest.raises(LimitExceededError, match="decodes to 1,000 bytes, past the 999"):
        _BoundedCodec(Exploding(), 999, "x").decode(encoded)


@pytest.mark.parametrize(("inner", "wbits"), [(numcodecs.Zlib(), 15), (numcodecs.GZip(), 31)])
def test_zlib_and_gzip_inflate_with_a_cap(inner: Any, wbits: int) -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, wbits)
    encoded = bomb.compress(bytes(8 * MiB)) + bomb.flush()
    with pytest.raises(LimitExceededError, match="decodes to more, past the 4,096 bytes"):
        _BoundedCodec(inner, 4096, "x").decode(encoded)
    exact = zlib.compressobj(9, zlib.DEFLATED, wbits)
    encoded = exact.compress(bytes(4096)) + exact.flush()
    assert _BoundedCodec(inner, 4096, "x").decode(encoded) == bytes(4096)
    with pytest.raises(CorruptFileError, match=f"x: a chunk's {inner.codec_id} data is corrupt"):
        _BoundedCodec(inner, 4096, "x").decode(b"\x00garbage-not-deflate")


def test_headers_declare_from_their_full_length() -> None:
    """Blosc declares in 16 header bytes, LZ4 in 4: a header of exactly that length is read."""
    blosc = numcodecs.Blosc().encode(DATA)[:16]
    lz4 = numcodecs.LZ4().encode(DATA)[:4]
    for inner, head in ((numcodecs.Blosc(), blosc), (numcodecs.LZ4(), lz4)):
        with pytest.raises(LimitExceededError, match="decodes to 1,000 bytes"):
            _BoundedCodec(inner, 999, "x").decode(head)


def _zstd_head(descriptor: int, fields: bytes) -> bytes:
    return b"\x28\xb5\x2f\xfd" + bytes([descriptor]) + fields


@pytest.mark.parametrize(
    ("head", "size"),
    [
        # single segment (bit 5), no dictionary: FCS 1 byte (flag 0), 2 bytes (+256), 4, 8
        (_zstd_head(0b0010_0000, b"\xc8"), 200),
        (_zstd_head(0b0110_0000, b"\xe8\x02"), 1000),
        (_zstd_head(0b1010_0000, struct.pack("<I", 70000)), 70000),
        (_zstd_head(0b1110_0000, struct.pack("<Q", 5 << 32)), 5 << 32),
        # with a window byte (not single segment) and a dictionary id of 1, 2 and 4 bytes
        (_zstd_head(0b0100_0001, b"\x58" + b"\x07" + b"\x10\x00"), 16 + 256),
        (_zstd_head(0b1000_0010, b"\x58" + b"\x07\x00" + struct.pack("<I", 123456)), 123456),
        (_zstd_head(0b1100_0011, b"\x58" + b"\x07\x00\x00\x00" + struct.pack("<Q", 99)), 99),
        (_zstd_head(0b1010_0011, b"\x07\x00\x00\x00" + struct.pack("<I", 77)), 77),
    ],
)
def test_zstd_frame_content_size(head: bytes, size: int) -> None:
    assert _zstd_content_size(head + b"tail") == size
    assert _zstd_content_size(head) == size  # the header alone is enough


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x28\xb5\x2f\xfd",  # no descriptor
        b"\x28\xb5\x2f\xfc\x20\xc8",  # wrong magic
        _zstd_head(0b0000_0000, b"\x58"),  # flag 0, not single segment: no size
        _zstd_head(0b0000_0000, b"\x58\x10\x20\x30"),  # ... whatever follows
        _zstd_head(0b0110_0000, b"\xe8"),  # a 2-byte size cut short
        _zstd_head(0b1110_0000, b"\x01\x02\x03"),  # an 8-byte size cut short
    ],
)
def test_zstd_frames_without_a_size(head: bytes) -> None:
    assert _zstd_content_size(head) is None


def test_a_real_zstd_frame_declares_its_size() -> None:
    assert _zstd_content_size(numcodecs.Zstd().encode(DATA)[:18]) == len(DATA)


# ------------------------------------------------------------------------ guard_codecs


def _array(tmp_path: Path, **kw: Any) -> Any:
    array = zarr.open_array(
        str(tmp_path / "a.zarr"),
        mode="w",
        shape=(20, 30),
        chunks=(10, 15),
        dtype="uint16",
        zarr_format=2,
        **kw,
    )
    array[...] = np.arange(600, dtype=np.uint16).reshape(20, 30)
    return zarr.open_array(str(tmp_path / "a.zarr"), mode="r")


def _compressor(array: Any) -> Any:
    return array._async_array.codec_pipeline.array_bytes_codec.compressor


def test_guard_codecs_bounds_a_v2_compressor_by_its_chunk(tmp_path: Path) -> None:
    array = _array(tmp_path, compressor=numcodecs.Zlib())
    guard_codecs(array, "a.zarr")
    codec = _compressor(array)
    assert isinstance(codec, _BoundedCodec)
    assert codec.max_out == 10 * 15 * 2
    assert codec.label == "a.zarr"
    guard_codecs(array, "again")
    assert _compressor(array) is codec  # never wrapped twice
    np.testing.assert_array_equal(array[...], np.arange(600, dtype=np.uint16).reshape(20, 30))


def test_guard_codecs_allows_for_filters(tmp_path: Path) -> None:
    array = _array(tmp_path, compressor=numcodecs.Zlib(), filters=[numcodecs.Delta("<u2")])
    guard_codecs(array, "a.zarr")
    assert _compressor(array).max_out == 10 * 15 * 2 * 8


def test_guard_codecs_leaves_what_is_not_a_zarr_array() -> None:
    plain = np.zeros((4, 4), dtype=np.uint8)
    guard_codecs(plain, "plain")  # no codec pipeline to bound: nothing happens, no error
    assert not hasattr(plain, "_async_array")


def test_a_budgeted_array_with_partial_edge_chunks(tmp_path: Path) -> None:
    array = zarr.open_array(
        str(tmp_path / "edge.zarr"),
        mode="w",
        shape=(25, 31),
        chunks=(10, 15),
        dtype="uint8",
        zarr_format=2,
    )
    array[...] = 1
    budgeted = BudgetedArray(array, "edge.zarr", tmp_path / "edge.zarr")
    for key, touched in (((slice(None), slice(None)), 9), (([0, 24], slice(0, 31)), 9)):
        budget = DecodeBudget()
        with decode_scope(budget):
            budgeted[key]
        assert budget.peak == 150 * touched, key


def test_guard_codecs_leaves_uncompressed_and_v3_arrays(tmp_path: Path) -> None:
    array = _array(tmp_path, compressor=None)
    guard_codecs(array, "a.zarr")
    assert _compressor(array) is None
    v3 = zarr.open_array(str(tmp_path / "v3.zarr"), mode="w", shape=(4,), chunks=(2,), dtype="u1")
    guard_codecs(v3, "v3")  # no v2 compressor: nothing to wrap, no error


# ----------------------------------------------------------------------- BudgetedArray


@pytest.fixture
def budgeted(tmp_path: Path) -> BudgetedArray:
    array = _array(tmp_path, compressor=None)
    return BudgetedArray(array, "a.zarr", tmp_path / "a.zarr")


def test_budgeted_array_describes_its_array(budgeted: BudgetedArray) -> None:
    assert budgeted.shape == (20, 30)
    assert budgeted.dtype == np.dtype("uint16")
    assert budgeted.ndim == 2
    assert budgeted.chunks == (10, 15)
    assert budgeted.chunk_bytes == 300


@pytest.mark.parametrize(
    ("key", "touched", "elements"),
    [
        ((slice(None), slice(None)), 4, 600),
        ((slice(0, 10), slice(0, 15)), 1, 150),
        ((slice(0, 10), slice(0, 16)), 2, 160),
        ((slice(9, 11), slice(0, 15)), 2, 30),
        ((slice(10, 20), slice(15, 30)), 1, 150),
        ((slice(0, 20, 2), slice(0, 15)), 2, 150),
        ((slice(5, 5), slice(None)), 0, 0),
        ((slice(5, 3), slice(None)), 0, 0),
        ((3, slice(None)), 2, 30),
        ((np.int64(12), 20), 1, 1),
        (slice(0, 10), 2, 300),
        (4, 2, 30),
        (([1, 2], slice(0, 15)), 2, 300),
        ((slice(0, 10), [1, 2]), 2, 300),
        ((slice(None), [1, 2]), 4, 600),
    ],
)
def test_a_read_holds_the_chunks_it_touches(
    budgeted: BudgetedArray, key: Any, touched: int, elements: int
) -> None:
    budget = DecodeBudget()
    with decode_scope(budget) as scope:
        result = budgeted[key]
    np.testing.assert_array_equal(result, budgeted.array[key])
    assert budget.peak == 300 * touched
    assert budget.in_use == 0
    assert scope.spent == (max(0, 300 * touched - elements * 2) if touched else 0)


def test_a_chunk_over_the_block_cap_is_refused(budgeted: BudgetedArray) -> None:
    with decode_scope(DecodeBudget(block_bytes=299)), pytest.raises(LimitExceededError) as info:
        budgeted[0:1, 0:1]
    assert "a.zarr: a 10 x 15 chunk" in str(info.value)
    assert str(info.value.path) == str(budgeted.path)
    assert budgeted.path is not None
    # The cap is per chunk: a read of four chunks of 300 bytes passes a 300-byte block cap.
    with decode_scope(DecodeBudget(block_bytes=300)):
        assert budgeted[:, :].shape == (20, 30)
    with decode_scope(DecodeBudget(block_bytes=300)):
        assert int(budgeted[0:1, 0:1][0, 0]) == 0


def test_waste_counts_against_the_request(budgeted: BudgetedArray) -> None:
    """One element of one chunk throws away 298 bytes; the request may throw away 298."""
    with decode_scope(DecodeBudget(request_bytes=298)) as scope:
        budgeted[0:1, 0:1]
        assert scope.spent == 298
        with pytest.raises(LimitExceededError, match=r"a\.zarr: a 10 x 15 chunk") as info:
            budgeted[0:1, 0:1]
        assert str(info.value.path) == str(budgeted.path)


@pytest.mark.parametrize(
    "inner", [numcodecs.Blosc(), numcodecs.LZ4(), numcodecs.Zstd()], ids=lambda c: c.codec_id
)
def test_decoding_into_a_given_buffer(inner: Any) -> None:
    out = np.zeros(len(DATA), dtype=np.uint8)
    result = _BoundedCodec(inner, len(DATA), "x").decode(inner.encode(DATA), out)
    assert bytes(memoryview(result).cast("B")) == DATA
    assert out.tobytes() == DATA  # written where asked


def test_an_undeclared_size_is_named_once_decoded() -> None:
    with pytest.raises(LimitExceededError, match="bz2 data decodes to 1,000 bytes, past the 999"):
        _BoundedCodec(numcodecs.BZ2(), 999, "x").decode(numcodecs.BZ2().encode(DATA))


def test_corrupt_zlib_names_the_array() -> None:
    with pytest.raises(CorruptFileError) as info:
        _BoundedCodec(numcodecs.Zlib(), 10, "cells.zarr").decode(b"\x00not zlib")
    assert str(info.value.path) == "cells.zarr"


def test_a_long_member_name_is_cut_in_the_message(tmp_path: Path) -> None:
    long = "d/" + "n" * 120
    data = bytes(range(256)) * 16
    path = _zip(tmp_path / "crc.zip", {long: data}, zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    raw[raw.find(data) + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as archive, pytest.raises(CorruptFileError) as info:
        read_member(archive, long, 4 * MiB, path=path)
    assert str(info.value).startswith(f"crc.zip: member {long[:80]!r} does not inflate")
