"""The confined zarr store: every byte range zarr asks for, read from a checked descriptor.

A chunk under an import root is served from :func:`open_confined`'s descriptor, so each kind of
byte request (whole, range, offset, suffix) must give exactly zarr's ``LocalStore`` answer,
a missing key ``None``, and a chunk that is a symlink out of the root a refusal.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import BufferPrototype, cpu, default_buffer_prototype
from zarr.storage import LocalStore

from zstack_analyzer.confine import UnsafeFileError, confine_reads
from zstack_analyzer.zarr.confined_store import ConfinedLocalStore

if TYPE_CHECKING:
    from pathlib import Path

DATA = bytes(range(200))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "archive" / "image.zarr"
    (folder / "0").mkdir(parents=True)
    (folder / "0" / "0").write_bytes(DATA)
    confine_reads([tmp_path / "archive"])
    return folder


def _get(store: LocalStore, key: str, byte_range: Any = None, **kw: Any) -> bytes | None:
    buffer = asyncio.run(store.get(key, byte_range=byte_range, **kw))
    return None if buffer is None else buffer.to_bytes()


REQUESTS = [
    (None, DATA),
    (RangeByteRequest(10, 20), DATA[10:20]),
    (RangeByteRequest(0, 1), DATA[:1]),
    (RangeByteRequest(190, 400), DATA[190:]),
    (OffsetByteRequest(150), DATA[150:]),
    (OffsetByteRequest(0), DATA),
    (SuffixByteRequest(7), DATA[-7:]),
    (SuffixByteRequest(500), DATA),
]


@pytest.mark.parametrize(("request_", "expected"), REQUESTS)
def test_every_byte_request_reads_what_localstore_reads(
    root: Path, request_: Any, expected: bytes
) -> None:
    store = ConfinedLocalStore(root, read_only=True)
    assert _get(store, "0/0", request_) == expected
    assert _get(LocalStore(root, read_only=True), "0/0", request_) == expected
    # Again on the now-open store, and with an explicit buffer prototype.
    assert _get(store, "0/0", request_, prototype=default_buffer_prototype()) == expected


def test_missing_keys_and_folders_are_none(root: Path) -> None:
    store = ConfinedLocalStore(root, read_only=True)
    assert _get(store, "0/1") is None
    assert _get(store, "0") is None  # a folder
    assert _get(store, "0/0/0") is None  # under a file


def test_an_unexpected_byte_request_is_a_type_error(root: Path) -> None:
    store = ConfinedLocalStore(root, read_only=True)
    with pytest.raises(TypeError, match="unexpected byte range"):
        _get(store, "0/0", (1, 2))


def test_a_chunk_symlinked_out_of_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:x:0:0")
    (root / "0" / "1").symlink_to(secret)
    store = ConfinedLocalStore(root, read_only=True)
    with pytest.raises(UnsafeFileError):
        _get(store, "0/1")
    with pytest.raises(UnsafeFileError):
        _get(store, "0/1", RangeByteRequest(0, 4))


def test_a_missing_root_is_an_error_not_an_empty_store(tmp_path: Path) -> None:
    confine_reads([tmp_path / "archive"])
    store = ConfinedLocalStore(tmp_path / "archive" / "gone.zarr", read_only=True)
    with pytest.raises(FileNotFoundError):
        _get(store, "0/0")


def test_outside_the_roots_it_is_localstore(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "k").write_bytes(DATA)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not confined")
    (folder / "link").symlink_to(secret)
    store = ConfinedLocalStore(folder, read_only=True)
    assert _get(store, "k", RangeByteRequest(1, 3)) == DATA[1:3]
    assert _get(store, "link") == b"not confined"  # no root here: zarr's own read
    assert _get(store, "none") is None


class _TaggedBuffer(cpu.Buffer):
    """A buffer class of our own, to see which prototype a read used."""


def test_the_callers_buffer_prototype_is_used_inside_and_outside_the_roots(
    root: Path, tmp_path: Path
) -> None:
    prototype = BufferPrototype(buffer=_TaggedBuffer, nd_buffer=cpu.NDBuffer)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "k").write_bytes(DATA)
    for folder, key in ((root, "0/0"), (outside, "k")):
        store = ConfinedLocalStore(folder, read_only=True)
        buffer = asyncio.run(store.get(key, prototype=prototype))
        assert isinstance(buffer, _TaggedBuffer), folder
        assert buffer.to_bytes() == DATA
